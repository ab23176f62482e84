/*-------------------------------------------------------------------------
 *
 * ehnswinsert.c
 *	  Inserting one value into an ehnsw index: HNSW's INSERT, run on disk
 *	  within the graph of the value's tenant.
 *
 * Inserts share the update lock (a heavyweight lock on block number 0)
 * and take it exclusively only to change their tenant's entry point (a new
 * tenant, or an element above the entry point's level); VACUUM takes it
 * exclusively between its phases to wait for them (ehnswvacuum.c).  So
 * several inserts, and VACUUM, change the graph at once: a neighbour list
 * is never written back from a copy loaded earlier, but read and changed
 * under the page's exclusive buffer lock (ehnsw_write_links), and only if
 * the element is still alive and of the same tenant.  Scans take no
 * heavyweight lock; they copy items under buffer share locks, so they see
 * each neighbour list before or after a change.  docs/hnsw.md, "Locking".
 *
 * The value is decrypted with its tenant's data key without looking at
 * the claims: maintaining the index is the server's work (a restore or a
 * CREATE INDEX has no claimant), and no plaintext leaves this backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "common/pg_prng.h"
#include "nodes/execnodes.h"
#include "storage/freespace.h"
#include "storage/lmgr.h"
#include "utils/memutils.h"

#include "ehnsw.h"
#include "keys.h"

/* Largest item an element page can hold. */
#define EHNSW_MAX_ITEM_SIZE \
	(BLCKSZ - MAXALIGN(SizeOfPageHeaderData + sizeof(ItemIdData)) - \
	 MAXALIGN(sizeof(EhnswPageOpaqueData)))

/* Bytes of an element item at a level, for an envelope of envsize bytes. */
static Size
element_size(int m, int level, Size envsize)
{
	Size		nslots = (Size) (level + 2) * m;

	return INTALIGN(offsetof(EhnswElementTupleData, neighbors) +
					nslots * sizeof(ItemPointerData)) + envsize;
}

/* HNSW's random level, mL = 1 / ln(m), lowered until the element fits. */
static int
random_level(int m, Size envsize)
{
	double		r = pg_prng_double(&pg_global_prng_state);
	int			level;

	if (r <= 0.0)
		r = DBL_MIN;
	level = (int) floor(-log(r) / log((double) m));
	if (ehnsw_debug_insert_level >= 0)
		level = ehnsw_debug_insert_level;	/* developer only (ehnsw.c) */
	level = Min(level, EHNSW_MAX_LEVEL);
	while (level > 0 && element_size(m, level, envsize) > EHNSW_MAX_ITEM_SIZE)
		level--;
	return level;
}

/* Refuse an index whose elements could not fit in a page. */
void
ehnsw_check_dims(uint32 dims, int m)
{
	Size		envsize = VARHDRSZ + ENVELOPE_OVERHEAD + (Size) dims * sizeof(float4);

	if (element_size(m, 0, envsize) > EHNSW_MAX_ITEM_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("evector with %u dimensions is too large for an ehnsw index with m = %d",
						dims, m),
				 errdetail("An element's ciphertext and neighbour lists must fit in one %d-byte page.",
						   BLCKSZ)));
}

/*
 * HNSW's SELECT-NEIGHBORS-HEURISTIC: from candidates sorted by distance
 * to the base, keep those closer to the base than to any kept one, then
 * fill up with the nearest pruned ones.  Returns at most max candidates.
 */
List *
ehnsw_select_neighbors(EhnswState *state, List *candidates, int max)
{
	List	   *kept = NIL;
	List	   *pruned = NIL;
	ListCell   *lc;

	foreach(lc, candidates)
	{
		EhnswCandidate *c = lfirst(lc);
		ListCell   *lc2;
		bool		good = true;

		if (list_length(kept) >= max)
			break;
		if (c->element->x == NULL)
			continue;			/* deleted: never link to it again */
		foreach(lc2, kept)
		{
			EhnswCandidate *r = lfirst(lc2);

			if (ehnsw_distance(state, c->element->x, r->element->x) < c->distance)
			{
				good = false;
				break;
			}
		}
		if (good)
			kept = lappend(kept, c);
		else
			pruned = lappend(pruned, c);
	}
	foreach(lc, pruned)
	{
		if (list_length(kept) >= max)
			break;
		kept = lappend(kept, lfirst(lc));
	}
	return kept;
}

