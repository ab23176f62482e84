/*-------------------------------------------------------------------------
 *
 * ehnswvacuum.c
 *	  VACUUM of an ehnsw index.
 *
 * An element whose heap row is dead is marked deleted; once the links
 * around it are repaired its item is removed and the bytes it held are
 * zeroed on the page (WAL-logged, so standbys zero them too): after a
 * CHECKPOINT no byte of a deleted value's ciphertext remains in the index
 * file.  Searches skip deleted elements; inserts walk through them but
 * never link to them.  A tenant whose entry
 * point was deleted gets its highest remaining live element as the new
 * one, or leaves the directory when it has none.
 *
 * Then every live element that links to a deleted one gets that level's
 * neighbour list chosen afresh (HNSW's heuristic) among its live
 * neighbours and the live neighbours of the deleted ones, which keeps the
 * graph connected where the deleted elements were.  The deleted items'
 * neighbour lists stay on the page for this.  Finally the deleted items
 * are removed from their pages (their line pointers stay, unused, so no
 * TID changes) and the space goes to the free space map for inserts.
 * A search that copied a neighbour list before the repair may still name
 * a removed or reused slot; it treats it as deleted, and never decrypts an
 * element of another tenant (ehnswutils.c).
 *
 * Vacuum does not hold the update lock for its run: inserts and scans go
 * on.  It takes it exclusively to move entry points, and takes and releases
 * it between its phases to wait for the inserts in flight (barriers; see
 * ehnswbulkdelete and docs/hnsw.md, "Locking").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "storage/freespace.h"
#include "storage/indexfsm.h"
#include "storage/lmgr.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "ehnsw.h"
#include "keys.h"

/* Highest live element of a tenant seen so far. */
typedef struct TenantBest
{
	uint32		tenant_id;		/* hash key */
	ItemPointerData tid;
	int			level;
} TenantBest;

/* Has the element an entry point names been deleted? */
static bool
entry_point_deleted(Relation index, EhnswEntryPoint *entry)
{
	Buffer		buf = ReadBuffer(index, entry->blkno);
	Page		page;
	ItemId		itemid;
	bool		deleted = true;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (ehnsw_page_usable(index, buf, entry->blkno) &&
		entry->offno >= FirstOffsetNumber &&
		entry->offno <= PageGetMaxOffsetNumber(page))
	{
		itemid = PageGetItemId(page, entry->offno);
		if (ItemIdIsNormal(itemid))
			deleted = ((EhnswElementTuple) PageGetItem(page, itemid))->deleted != 0;
	}
	UnlockReleaseBuffer(buf);
	return deleted;
}

/*
 * Read and lock one element page for a vacuum pass.  It may be new (all
 * zeros): a crash can leave pages an uncommitted insert added; callers
 * skip those.
 */
static Buffer
vacuum_read_page(Relation index, BlockNumber blkno,
				 BufferAccessStrategy strategy, int lockmode)
{
	Buffer		buf;

	vacuum_delay_point();
	buf = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, strategy);
	LockBuffer(buf, lockmode);
	(void) ehnsw_page_usable(index, buf, blkno);
	return buf;
}

/*
 * The index's size for a pass.  Taking the extension lock first makes sure
 * that every page below it has been initialised or is locked by the insert
 * that added it, which initialises it before letting go: a pass never
 * mistakes a page being added for one a crash left empty (free_deleted
 * would offer it to other inserts).
 */
static BlockNumber
vacuum_nblocks(Relation index)
{
	BlockNumber nblocks;

	LockRelationForExtension(index, ExclusiveLock);
	nblocks = RelationGetNumberOfBlocks(index);
	UnlockRelationForExtension(index, ExclusiveLock);
	return nblocks;
}

/*
 * Wait for every insert in flight to finish: take the update lock
 * exclusively and let go at once.  Inserts that start afterwards see
 * whatever this VACUUM did before.
 */
static void
wait_for_inserts(Relation index)
{
	LockPage(index, EHNSW_UPDATE_LOCK, ExclusiveLock);
	UnlockPage(index, EHNSW_UPDATE_LOCK, ExclusiveLock);
}