/*
 * Add an element to a graph being built in memory, at the TID PageAddItem
 * will give it when the pages are written.
 */
static void
graph_add_element(EhnswState *state, EhnswElementTuple etup, Size size,
				  const float4 *x, ItemPointer tid)
{
	EhnswBuildGraph *graph = state->graph;
	MemoryContext old = MemoryContextSwitchTo(graph->cxt);
	EhnswBuildItem *item = palloc(sizeof(EhnswBuildItem));
	EhnswElement *element = palloc0(sizeof(EhnswElement));
	EhnswBuildEntry *be;
	uint64		key;

	if (graph->blkno == InvalidBlockNumber ||
		graph->free < MAXALIGN(size) + sizeof(ItemIdData))
	{
		graph->blkno = graph->blkno == InvalidBlockNumber ?
			EHNSW_METAPAGE_BLKNO + 1 : graph->blkno + 1;
		graph->offno = InvalidOffsetNumber;
		graph->free = BLCKSZ - SizeOfPageHeaderData -
			MAXALIGN(sizeof(EhnswPageOpaqueData));
	}
	graph->offno++;
	graph->free -= MAXALIGN(size) + sizeof(ItemIdData);
	ItemPointerSet(tid, graph->blkno, graph->offno);

	item->etup = palloc(size);
	memcpy(item->etup, etup, size);
	item->size = size;
	item->element = element;
	element->tid = *tid;
	element->heaptid = etup->heaptid;
	element->tenant_id = etup->tenant_id;
	element->level = etup->level;
	element->nslots = etup->nslots;
	element->neighbors = item->etup->neighbors;
	element->x = palloc(state->dims * sizeof(float4));
	memcpy(element->x, x, state->dims * sizeof(float4));
	ehnsw_wipe_list_add(graph->plaintexts, element->x);
	graph->items = lappend(graph->items, item);
	key = ehnsw_location_key(graph->blkno, graph->offno);
	be = hash_search(graph->elements, &key, HASH_ENTER, NULL);
	be->item = item;
	graph->memory_used += size + sizeof(EhnswBuildItem) + sizeof(EhnswElement) +
		state->dims * sizeof(float4) + 64;
	MemoryContextSwitchTo(old);
}

/* Entry point of a tenant in a graph being built in memory. */
static void
graph_read_entry(EhnswBuildGraph *graph, uint32 tenant_id,
				 EhnswEntryPoint *entry, bool *found)
{
	uint32		i;

	*found = false;
	for (i = 0; i < graph->ntenants; i++)
		if (graph->tenants[i].tenant_id == tenant_id)
		{
			*entry = graph->tenants[i];
			*found = true;
			return;
		}
}

static void
graph_set_entry(EhnswState *state, uint32 tenant_id, ItemPointer tid, int level)
{
	EhnswBuildGraph *graph = state->graph;
	EhnswEntryPoint *ep = NULL;
	uint32		i;

	for (i = 0; i < graph->ntenants; i++)
		if (graph->tenants[i].tenant_id == tenant_id)
			ep = &graph->tenants[i];
	if (ep == NULL)
	{
		if (graph->ntenants >= EHNSW_MAX_TENANTS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("index \"%s\" cannot hold more than %d tenants",
							RelationGetRelationName(state->index), (int) EHNSW_MAX_TENANTS)));
		ep = &graph->tenants[graph->ntenants++];
		ep->tenant_id = tenant_id;
	}
	ep->blkno = ItemPointerGetBlockNumber(tid);
	ep->offno = ItemPointerGetOffsetNumber(tid);
	ep->level = level;
}

/* Append an item to the insert page or a new page; returns its TID. */
static void
write_element(EhnswState *state, EhnswElementTuple etup, Size size,
			  ItemPointer tid)
{
	Relation	index = state->index;
	EhnswMetaPageData meta;
	bool		found;
	Buffer		buf = InvalidBuffer;
	GenericXLogState *xlog;
	Page		page;
	OffsetNumber offno;
	BlockNumber blkno;
	Size		freespace;
	bool		init_page = false;

	ehnsw_read_meta(index, &meta, NULL, 0, &found);

	/* Space VACUUM freed first, then the last page, then a new one. */
	blkno = GetPageWithFreeSpace(index, MAXALIGN(size) + sizeof(ItemIdData));
	if (blkno == InvalidBlockNumber)
		blkno = meta.insert_blkno;
	if (blkno != InvalidBlockNumber && blkno != EHNSW_METAPAGE_BLKNO)
	{
		buf = ReadBuffer(index, blkno);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		if (!ehnsw_page_usable(index, buf, blkno))
			init_page = true;	/* left new by a crash: take it */
		else if (PageGetFreeSpace(BufferGetPage(buf)) < MAXALIGN(size))
		{
			RecordPageWithFreeSpace(index, blkno, PageGetFreeSpace(BufferGetPage(buf)));
			UnlockReleaseBuffer(buf);
			buf = InvalidBuffer;
		}
	}

	xlog = GenericXLogStart(index);
	if (BufferIsValid(buf) && init_page)
	{
		page = GenericXLogRegisterBuffer(xlog, buf, GENERIC_XLOG_FULL_IMAGE);
		ehnsw_init_page(page, EHNSW_PAGE_ELEMENTS);
	}
	else if (BufferIsValid(buf))
		page = GenericXLogRegisterBuffer(xlog, buf, 0);
	else
	{
		LockRelationForExtension(index, ExclusiveLock);
		buf = ReadBuffer(index, P_NEW);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		UnlockRelationForExtension(index, ExclusiveLock);
		blkno = BufferGetBlockNumber(buf);
		page = GenericXLogRegisterBuffer(xlog, buf, GENERIC_XLOG_FULL_IMAGE);
		ehnsw_init_page(page, EHNSW_PAGE_ELEMENTS);
	}
	offno = PageAddItem(page, (Item) etup, size, InvalidOffsetNumber, false, false);
	if (offno == InvalidOffsetNumber)
		elog(ERROR, "failed to add element to ehnsw index \"%s\"",
			 RelationGetRelationName(index));
	freespace = PageGetFreeSpace(page);
	GenericXLogFinish(xlog);
	UnlockReleaseBuffer(buf);
	ItemPointerSet(tid, blkno, offno);
	if (freespace < MAXALIGN(size))
		RecordPageWithFreeSpace(index, blkno, freespace);

	if (blkno != meta.insert_blkno)
	{
		Buffer		mbuf = ReadBuffer(index, EHNSW_METAPAGE_BLKNO);

		LockBuffer(mbuf, BUFFER_LOCK_EXCLUSIVE);
		xlog = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(xlog, mbuf, 0);
		EhnswPageGetMeta(page)->insert_blkno = blkno;
		GenericXLogFinish(xlog);
		UnlockReleaseBuffer(mbuf);
	}
}

/*
 * Is the item at element->tid still that element, alive?  Under a buffer
 * lock: VACUUM may have marked it deleted, or removed it and let an insert
 * (of any tenant) reuse the slot, since the caller loaded it.  The heap
 * TID identifies an element for its life (a reused slot has another).
 */