/* Is the element at tid one the index has deleted? */
static inline bool
is_deleted(HTAB *deleted, ItemPointer tid)
{
	uint64		key = ehnsw_tid_key(tid);

	return hash_search(deleted, &key, HASH_FIND, NULL) != NULL;
}

/*
 * Choose afresh the neighbours of one level of a live element that links to
 * deleted elements.  Candidates: its live neighbours, and the live elements
 * reached through its deleted ones, following chains of deleted elements
 * (whole neighbourhoods may have been deleted together) up to
 * REPAIR_MAX_DELETED_VISITS of them and twice as many candidates as slots.
 * If the element lost a quarter of its links or more, or that yields too
 * few, a search of the level from the tenant's entry point adds more, as
 * an insert would.
 */
#define REPAIR_MAX_DELETED_VISITS	64

/* How often a level is repaired again when inserts change it meanwhile. */
#define REPAIR_ATTEMPTS				16

static bool
repair_level_once(EhnswState *state, HTAB *deleted, EhnswElement *e, int level,
				  EhnswEntryPoint *entry)
{
	int			start = EhnswLevelOffset(state->m, level);
	int			nslots = EhnswLevelSlots(state->m, level);
	List	   *candidates = NIL;
	List	   *to_visit = NIL;
	HTAB	   *seen;
	HASHCTL		ctl;
	uint64		key;
	int			visits = 0;
	int			nlinks = 0;
	int			nlost = 0;
	bool		searched = false;
	List	   *chosen;
	int			i;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(uint64);
	ctl.hcxt = CurrentMemoryContext;
	seen = hash_create("ehnsw repair", 128, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	key = ehnsw_tid_key(&e->tid);
	hash_search(seen, &key, HASH_ENTER, NULL);

	/*
	 * Breadth first from e through deleted elements only, until there are
	 * twice as many candidates as slots: random deletions of a tenth of a
	 * graph already connect most deleted elements to each other, so an
	 * unbounded walk would decrypt most of the graph for every repair.
	 */
	to_visit = lappend(to_visit, e);
	while (to_visit != NIL && list_length(candidates) < 2 * nslots)
	{
		EhnswElement *from = linitial(to_visit);

		to_visit = list_delete_first(to_visit);
		for (i = start; i < Min(start + nslots, from->nslots); i++)
		{
			ItemPointer ntid = &from->neighbors[i];
			bool		found;
			EhnswElement *c;

			if (!ItemPointerIsValid(ntid))
				break;
			key = ehnsw_tid_key(ntid);
			hash_search(seen, &key, HASH_ENTER, &found);
			if (found)
				continue;
			if (is_deleted(deleted, ntid))
			{
				if (visits++ < REPAIR_MAX_DELETED_VISITS)
				{
					c = ehnsw_load_element(state, ntid, false);
					if (c->level >= level && c->nslots > 0)
						to_visit = lappend(to_visit, c);
				}
				continue;
			}
			c = ehnsw_load_element(state, ntid, true);
			if (c->x == NULL || c->level < level || c->tenant_id != e->tenant_id)
				continue;
			candidates = lappend(candidates, ehnsw_make_candidate(state, c, e->x));
		}
	}

	/*
	 * Lost a quarter of its links or more (deletions that took whole
	 * neighbourhoods), or found too few: the surroundings may have fallen
	 * apart, so search the level as an insert would.
	 */
	for (i = start; i < start + nslots && ItemPointerIsValid(&e->neighbors[i]); i++)
	{
		nlinks++;
		if (is_deleted(deleted, &e->neighbors[i]))
			nlost++;
	}
	if ((nlost * 4 >= nlinks || list_length(candidates) < nslots) && entry != NULL)
	{
		ItemPointerData etid;
		EhnswElement *epel;

		ItemPointerSet(&etid, entry->blkno, entry->offno);
		epel = ehnsw_load_element(state, &etid, true);
		if (epel->x != NULL && epel->tenant_id == e->tenant_id &&
			!ItemPointerEquals(&epel->tid, &e->tid))
		{
			List	   *ep = list_make1(ehnsw_make_candidate(state, epel, e->x));
			List	   *found_list;
			ListCell   *lc;
			int			l;

			searched = true;

			for (l = entry->level; l > level; l--)
				ep = ehnsw_search_layer(state, e->x, ep, 1, l, e->tenant_id, NULL);
			found_list = ehnsw_search_layer(state, e->x, ep, state->ef_construction,
											level, e->tenant_id, NULL);
			foreach(lc, found_list)
			{
				EhnswCandidate *c = lfirst(lc);
				bool		found;

				key = ehnsw_tid_key(&c->element->tid);
				hash_search(seen, &key, HASH_ENTER, &found);
				if (!found && !ItemPointerEquals(&c->element->tid, &e->tid))
					candidates = lappend(candidates, c);
			}
		}
	}
	list_sort(candidates, ehnsw_candidate_cmp);
	chosen = ehnsw_select_neighbors(state, candidates, nslots);

	/*
	 * Written only if the level is still as loaded: a concurrent insert may
	 * have linked e to its new element meanwhile (the caller reads the list
	 * again and repeats).
	 */
	if (!ehnsw_write_neighbors(state, e, level, chosen))
		return false;

	/*
	 * An element that needed a search has likely lost its incoming links too
	 * (they came from the deleted neighbourhood): link the chosen neighbours
	 * back, or it could stay unreachable.
	 */
	if (searched)
	{
		ListCell   *lc;

		foreach(lc, chosen)
		{
			EhnswCandidate *c = lfirst(lc);

			(void) ehnsw_add_connection(state, c->element, e, c->distance, level);
		}
	}
	return true;
}

/* Does a level's list link to an element in deleted? */
static bool
links_to_deleted(HTAB *deleted, ItemPointerData *links, int nslots)
{
	int			i;

	for (i = 0; i < nslots && ItemPointerIsValid(&links[i]); i++)
		if (is_deleted(deleted, &links[i]))
			return true;
	return false;
}

/*
 * Repair one level of a live element (repair_level_once), from its list as
 * the page has it now.  False if inserts kept changing the list, so links
 * to deleted elements may remain.
 */
static bool
repair_level(EhnswState *state, HTAB *deleted, EhnswElement *e, int level,
			 EhnswEntryPoint *entry)
{
	int			start = EhnswLevelOffset(state->m, level);
	int			nslots = EhnswLevelSlots(state->m, level);
	int			attempt;

	for (attempt = 0; attempt < REPAIR_ATTEMPTS; attempt++)
	{
		if (repair_level_once(state, deleted, e, level, entry))
			return true;
		if (!ehnsw_read_links(state, e, level, &e->neighbors[start]) ||
			!links_to_deleted(deleted, &e->neighbors[start], nslots))
			return true;
	}
	return false;
}

/*
 * Unlink a live element that cannot be decrypted (its data key does not
 * exist: a row of a transaction still in progress whose rotate_dek() has
 * not committed, or a key that was lost) from the deleted elements: keep
 * its other neighbours, since without its vector no new ones can be
 * chosen.  Each level is rewritten from the list as the page has it now
 * (inserts may be linking to the element meanwhile); false if they kept
 * changing it, so links to deleted elements may remain.
 */
static bool
unlink_deleted(EhnswState *state, HTAB *deleted, EhnswElement *e)
{
	int			level;

	for (level = 0; level <= e->level; level++)
	{
		int			start = EhnswLevelOffset(state->m, level);
		int			end = Min(start + EhnswLevelSlots(state->m, level), e->nslots);
		int			attempt;
		bool		done = false;

		for (attempt = 0; attempt < REPAIR_ATTEMPTS && !done; attempt++)
		{
			List	   *kept = NIL;
			bool		changed = false;
			int			i;

			if (attempt > 0 &&
				!ehnsw_read_links(state, e, level, &e->neighbors[start]))
				return true;	/* the element itself is gone */
			for (i = start; i < end && ItemPointerIsValid(&e->neighbors[i]); i++)
			{
				EhnswCandidate *c;

				if (is_deleted(deleted, &e->neighbors[i]))
				{
					changed = true;
					continue;
				}
				c = palloc0(sizeof(EhnswCandidate));
				c->element = ehnsw_load_element(state, &e->neighbors[i], false);
				kept = lappend(kept, c);
			}
			done = !changed || ehnsw_write_neighbors(state, e, level, kept);
		}
		if (!done)
			return false;
	}
	return true;
}

/*
 * Third pass: remove the items of deleted elements, whose every live link
 * was repaired, and offer their space to later inserts through the free
 * space map.  Line pointers stay (as unused), so no other element's TID
 * changes.
 */
static void
free_deleted(Relation index, BufferAccessStrategy strategy)
{
	BlockNumber nblocks = vacuum_nblocks(index);
	BlockNumber blkno;

	for (blkno = EHNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buf;
		Page		page;
		GenericXLogState *xlog = NULL;
		OffsetNumber off;
		Size		freespace;

		buf = vacuum_read_page(index, blkno, strategy, BUFFER_LOCK_EXCLUSIVE);
		page = BufferGetPage(buf);
		if (PageIsNew(page))
		{
			/* Left by a crash; an insert initialises it when it takes it. */
			UnlockReleaseBuffer(buf);
			RecordPageWithFreeSpace(index, blkno, EHNSW_EMPTY_PAGE_FREE_SPACE);
			continue;
		}
		for (off = FirstOffsetNumber; off <= PageGetMaxOffsetNumber(page); off++)
		{
			ItemId		itemid = PageGetItemId(page, off);

			if (!ItemIdIsNormal(itemid) ||
				!((EhnswElementTuple) PageGetItem(page, itemid))->deleted)
				continue;
			if (xlog == NULL)
			{
				xlog = GenericXLogStart(index);
				page = GenericXLogRegisterBuffer(xlog, buf, 0);
			}
			PageIndexTupleDeleteNoCompact(page, off);
		}

		/*
		 * Deleting moves the remaining items and leaves stale copies of their
		 * bytes in the gap.  Generic WAL zeroes the gap of a logged
		 * relation's page; do it ourselves so unlogged ones hold no old
		 * ciphertext either.
		 */
		if (xlog != NULL)
			memset((char *) page + ((PageHeader) page)->pd_lower, 0,
				   ((PageHeader) page)->pd_upper - ((PageHeader) page)->pd_lower);
		freespace = PageGetFreeSpace(page);
		if (xlog != NULL)
			GenericXLogFinish(xlog);
		UnlockReleaseBuffer(buf);
		RecordPageWithFreeSpace(index, blkno, freespace);
	}
	IndexFreeSpaceMapVacuum(index);
}

/*
 * Repair every live element that links to a deleted one.  False if some
 * link could not be repaired (inserts kept changing that list): the
 * deleted elements must then stay until the next VACUUM.
 */
static bool
repair_graph(Relation index, HTAB *deleted, BufferAccessStrategy strategy)
{
	EhnswState	state;
	BlockNumber nblocks = vacuum_nblocks(index);
	BlockNumber blkno;
	bool		complete = true;

	ehnsw_state_init(&state, index, true);
	state.traverse_deleted = true;
	for (blkno = EHNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buf;
		Page		page;
		OffsetNumber off;
		OffsetNumber maxoff;
		List	   *broken = NIL;
		ListCell   *lc;

		buf = vacuum_read_page(index, blkno, strategy, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		maxoff = PageGetMaxOffsetNumber(page);
		for (off = FirstOffsetNumber; off <= maxoff; off++)
		{
			ItemId		itemid = PageGetItemId(page, off);
			EhnswElementTuple etup;
			int			i;

			if (!ItemIdIsNormal(itemid))
				continue;
			etup = (EhnswElementTuple) PageGetItem(page, itemid);
			if (etup->deleted)
				continue;
			for (i = 0; i < etup->nslots; i++)
				if (ItemPointerIsValid(&etup->neighbors[i]) &&
					is_deleted(deleted, &etup->neighbors[i]))
				{
					ItemPointer tid = palloc(sizeof(ItemPointerData));

					ItemPointerSet(tid, blkno, off);
					broken = lappend(broken, tid);
					break;
				}
		}
		UnlockReleaseBuffer(buf);

		foreach(lc, broken)
		{
			MemoryContext old = MemoryContextSwitchTo(state.opcxt);
			EhnswElement *e;
			int			level;

			state.tenant_id = 0;

			/*
			 * A crypto-shredded tenant's elements cannot be decrypted, and
			 * nobody can search its graph any more, so no new neighbours are
			 * chosen for them; but their links to deleted elements must go
			 * (unlink_deleted needs no key), or the slots freed below, once
			 * reused by another tenant's insert, would join the two graphs.
			 */
			e = ehnsw_load_element(&state, lfirst(lc), false);
			if (keys_tenant_is_shredded(e->tenant_id))
			{
				if (!unlink_deleted(&state, deleted, e))
					complete = false;
				MemoryContextSwitchTo(old);
				ehnsw_state_reset(&state);
				continue;
			}
			e = ehnsw_load_element(&state, lfirst(lc), true);
			state.tenant_id = e->tenant_id;
			if (e->x == NULL)
			{
				if (!unlink_deleted(&state, deleted, e))
					complete = false;
				MemoryContextSwitchTo(old);
				ehnsw_state_reset(&state);
				continue;
			}

			for (level = 0; level <= e->level; level++)
			{
				int			start = EhnswLevelOffset(state.m, level);
				int			i;

				for (i = start; i < start + EhnswLevelSlots(state.m, level); i++)
				{
					if (!ItemPointerIsValid(&e->neighbors[i]))
						break;
					if (is_deleted(deleted, &e->neighbors[i]))
					{
						EhnswEntryPoint entry;
						EhnswMetaPageData meta;
						bool		have_entry;

						ehnsw_read_meta(index, &meta, &entry, e->tenant_id, &have_entry);
						if (!repair_level(&state, deleted, e, level,
										  have_entry ? &entry : NULL))
							complete = false;
						break;
					}
				}
			}
			MemoryContextSwitchTo(old);
			ehnsw_state_reset(&state);
		}
		list_free_deep(broken);
	}
	MemoryContextDelete(state.opcxt);
	return complete;
}

/*
 * Highest live element of a tenant that is not in deleted, or an invalid
 * tid when it has none.  Returns its level.  Read under the exclusive
 * update lock, so no insert adds one meanwhile.
 */
static int
tenant_best(Relation index, uint32 tenant_id, HTAB *deleted,
			BufferAccessStrategy strategy, ItemPointer tid)
{
	BlockNumber nblocks = vacuum_nblocks(index);
	BlockNumber blkno;
	int			level = -1;

	ItemPointerSetInvalid(tid);
	for (blkno = EHNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buf = vacuum_read_page(index, blkno, strategy,
										   BUFFER_LOCK_SHARE);
		Page		page = BufferGetPage(buf);
		OffsetNumber off;

		for (off = FirstOffsetNumber;
			 !PageIsNew(page) && off <= PageGetMaxOffsetNumber(page); off++)
		{
			ItemId		itemid = PageGetItemId(page, off);
			EhnswElementTuple etup;
			ItemPointerData here;

			if (!ItemIdIsNormal(itemid))
				continue;
			etup = (EhnswElementTuple) PageGetItem(page, itemid);
			ItemPointerSet(&here, blkno, off);
			if (etup->deleted || etup->tenant_id != tenant_id ||
				etup->level <= level || is_deleted(deleted, &here))
				continue;
			*tid = here;
			level = etup->level;
		}
		UnlockReleaseBuffer(buf);
	}
	return Max(level, 0);
}

IndexBulkDeleteResult *
ehnswbulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
				IndexBulkDeleteCallback callback, void *callback_state)
{
	Relation	index = info->index;
	BlockNumber nblocks;
	BlockNumber blkno;
	HASHCTL		ctl;
	HTAB	   *best;
	HTAB	   *deleted;
	HTAB	   *dying;
	EhnswMetaPageData meta;
	EhnswEntryPoint *entries;
	bool		found;
	uint32		i;
	Buffer		mbuf;

	if (stats == NULL)
		stats = palloc0(sizeof(IndexBulkDeleteResult));

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(TenantBest);
	ctl.hcxt = CurrentMemoryContext;
	best = hash_create("ehnsw vacuum tenants", 64, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(uint64);
	ctl.hcxt = CurrentMemoryContext;
	deleted = hash_create("ehnsw vacuum deleted", 1024, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	dying = hash_create("ehnsw vacuum dying", 1024, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/* Keeps index_check out until this VACUUM is done; no insert takes it. */
	LockPage(index, EHNSW_VACUUM_LOCK, ExclusiveLock);
	nblocks = vacuum_nblocks(index);

	/*
	 * Pass 1, read only and without the update lock (inserts go on): which
	 * elements die (their heap rows are dead), and each tenant's highest
	 * surviving element.  Elements inserted meanwhile never die here: the
	 * heap TIDs VACUUM reports dead cannot be reused before it ends.
	 */
	for (blkno = EHNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buf = vacuum_read_page(index, blkno, info->strategy,
										   BUFFER_LOCK_SHARE);
		Page		page = BufferGetPage(buf);
		OffsetNumber off;

		for (off = FirstOffsetNumber;
			 !PageIsNew(page) && off <= PageGetMaxOffsetNumber(page); off++)
		{
			ItemId		itemid = PageGetItemId(page, off);
			EhnswElementTuple etup;
			uint64		key = ehnsw_location_key(blkno, off);

			if (!ItemIdIsNormal(itemid))
				continue;
			etup = (EhnswElementTuple) PageGetItem(page, itemid);
			if (etup->deleted)
				hash_search(deleted, &key, HASH_ENTER, NULL);
			else if (callback(&etup->heaptid, callback_state))
			{
				hash_search(deleted, &key, HASH_ENTER, NULL);
				hash_search(dying, &key, HASH_ENTER, NULL);
			}
			else
			{
				TenantBest *b = hash_search(best, &etup->tenant_id, HASH_ENTER, &found);

				if (!found || etup->level > b->level)
				{
					ItemPointerSet(&b->tid, blkno, off);
					b->level = etup->level;
				}
				stats->num_index_tuples++;
			}
		}
		UnlockReleaseBuffer(buf);
	}

	/*
	 * Move every entry point off a dying element before anything dies, so a
	 * search never starts from a deleted or removed element.  Inserts rely on
	 * their tenant's entry point staying as they read it: hold the update
	 * lock exclusively for this.
	 */
	LockPage(index, EHNSW_UPDATE_LOCK, ExclusiveLock);
	ehnsw_read_meta(index, &meta, NULL, 0, &found);
	mbuf = ReadBuffer(index, EHNSW_METAPAGE_BLKNO);
	LockBuffer(mbuf, BUFFER_LOCK_SHARE);
	entries = palloc(Max(meta.ntenants, 1) * sizeof(EhnswEntryPoint));
	memcpy(entries, EhnswPageGetMeta(BufferGetPage(mbuf))->tenants,
		   meta.ntenants * sizeof(EhnswEntryPoint));
	UnlockReleaseBuffer(mbuf);
	for (i = 0; i < meta.ntenants; i++)
	{
		TenantBest *b;
		ItemPointerData tid;
		int			level = 0;
		uint64		key = ehnsw_location_key(entries[i].blkno,
											 entries[i].offno);

		if (hash_search(deleted, &key, HASH_FIND, NULL) == NULL &&
			!entry_point_deleted(index, &entries[i]))
			continue;
		b = hash_search(best, &entries[i].tenant_id, HASH_FIND, NULL);
		if (b != NULL)
		{
			tid = b->tid;
			level = b->level;
		}
		else
		{
			/*
			 * Every element pass 1 saw of this tenant dies; an insert may
			 * have added one since.  Look again, inserts held off.
			 */
			level = tenant_best(index, entries[i].tenant_id, deleted,
								info->strategy, &tid);
		}
		ehnsw_set_entry_point(index, entries[i].tenant_id, &tid, level, false);
	}
	UnlockPage(index, EHNSW_UPDATE_LOCK, ExclusiveLock);

	/*
	 * Pass 2: mark the dying elements deleted, page by page under exclusive
	 * buffer locks, inserts going on.  (Also when nothing new dies but an
	 * interrupted VACUUM left deleted elements behind: passes 3 and 4 finish
	 * its work.)  From here on a search or an insert that loads one of them
	 * sees it deleted: searches skip it, inserts walk through it (as the
	 * repair does) but never link to it.
	 */
	if (hash_get_num_entries(deleted) > 0)
	{
		bool		repaired;

		for (blkno = EHNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
		{
			Buffer		buf = vacuum_read_page(index, blkno, info->strategy,
											   BUFFER_LOCK_EXCLUSIVE);
			Page		page = BufferGetPage(buf);
			GenericXLogState *xlog = NULL;
			OffsetNumber off;

			for (off = FirstOffsetNumber;
				 !PageIsNew(page) && off <= PageGetMaxOffsetNumber(page); off++)
			{
				uint64		key = ehnsw_location_key(blkno, off);
				ItemId		itemid;
				EhnswElementTuple etup;

				if (hash_search(dying, &key, HASH_FIND, NULL) == NULL)
					continue;
				if (xlog == NULL)
				{
					xlog = GenericXLogStart(index);
					page = GenericXLogRegisterBuffer(xlog, buf, 0);
				}
				itemid = PageGetItemId(page, off);
				etup = (EhnswElementTuple) PageGetItem(page, itemid);

				/*
				 * The envelope stays until pass 4 removes the whole item: the
				 * repair walks through deleted elements as waypoints.
				 * Searches never return or decrypt a deleted element.
				 */
				etup->deleted = 1;
				ItemPointerSetInvalid(&etup->heaptid);
				stats->tuples_removed++;
			}
			if (xlog != NULL)
				GenericXLogFinish(xlog);
			UnlockReleaseBuffer(buf);
		}

		/*
		 * Barrier 1: an insert that began before pass 2 may have chosen an
		 * element just marked as a neighbour and still be linking to it. Once
		 * it has finished, every link to a deleted element is on a page for
		 * pass 3 to find, and no later insert makes a new one.
		 */
		wait_for_inserts(index);
		ehnsw_debug_pause(ehnsw_debug_vacuum_pause_lock);

		/*
		 * Pass 3 repairs the links into what this vacuum deleted (links into
		 * elements deleted by earlier vacuums were repaired then).
		 */
		repaired = repair_graph(index, deleted, info->strategy);

		/*
		 * Barrier 2: no insert that may still hold a TID it read before the
		 * repair is running when pass 4 lets the slots be reused (inserts
		 * also check every element they link at the moment of writing).
		 */
		wait_for_inserts(index);
		if (ehnsw_debug_vacuum_pause_lock != 0)
			ehnsw_debug_pause(ehnsw_debug_vacuum_pause_lock + 1);

		/*
		 * Pass 4 frees the deleted items, unless a link to one could not be
		 * repaired: then they stay, marked, for the next VACUUM.
		 */
		if (repaired)
			free_deleted(index, info->strategy);
		else
			ereport(LOG,
					(errmsg("index \"%s\" keeps its deleted elements until the next VACUUM",
							RelationGetRelationName(index)),
					 errdetail("Concurrent inserts kept changing a neighbour list that VACUUM was repairing.")));
	}

	UnlockPage(index, EHNSW_VACUUM_LOCK, ExclusiveLock);
	stats->num_pages = nblocks;
	return stats;
}

/* The erasure module's hook (ehnsw.h), or NULL. */
static EhnswVacuumCleanupHook vacuum_cleanup_hook = NULL;

void
ehnsw_set_vacuum_cleanup_hook(EhnswVacuumCleanupHook hook)
{
	vacuum_cleanup_hook = hook;
}

IndexBulkDeleteResult *
ehnswvacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	if (info->analyze_only)
		return stats;
	if (stats == NULL)
	{
		stats = palloc0(sizeof(IndexBulkDeleteResult));
		stats->num_index_tuples = info->num_heap_tuples;
		stats->estimated_count = true;
	}
	stats->num_pages = RelationGetNumberOfBlocks(info->index);

	/*
	 * Every VACUUM of the table, autovacuum's included, comes here after its
	 * heap passes: the place where the erasure module scrubs the table's
	 * pages under autovacuum, which bypasses the ProcessUtility hook
	 * (erasure/scrub.c registers the hook).
	 */
	if (vacuum_cleanup_hook)
		vacuum_cleanup_hook(info, stats);
	return stats;
}