static EhnswElementTuple
live_item(Page page, EhnswElement *element, int level)
{
	OffsetNumber offno = ItemPointerGetOffsetNumber(&element->tid);
	ItemId		itemid;
	EhnswElementTuple etup;

	if (PageIsNew(page) || offno < FirstOffsetNumber ||
		offno > PageGetMaxOffsetNumber(page))
		return NULL;
	itemid = PageGetItemId(page, offno);
	if (!ItemIdIsNormal(itemid) ||
		ItemIdGetLength(itemid) < offsetof(EhnswElementTupleData, neighbors))
		return NULL;
	etup = (EhnswElementTuple) PageGetItem(page, itemid);
	if (etup->deleted || etup->tenant_id != element->tenant_id ||
		etup->level < level || etup->nslots != element->nslots ||
		!ItemPointerEquals(&etup->heaptid, &element->heaptid) ||
		offsetof(EhnswElementTupleData, neighbors) +
		etup->nslots * sizeof(ItemPointerData) > ItemIdGetLength(itemid))
		return NULL;
	return etup;
}

/*
 * Copy one level's neighbour slots of an element as they are on its page
 * now (share lock).  False if the element is gone (see live_item).
 */
bool
ehnsw_read_links(EhnswState *state, EhnswElement *element, int level,
				 ItemPointerData *links)
{
	Buffer		buf;
	EhnswElementTuple etup;
	int			start = EhnswLevelOffset(state->m, level);
	int			nslots = EhnswLevelSlots(state->m, level);

	buf = ReadBuffer(state->index, ItemPointerGetBlockNumber(&element->tid));
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	etup = live_item(BufferGetPage(buf), element, level);
	if (etup != NULL)
		memcpy(links, &etup->neighbors[start], nslots * sizeof(ItemPointerData));
	UnlockReleaseBuffer(buf);
	return etup != NULL;
}

/*
 * Write one level's neighbour slots of an element, read-modify-write under
 * the exclusive buffer lock: only if the element is still alive (live_item)
 * and, when expect is given, the level's slots on the page are still
 * exactly expect (what the caller based links on).  With add instead of
 * links, add puts that one TID in the first free slot unless it is there
 * already (no slot free: EHNSW_LINKS_FULL).  Other writers' links are never
 * overwritten by a stale copy: the caller reads again and retries.
 */
EhnswLinkResult
ehnsw_write_links(EhnswState *state, EhnswElement *element, int level,
				  const ItemPointerData *expect, const ItemPointerData *links,
				  ItemPointer add)
{
	Buffer		buf;
	GenericXLogState *xlog;
	Page		page;
	EhnswElementTuple etup;
	int			start = EhnswLevelOffset(state->m, level);
	int			nslots = EhnswLevelSlots(state->m, level);
	int			i;
	EhnswLinkResult result = EHNSW_LINKS_DONE;

	buf = ReadBuffer(state->index, ItemPointerGetBlockNumber(&element->tid));
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	etup = live_item(BufferGetPage(buf), element, level);
	if (etup == NULL)
		result = EHNSW_LINKS_GONE;
	else if (expect != NULL &&
			 memcmp(&etup->neighbors[start], expect,
					nslots * sizeof(ItemPointerData)) != 0)
		result = EHNSW_LINKS_CHANGED;
	else if (add != NULL)
	{
		for (i = start; i < start + nslots; i++)
			if (!ItemPointerIsValid(&etup->neighbors[i]) ||
				ItemPointerEquals(&etup->neighbors[i], add))
				break;
		if (i == start + nslots)
			result = EHNSW_LINKS_FULL;
		else if (ItemPointerIsValid(&etup->neighbors[i]))
			result = EHNSW_LINKS_DONE;	/* linked already */
		else
		{
			xlog = GenericXLogStart(state->index);
			page = GenericXLogRegisterBuffer(xlog, buf, 0);
			etup = live_item(page, element, level);
			etup->neighbors[i] = *add;
			GenericXLogFinish(xlog);
		}
	}
	else
	{
		xlog = GenericXLogStart(state->index);
		page = GenericXLogRegisterBuffer(xlog, buf, 0);
		etup = live_item(page, element, level);
		memcpy(&etup->neighbors[start], links, nslots * sizeof(ItemPointerData));
		GenericXLogFinish(xlog);
	}
	UnlockReleaseBuffer(buf);

	/* Keep the loaded copy in step with what the page now has. */
	if (result == EHNSW_LINKS_DONE && links != NULL)
		memcpy(&element->neighbors[start], links, nslots * sizeof(ItemPointerData));
	return result;
}

/*
 * Overwrite the neighbour slots of one level of an element with the
 * candidates' elements: in a graph being built in memory, or on disk if the
 * level there is still expect (ehnsw_write_links).  False if it changed
 * meanwhile or the element is gone; nothing is written then.
 */
bool
ehnsw_write_neighbors_from(EhnswState *state, EhnswElement *element, int level,
						   const ItemPointerData *expect, List *neighbors)
{
	int			start = EhnswLevelOffset(state->m, level);
	int			nslots = EhnswLevelSlots(state->m, level);
	ItemPointerData *links = palloc(nslots * sizeof(ItemPointerData));
	int			i;
	ListCell   *lc;
	bool		done;

	i = 0;
	foreach(lc, neighbors)
		links[i++] = ((EhnswCandidate *) lfirst(lc))->element->tid;
	for (; i < nslots; i++)
		ItemPointerSetInvalid(&links[i]);
	if (state->graph != NULL)
	{
		/* The list is the item's, in memory. */
		memcpy(&element->neighbors[start], links, nslots * sizeof(ItemPointerData));
		pfree(links);
		return true;
	}
	done = ehnsw_write_links(state, element, level, expect, links, NULL) ==
		EHNSW_LINKS_DONE;
	pfree(links);
	return done;
}

/* The same, if the level is still as the element's loaded copy has it. */
bool
ehnsw_write_neighbors(EhnswState *state, EhnswElement *element, int level,
					  List *neighbors)
{
	int			start = EhnswLevelOffset(state->m, level);
	int			nslots = EhnswLevelSlots(state->m, level);
	ItemPointerData *expect = palloc(nslots * sizeof(ItemPointerData));
	bool		done;

	memcpy(expect, &element->neighbors[start], nslots * sizeof(ItemPointerData));
	done = ehnsw_write_neighbors_from(state, element, level, expect, neighbors);
	pfree(expect);
	return done;
}

/* How often a back-link is tried again when others change the list. */
#define EHNSW_LINK_ATTEMPTS 16

/*
 * Link neighbour n back to the new element at a level: into a free slot,
 * or, when n's list is full, by choosing n's neighbours afresh among the
 * live ones on the page now and the new one (links to deleted elements
 * stay where they are, for VACUUM's repair).  Always from the page's current
 * contents under the exclusive buffer lock (ehnsw_write_links), so two
 * inserters linking to the same n keep each other's links; nothing is
 * written if n was deleted or its slot reused meanwhile.  Returns false
 * then (n is no neighbour for newel), true otherwise.
 */
bool
ehnsw_add_connection(EhnswState *state, EhnswElement *n, EhnswElement *newel,
					 double distance, int level)
{
	int			start = EhnswLevelOffset(state->m, level);
	int			nslots = EhnswLevelSlots(state->m, level);
	ItemPointerData *seen;
	int			attempt;
	int			i;

	if (n->x == NULL || n->tenant_id != newel->tenant_id)
		return false;
	if (n->level < level)
		return true;
	if (state->graph != NULL)
		memcpy(seen = palloc(nslots * sizeof(ItemPointerData)),
			   &n->neighbors[start], nslots * sizeof(ItemPointerData));
	else
		seen = palloc(nslots * sizeof(ItemPointerData));

	for (attempt = 0; attempt < EHNSW_LINK_ATTEMPTS; attempt++)
	{
		List	   *candidates = NIL;
		List	   *deleted = NIL;
		List	   *sorted;
		EhnswCandidate *c;

		if (state->graph == NULL)
		{
			/* A free slot needs no distances: fill it under the lock. */
			switch (ehnsw_write_links(state, n, level, NULL, NULL, &newel->tid))
			{
				case EHNSW_LINKS_DONE:
					return true;
				case EHNSW_LINKS_GONE:
					return false;
				default:
					break;
			}
			if (!ehnsw_read_links(state, n, level, seen))
				return false;
		}
		for (i = 0; i < nslots; i++)
		{
			EhnswElement *old;

			if (!ItemPointerIsValid(&seen[i]))
				break;
			if (ItemPointerEquals(&seen[i], &newel->tid))
				return true;	/* linked already */
			old = ehnsw_load_element(state, &seen[i], true);
			if (old->deleted)
			{
				/*
				 * Keep a link to a deleted element where it is: VACUUM's
				 * repair of n needs it to find n's neighbours around the hole
				 * (dropped here, n would be left out of the repair).
				 */
				c = palloc0(sizeof(EhnswCandidate));
				c->element = old;
				deleted = lappend(deleted, c);
				continue;
			}
			candidates = lappend(candidates, ehnsw_make_candidate(state, old, n->x));
		}
		if (list_length(deleted) >= nslots)
			return true;		/* no room until VACUUM repairs n */
		c = ehnsw_make_candidate(state, newel, n->x);
		c->distance = distance;
		candidates = lappend(candidates, c);
		if (list_length(candidates) + list_length(deleted) <= nslots)
		{
			/* In memory: room left.  On disk: a slot was freed; again. */
			if (state->graph != NULL)
			{
				ehnsw_write_neighbors(state, n, level, candidates);
				return true;
			}
			continue;
		}
		sorted = list_copy(candidates);
		list_sort(sorted, ehnsw_candidate_cmp);
		if (ehnsw_write_neighbors_from(state, n, level, seen,
									   list_concat(deleted,
												   ehnsw_select_neighbors(state, sorted,
																		  nslots - list_length(deleted)))))
			return true;
	}
	/* Others kept changing n's list: leave this one back-link out. */
	return true;
}

/*
 * Take the link to tid out of one level of an element's list, keeping the
 * others in order: tid was chosen as a neighbour, but when it was linked
 * back it turned out deleted, or its slot reused (ehnsw_add_connection).
 * The barriers of VACUUM make that impossible today (docs/hnsw.md,
 * "Locking"); this keeps the element's own lists to live elements of its
 * tenant even so.
 */
static void
unlink_neighbor(EhnswState *state, EhnswElement *element, int level,
				ItemPointer tid)
{
	int			nslots = EhnswLevelSlots(state->m, level);
	ItemPointerData *seen = palloc(nslots * sizeof(ItemPointerData));
	ItemPointerData *links = palloc(nslots * sizeof(ItemPointerData));
	int			attempt;

	for (attempt = 0; attempt < EHNSW_LINK_ATTEMPTS; attempt++)
	{
		int			i;
		int			j = 0;
		bool		there = false;

		if (!ehnsw_read_links(state, element, level, seen))
			return;
		for (i = 0; i < nslots; i++)
		{
			if (ItemPointerIsValid(&seen[i]) && ItemPointerEquals(&seen[i], tid))
				there = true;
			else if (ItemPointerIsValid(&seen[i]))
				links[j++] = seen[i];
		}
		if (!there)
			return;
		for (; j < nslots; j++)
			ItemPointerSetInvalid(&links[j]);
		if (ehnsw_write_links(state, element, level, seen, links, NULL) !=
			EHNSW_LINKS_CHANGED)
			return;
	}
}

/*
 * Insert one evector into the index under heaptid.  Returns false when
 * the value cannot be placed (a zero vector under cosine distance).
 */
bool
ehnsw_insert_value(EhnswState *state, Datum value, ItemPointer heaptid)
{
	Relation	index = state->index;
	struct varlena *env = (struct varlena *) PG_DETOAST_DATUM(value);
	Size		envsize = VARSIZE(env);
	EnvelopeHeader hdr;
	uint32		tenant_id;
	float4	   *q;
	int			level;
	int			l;
	EhnswMetaPageData meta;
	EhnswEntryPoint entry;
	bool		found;
	EhnswElementTuple etup;
	Size		size;
	ItemPointerData tid;
	EhnswElement *newel;
	List	   *ep = NIL;
	List	  **chosen;
	int			top = 0;
	bool		new_entry;
	bool		only_if_higher;
	LOCKMODE	lockmode = ShareLock;

	/*
	 * A crypto-shredded tenant's value cannot be decrypted, and no claimant
	 * can ever search for it: leave it out of the index, so that a table
	 * still holding such rows can be indexed and reindexed.
	 */
	envelope_read_header(env, ENVELOPE_KIND_VECTOR, &hdr);
	if (keys_tenant_is_shredded(hdr.tenant_id))
		return false;
	q = ehnsw_decrypt_vector(state, env, &tenant_id);
	if (!ehnsw_indexable(state, q))
		return false;
	state->tenant_id = tenant_id;
	level = random_level(state->m, envsize);

	if (state->graph != NULL)
		graph_read_entry(state->graph, tenant_id, &entry, &found);
	else
	{
		/*
		 * The update lock in share mode: inserts run side by side, and the
		 * tenant's entry point stays as read.  Exclusive (after letting go of
		 * share mode: no buffer lock is held here) when this element will
		 * change it: a new tenant, or a level above the entry point's. Read
		 * the entry point again then: another insert may have set it.
		 */
		LockPage(index, EHNSW_UPDATE_LOCK, ShareLock);
		ehnsw_read_meta(index, &meta, &entry, tenant_id, &found);
		if (!found || level > entry.level)
		{
			UnlockPage(index, EHNSW_UPDATE_LOCK, ShareLock);
			lockmode = ExclusiveLock;
			LockPage(index, EHNSW_UPDATE_LOCK, ExclusiveLock);
			ehnsw_read_meta(index, &meta, &entry, tenant_id, &found);
		}
	}

	/* Choose neighbours on every level before the element exists. */
	chosen = palloc0((level + 1) * sizeof(List *));
	if (found)
	{
		ItemPointerData etid;
		EhnswElement *epel;

		ItemPointerSet(&etid, entry.blkno, entry.offno);
		epel = ehnsw_load_element(state, &etid, true);
		if (epel->tenant_id != tenant_id || (epel->x == NULL && !epel->keyless))
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("index \"%s\" has an invalid entry point for a tenant",
							RelationGetRelationName(index)),
					 errhint("Please REINDEX it.")));
		ep = ehnsw_entry_candidates(state, epel, entry.level, q, &top);
		for (l = top; ep != NIL && l > level; l--)
			ep = list_make1(linitial(ehnsw_search_layer(state, q, ep, 1, l, tenant_id, NULL)));
		for (l = Min(level, top); ep != NIL && l >= 0; l--)
		{
			List	   *w = ehnsw_search_layer(state, q, ep, state->ef_construction,
											   l, tenant_id, NULL);

			chosen[l] = ehnsw_select_neighbors(state, w, EhnswLevelSlots(state->m, l));
			ep = w;
		}
	}

	/* Write the element with its neighbour lists. */
	size = element_size(state->m, level, envsize);
	etup = palloc0(size);
	etup->level = level;
	etup->nslots = (level + 2) * state->m;
	etup->tenant_id = tenant_id;
	etup->heaptid = *heaptid;
	etup->envelope_offset = INTALIGN(offsetof(EhnswElementTupleData, neighbors) +
									 etup->nslots * sizeof(ItemPointerData));
	for (l = 0; l < etup->nslots; l++)
		ItemPointerSetInvalid(&etup->neighbors[l]);
	for (l = 0; l <= level; l++)
	{
		ListCell   *lc;
		int			i = EhnswLevelOffset(state->m, l);

		foreach(lc, chosen[l])
			etup->neighbors[i++] = ((EhnswCandidate *) lfirst(lc))->element->tid;
	}
	memcpy((char *) etup + etup->envelope_offset, env, envsize);
	if (state->graph != NULL)
		graph_add_element(state, etup, size, q, &tid);
	else
		write_element(state, etup, size, &tid);
	pfree(etup);
	if (state->graph == NULL)
		ehnsw_debug_pause(ehnsw_debug_insert_pause_lock);

	/* Link the chosen neighbours back. */
	newel = ehnsw_load_element(state, &tid, true);
	for (l = 0; l <= level; l++)
	{
		ListCell   *lc;

		foreach(lc, chosen[l])
		{
			EhnswCandidate *c = lfirst(lc);

			if (!ehnsw_add_connection(state, c->element, newel, c->distance, l) &&
				state->graph == NULL)
				unlink_neighbor(state, newel, l, &c->element->tid);
		}
	}

	/*
	 * The new element becomes the entry point when it is the tenant's first
	 * or highest, and also when nothing readable could be reached from the
	 * entry point (its data key, and those of the elements around it, do not
	 * exist: ehnsw_entry_candidates), or it would be unreachable.
	 */
	new_entry = !found || level > entry.level || ep == NIL;
	if (state->graph != NULL)
	{
		if (new_entry)
			graph_set_entry(state, tenant_id, &tid, level);
		return true;
	}
	only_if_higher = found && ep != NIL;
	if (new_entry && lockmode == ShareLock)
	{
		ItemPointerData seen;

		/*
		 * Only an entry point from which nothing readable was reachable gets
		 * here (a higher level or a new tenant took the lock exclusively at
		 * the start).  Changing it needs the lock in exclusive mode; read it
		 * again then.  If another insert or VACUUM has moved it meanwhile,
		 * that one stands unless this element is higher.
		 */
		ItemPointerSet(&seen, entry.blkno, entry.offno);
		UnlockPage(index, EHNSW_UPDATE_LOCK, ShareLock);
		lockmode = ExclusiveLock;
		LockPage(index, EHNSW_UPDATE_LOCK, ExclusiveLock);
		ehnsw_read_meta(index, &meta, &entry, tenant_id, &found);
		if (found && (entry.blkno != ItemPointerGetBlockNumber(&seen) ||
					  entry.offno != ItemPointerGetOffsetNumber(&seen)))
			only_if_higher = true;
	}
	if (new_entry)
		ehnsw_set_entry_point(index, tenant_id, &tid, level, only_if_higher);
	UnlockPage(index, EHNSW_UPDATE_LOCK, lockmode);
	return true;
}

bool
ehnswinsert(Relation index, Datum *values, bool *isnull, ItemPointer heap_tid,
			Relation heap, IndexUniqueCheck checkUnique, bool indexUnchanged,
			IndexInfo *indexInfo)
{
	EhnswState *state = (EhnswState *) indexInfo->ii_AmCache;
	MemoryContext old;

	if (isnull[0])
		return false;
	if (state == NULL)
	{
		old = MemoryContextSwitchTo(indexInfo->ii_Context);
		state = palloc(sizeof(EhnswState));
		ehnsw_state_init(state, index, true);

		/*
		 * Between VACUUM's marking and its freeing of deleted elements, walk
		 * through them: with half a neighbourhood deleted, the rest is often
		 * reachable only through it.  A search never returns a deleted
		 * element, so none is chosen as a neighbour.
		 */
		state->traverse_deleted = true;
		indexInfo->ii_AmCache = state;
		MemoryContextSwitchTo(old);
	}
	old = MemoryContextSwitchTo(state->opcxt);
	ehnsw_insert_value(state, values[0], heap_tid);
	MemoryContextSwitchTo(old);
	ehnsw_state_reset(state);
	return false;
}
