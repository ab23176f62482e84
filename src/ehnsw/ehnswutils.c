/*-------------------------------------------------------------------------
 *
 * ehnswutils.c
 *	  Pages, the metapage's tenant directory, loading and decrypting
 *	  elements, distances, and the HNSW layer search shared by insert and
 *	  scan.
 *
 * Every element is loaded into the operation's memory context once per
 * operation.  Its fixed fields and neighbour list are copied under a share
 * lock on its page and, when the data key it names is the one the last
 * element was decrypted under (and is still cached: keys_cached_dek), its
 * vector is decrypted straight from the page under that lock, with no copy
 * of the item.  Otherwise the item is copied and decrypted after the lock
 * is released, as any first use of a key may read the keyring.  Decrypted
 * vectors are remembered and wiped when the operation's context is reset
 * or deleted; a scan keeps one scratch buffer and each element's distance
 * to the query instead of each element's plaintext.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/relscan.h"
#include "miscadmin.h"
#include "storage/bufpage.h"
#include "storage/lmgr.h"
#include "utils/memutils.h"

#include "crypto.h"
#include "ehnsw.h"
#include "kernels.h"
#include "keys.h"

static uint32 visit_stamp_counter = 0;

/* Reset callback of an EhnswWipeList: wipe its buffers. */
static void
ehnsw_wipe_list_wipe(void *arg)
{
	EhnswWipeList *list = (EhnswWipeList *) arg;
	ListCell   *lc;

	foreach(lc, list->buffers)
		crypto_wipe(lfirst(lc), list->bytes);
	list->buffers = NIL;
}

/* A list of plaintext buffers of one size, wiped when cxt goes away. */
EhnswWipeList *
ehnsw_wipe_list_create(MemoryContext cxt, Size bytes)
{
	EhnswWipeList *list = MemoryContextAllocZero(cxt, sizeof(EhnswWipeList));

	list->cxt = cxt;
	list->bytes = bytes;
	list->callback.func = ehnsw_wipe_list_wipe;
	list->callback.arg = list;
	MemoryContextRegisterResetCallback(cxt, &list->callback);
	return list;
}

/* Remember a buffer (allocated in the list's context) to wipe. */
void
ehnsw_wipe_list_add(EhnswWipeList *list, void *buffer)
{
	MemoryContext old = MemoryContextSwitchTo(list->cxt);

	list->buffers = lappend(list->buffers, buffer);
	MemoryContextSwitchTo(old);
}

/* (Re)create the per-operation structures inside opcxt. */
static void
ehnsw_state_prepare(EhnswState *state)
{
	ehnsw_elements_clear(state);
	state->plaintexts = ehnsw_wipe_list_create(state->opcxt,
											   state->dims * sizeof(float4));
	state->query = NULL;
	state->scratch = NULL;
}

/*
 * Make q (plaintext the caller keeps until the operation ends) the query
 * of a scan: from now on elements keep their distance to q, not their
 * plaintext (see EhnswState.query).  Before the first element is loaded.
 */
void
ehnsw_state_set_query(EhnswState *state, const float4 *q)
{
	state->query = q;
	state->scratch = MemoryContextAlloc(state->opcxt,
										state->dims * sizeof(float4));
	ehnsw_wipe_list_add(state->plaintexts, state->scratch);
}

/* Distance from q to a loaded element that has a value. */
double
ehnsw_element_distance(EhnswState *state, const float4 *q,
					   EhnswElement *element)
{
	Assert(element->x != NULL);
	if (state->query != NULL && q == state->query)
		return element->qdist;
	return ehnsw_distance(state, q, element->x);
}

/* Read the index parameters and set up an operation's state. */
void
ehnsw_state_init(EhnswState *state, Relation index, bool need_meta)
{
	memset(state, 0, sizeof(EhnswState));
	state->index = index;
	if (need_meta)
	{
		EhnswMetaPageData meta;
		bool		found;

		ehnsw_read_meta(index, &meta, NULL, 0, &found);
		state->dims = meta.dims;
		state->m = meta.m;
		state->ef_construction = meta.ef_construction;
		state->metric = meta.metric;
	}
	state->opcxt = AllocSetContextCreate(CurrentMemoryContext,
										 "ehnsw operation",
										 ALLOCSET_DEFAULT_SIZES);
	ehnsw_elements_init(state, CurrentMemoryContext);
	ehnsw_state_prepare(state);
}

/* Forget (and wipe) everything the last operation loaded. */
void
ehnsw_state_reset(EhnswState *state)
{
	MemoryContextReset(state->opcxt);
	ehnsw_state_prepare(state);
}

/* Initialise an empty page of the given kind. */
void
ehnsw_init_page(Page page, uint16 flags)
{
	EhnswPageOpaque opaque;

	PageInit(page, BLCKSZ, sizeof(EhnswPageOpaqueData));
	opaque = EhnswPageGetOpaque(page);
	opaque->flags = flags;
	opaque->page_id = EHNSW_PAGE_ID;
}

/*
 * Is this page one of ours with elements on it (true), or new, all zeros
 * (false)?  A crash leaves such pages behind when an insert extended the
 * index but its WAL never reached disk.  Anything else is corruption.
 */
bool
ehnsw_page_usable(Relation index, Buffer buf, BlockNumber blkno)
{
	if (PageIsNew(BufferGetPage(buf)))
		return false;
	ehnsw_check_page(index, buf, blkno);
	return true;
}

/* Refuse a page that is not one of ours (a new page included). */
void
ehnsw_check_page(Relation index, Buffer buf, BlockNumber blkno)
{
	Page		page = BufferGetPage(buf);

	if (PageIsNew(page) ||
		PageGetSpecialSize(page) != MAXALIGN(sizeof(EhnswPageOpaqueData)) ||
		EhnswPageGetOpaque(page)->page_id != EHNSW_PAGE_ID)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" contains an unexpected page at block %u",
						RelationGetRelationName(index), blkno),
				 errhint("Please REINDEX it.")));
}

/*
 * Copy the metapage's fixed part and, when entry is not NULL, the entry
 * point of tenant_id (*found says whether it has one).
 */
void
ehnsw_read_meta(Relation index, EhnswMetaPageData *meta,
				EhnswEntryPoint *entry, uint32 tenant_id, bool *found)
{
	Buffer		buf;
	Page		page;
	EhnswMetaPage metap;
	uint32		i;

	buf = ReadBuffer(index, EHNSW_METAPAGE_BLKNO);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	ehnsw_check_page(index, buf, EHNSW_METAPAGE_BLKNO);
	page = BufferGetPage(buf);
	metap = EhnswPageGetMeta(page);
	if (metap->magic != EHNSW_MAGIC || metap->version != EHNSW_VERSION)
	{
		UnlockReleaseBuffer(buf);
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has no valid ehnsw metapage",
						RelationGetRelationName(index)),
				 errhint("Please REINDEX it.")));
	}
	memcpy(meta, metap, offsetof(EhnswMetaPageData, tenants));
	*found = false;
	if (entry != NULL)
	{
		for (i = 0; i < metap->ntenants && i < EHNSW_MAX_TENANTS; i++)
		{
			if (metap->tenants[i].tenant_id == tenant_id)
			{
				*entry = metap->tenants[i];
				*found = true;
				break;
			}
		}
	}
	UnlockReleaseBuffer(buf);
}

/*
 * Make an element the entry point of its tenant's graph.  With
 * only_if_higher, an existing entry point of the same or a higher level is
 * kept.  Writes the metapage through generic WAL.
 */
void
ehnsw_set_entry_point(Relation index, uint32 tenant_id, ItemPointer tid,
					  int level, bool only_if_higher)
{
	Buffer		buf;
	GenericXLogState *xlog;
	Page		page;
	EhnswMetaPage metap;
	uint32		i;
	EhnswEntryPoint *ep = NULL;

	buf = ReadBuffer(index, EHNSW_METAPAGE_BLKNO);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	ehnsw_check_page(index, buf, EHNSW_METAPAGE_BLKNO);
	xlog = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(xlog, buf, 0);
	metap = EhnswPageGetMeta(page);
	for (i = 0; i < metap->ntenants; i++)
		if (metap->tenants[i].tenant_id == tenant_id)
			ep = &metap->tenants[i];
	if (ep == NULL)
	{
		if (!ItemPointerIsValid(tid))
		{
			GenericXLogAbort(xlog);
			UnlockReleaseBuffer(buf);
			return;
		}
		if (metap->ntenants >= EHNSW_MAX_TENANTS)
		{
			GenericXLogAbort(xlog);
			UnlockReleaseBuffer(buf);
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("index \"%s\" cannot hold more than %d tenants",
							RelationGetRelationName(index), (int) EHNSW_MAX_TENANTS)));
		}
		ep = &metap->tenants[metap->ntenants++];
		ep->tenant_id = tenant_id;
		((PageHeader) page)->pd_lower =
			((char *) &metap->tenants[metap->ntenants]) - (char *) page;
	}
	else if (only_if_higher && ep->level >= level)
	{
		GenericXLogAbort(xlog);
		UnlockReleaseBuffer(buf);
		return;
	}
	if (ItemPointerIsValid(tid))
	{
		ep->blkno = ItemPointerGetBlockNumber(tid);
		ep->offno = ItemPointerGetOffsetNumber(tid);
		ep->level = level;
	}
	else
	{
		/* No live element left: drop the tenant from the directory. */
		*ep = metap->tenants[metap->ntenants - 1];
		metap->ntenants--;
		((PageHeader) page)->pd_lower =
			((char *) &metap->tenants[metap->ntenants]) - (char *) page;
	}
	GenericXLogFinish(xlog);
	UnlockReleaseBuffer(buf);
}

/* Metric of an index, from its operator class's support function. */
int
ehnsw_meta_metric(Relation index)
{
	FmgrInfo   *proc = index_getprocinfo(index, 1, EHNSW_METRIC_PROC);

	return DatumGetInt32(FunctionCall1(proc, (Datum) 0));
}

/*
 * Decrypt a vector for index maintenance or search.  No claims are
 * checked here: callers check them where a user's value enters.
 */
float4 *
ehnsw_decrypt_vector(EhnswState *state, const struct varlena *env,
					 uint32 *tenant_id)
{
	EnvelopeHeader hdr;
	Size		len;
	float4	   *x;
	MemoryContext old;

	envelope_read_header(env, ENVELOPE_KIND_VECTOR, &hdr);
	if (hdr.count != state->dims)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %u dimensions, not %u", state->dims, hdr.count)));
	old = MemoryContextSwitchTo(state->opcxt);
	x = envelope_decrypt(env, ENVELOPE_KIND_VECTOR, &hdr, &len);
	ehnsw_wipe_list_add(state->plaintexts, x);
	MemoryContextSwitchTo(old);
	envelope_floats_from_le(x, hdr.count);
	if (tenant_id != NULL)
		*tenant_id = hdr.tenant_id;
	return x;
}

/* Distance used for ordering: squared for L2 (same order, less work). */
double
ehnsw_distance(EhnswState *state, const float4 *a, const float4 *b)
{
	switch (state->metric)
	{
		case EHNSW_METRIC_L2:
			return (double) kernel_l2_squared(a, b, state->dims);
		case EHNSW_METRIC_COSINE:
			return kernel_cosine_distance(a, b, state->dims);
		case EHNSW_METRIC_IP:
			return -(double) kernel_inner_product(a, b, state->dims);
	}
	elog(ERROR, "unknown ehnsw metric %d", state->metric);
	return 0.0;					/* keep compiler quiet */
}

/* Can this vector be placed in the graph?  Zero vectors have no cosine. */
bool
ehnsw_indexable(EhnswState *state, const float4 *x)
{
	if (state->metric == EHNSW_METRIC_COSINE)
	{
		double		norm = (double) kernel_inner_product(x, x, state->dims);

		return norm > 0 && !isnan(norm) && !isinf(norm);
	}
	return true;
}

/*
 * Decrypt an element's vector from env (an item copied out of its page):
 * the path of any element ehnsw_load_element cannot decrypt in place.
 */
static void
ehnsw_decrypt_element(EhnswState *state, EhnswElement *element,
					  const struct varlena *env)
{
	uint32		tenant_id;
	EnvelopeHeader hdr;

	/*
	 * Index entries do not roll back: a row written under a data key whose
	 * creation aborted (rotate_dek() or create_tenant() rolled back or lost
	 * in a crash) leaves an element under a key that never comes to exist.
	 * Never try to decrypt it: skip it, as a deleted one.  (Its heap row is
	 * dead; VACUUM removes it.  A live row whose key is lost still fails
	 * where it is read from the table, and vecphi.index_check() reports its
	 * element.)
	 */
	envelope_read_header(env, ENVELOPE_KIND_VECTOR, &hdr);
	if (!keys_dek_exists(hdr.tenant_id, hdr.dek_version))
	{
		element->keyless = true;
		return;
	}
	if (state->query != NULL)
	{
		/* A scan: decrypt into the scratch buffer, keep the distance. */
		MemoryContext old = MemoryContextSwitchTo(state->opcxt);
		Size		len;
		float4	   *x;

		if (hdr.count != state->dims)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("expected %u dimensions, not %u", state->dims, hdr.count)));
		x = envelope_decrypt(env, ENVELOPE_KIND_VECTOR, &hdr, &len);
		memcpy(state->scratch, x, len);
		crypto_wipe(x, len);
		pfree(x);
		MemoryContextSwitchTo(old);
		element->x = state->scratch;
		tenant_id = hdr.tenant_id;
		envelope_floats_from_le(element->x, hdr.count);
	}
	else
		element->x = ehnsw_decrypt_vector(state, env, &tenant_id);
	state->ndecrypted++;
	if (tenant_id != element->tenant_id)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has an element whose value belongs to another tenant",
						RelationGetRelationName(state->index)),
				 errhint("Please REINDEX it.")));
	if (state->query != NULL)
		element->qdist = ehnsw_distance(state, state->query, element->x);
	state->hint_tenant_id = hdr.tenant_id;
	state->hint_dek_version = hdr.dek_version;
}

/*
 * Load the element at tid (once per operation) and, with decrypt, its
 * plaintext.  Deleted elements have no plaintext.
 */
EhnswElement *
ehnsw_load_element(EhnswState *state, ItemPointer tid, bool decrypt)
{
	uint64		key = ehnsw_tid_key(tid);
	EhnswElementEntry *entry = ehnsw_element_entry(state, key);
	EhnswElement *element;
	Buffer		buf;
	Page		page;
	BlockNumber blkno = ItemPointerGetBlockNumber(tid);
	OffsetNumber offno = ItemPointerGetOffsetNumber(tid);
	ItemId		itemid;
	EhnswElementTuple etup;
	EhnswElementTuple copy;
	Size		size;
	DataKey    *dek = NULL;
	struct varlena *env;
	bool		want;

	element = entry->element;
	if (element != NULL &&
		(!decrypt || element->x != NULL || element->keyless ||
		 (element->deleted && !state->traverse_deleted) ||
		 element->nslots == 0))
		return element;

	/* Building in memory: every element is there, decrypted. */
	if (state->graph != NULL)
	{
		EhnswBuildEntry *be = hash_search(state->graph->elements, &key,
										  HASH_FIND, NULL);

		if (be == NULL)
			elog(ERROR, "ehnsw build graph has no element at (%u,%u)", blkno, offno);
		entry->element = be->item->element;
		return entry->element;
	}

	if (element != NULL)
	{
		/* Loaded before without plaintext: read the item again to decrypt. */
		ehnsw_element_forget(state, key);
		return ehnsw_load_element(state, tid, true);
	}

	/* Asking the kernel for the size costs a system call: only on need. */
	if (blkno >= state->nblocks)
		state->nblocks = RelationGetNumberOfBlocks(state->index);
	if (blkno == EHNSW_METAPAGE_BLKNO || blkno >= state->nblocks)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" links to block %u, which holds no elements",
						RelationGetRelationName(state->index), blkno),
				 errhint("Please REINDEX it.")));

	/*
	 * The key the last element was decrypted under, if it is still cached:
	 * looked up (invalidations taken in) before the page is locked, as no key
	 * lookup may run under a buffer lock.
	 */
	if (decrypt && state->hint_tenant_id != 0 &&
		(state->tenant_id == 0 || state->hint_tenant_id == state->tenant_id))
		dek = keys_cached_dek(state->hint_tenant_id, state->hint_dek_version);

	buf = ehnsw_read_element_buffer(state->index, blkno);
	page = BufferGetPage(buf);

	/*
	 * The page's header, the element's line pointer and the special space
	 * that ehnsw_page_usable() checks are three cache misses in a row: ask
	 * for all of them before taking the lock, so that they overlap.
	 */
#if defined(__GNUC__)
	__builtin_prefetch(page);
	if (offno <= MaxOffsetNumber)
		__builtin_prefetch(PageGetItemId(page, offno));
	__builtin_prefetch((char *) page + BLCKSZ - 1);
#endif
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	if (!ehnsw_page_usable(state->index, buf, blkno) ||
		offno < FirstOffsetNumber || offno > PageGetMaxOffsetNumber(page) ||
		!ItemIdIsNormal(itemid = PageGetItemId(page, offno)))
	{
		/*
		 * VACUUM removed it after repairing every live link to it; a search
		 * that copied a neighbour list before then can still name it.  Treat
		 * it as deleted.  (index_check reports a live link to a removed
		 * element.)
		 */
		UnlockReleaseBuffer(buf);
		element = MemoryContextAllocZero(state->opcxt, sizeof(EhnswElement));
		element->tid = *tid;
		element->deleted = true;
		entry->element = element;
		return element;
	}
	size = ItemIdGetLength(itemid);
	etup = (EhnswElementTuple) PageGetItem(page, itemid);
	if (size < offsetof(EhnswElementTupleData, neighbors) ||
		offsetof(EhnswElementTupleData, neighbors) +
		etup->nslots * sizeof(ItemPointerData) > size ||
		(!etup->deleted && etup->envelope_offset + VARHDRSZ > size))
	{
		UnlockReleaseBuffer(buf);
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has a damaged element at (%u,%u)",
						RelationGetRelationName(state->index), blkno, offno),
				 errhint("Please REINDEX it.")));
	}

	/* The element and its neighbour list in one chunk. */
	element = MemoryContextAllocZero(state->opcxt,
									 MAXALIGN(sizeof(EhnswElement)) +
									 etup->nslots * sizeof(ItemPointerData));
	element->tid = *tid;
	element->heaptid = etup->heaptid;
	element->tenant_id = etup->tenant_id;
	element->level = etup->level;
	element->deleted = etup->deleted != 0;
	element->nslots = etup->nslots;
	element->neighbors = (ItemPointerData *)
		((char *) element + MAXALIGN(sizeof(EhnswElement)));
	memcpy(element->neighbors, etup->neighbors,
		   etup->nslots * sizeof(ItemPointerData));
	entry->element = element;

	/*
	 * Never decrypt another tenant's vector for a search or an insert: it can
	 * only be reached through a link to a slot that VACUUM freed and an
	 * insert of that tenant reused; callers skip it.
	 */
	want = (state->tenant_id == 0 || element->tenant_id == state->tenant_id) &&
		(!element->deleted || state->traverse_deleted) && decrypt &&
		etup->envelope_offset + VARHDRSZ <= size &&
		VARSIZE(EhnswElementEnvelope(etup)) > VARHDRSZ;
	if (!want)
	{
		UnlockReleaseBuffer(buf);
		return element;
	}

	env = EhnswElementEnvelope(etup);
	if (dek != NULL)
	{
		EnvelopeHeader hdr;

		if (envelope_peek_header(env, size - etup->envelope_offset,
								 ENVELOPE_KIND_VECTOR, &hdr) &&
			hdr.tenant_id == dek->tenant_id &&
			hdr.dek_version == dek->dek_version &&
			hdr.tenant_id == element->tenant_id &&
			hdr.count == state->dims)
		{
			float4	   *x;
			bool		ok;

			/* In place, under the share lock: no copy of the item. */
			if (state->query != NULL)
				x = state->scratch;
			else
			{
				x = MemoryContextAlloc(state->opcxt, state->dims * sizeof(float4));
				ehnsw_wipe_list_add(state->plaintexts, x);
			}
			ok = envelope_decrypt_with(env, &hdr, dek, x);
			UnlockReleaseBuffer(buf);
			if (!ok)
				envelope_authentication_failed(ENVELOPE_KIND_VECTOR);
			envelope_floats_from_le(x, hdr.count);
			element->x = x;
			state->ndecrypted++;
			if (state->query != NULL)
				element->qdist = ehnsw_distance(state, state->query, x);
			return element;
		}
	}

	/* Any other key (or a damaged envelope): copy, then decrypt unlocked. */
	copy = MemoryContextAlloc(state->opcxt, size);
	memcpy(copy, etup, size);
	UnlockReleaseBuffer(buf);
	ehnsw_decrypt_element(state, element, EhnswElementEnvelope(copy));
	pfree(copy);
	return element;
}

/* Nearest first (pairing heaps keep the greatest on top). */
int
ehnsw_candidate_near_cmp(const pairingheap_node *a, const pairingheap_node *b,
						 void *arg)
{
	const EhnswCandidate *ca = pairingheap_const_container(EhnswCandidate, near_node, a);
	const EhnswCandidate *cb = pairingheap_const_container(EhnswCandidate, near_node, b);

	if (ca->distance < cb->distance)
		return 1;
	if (ca->distance > cb->distance)
		return -1;
	return 0;
}

/* Farthest first. */
static int
candidate_far_cmp(const pairingheap_node *a, const pairingheap_node *b,
				  void *arg)
{
	const EhnswCandidate *ca = pairingheap_const_container(EhnswCandidate, far_node, a);
	const EhnswCandidate *cb = pairingheap_const_container(EhnswCandidate, far_node, b);

	if (ca->distance > cb->distance)
		return 1;
	if (ca->distance < cb->distance)
		return -1;
	return 0;
}

/* A candidate for an element, with its distance to q. */
EhnswCandidate *
ehnsw_make_candidate(EhnswState *state, EhnswElement *element, const float4 *q)
{
	EhnswCandidate *c = MemoryContextAllocZero(state->opcxt, sizeof(EhnswCandidate));

	c->element = element;
	c->distance = element->x != NULL ? ehnsw_element_distance(state, q, element) : DBL_MAX;
	return c;
}

/*
 * Where a search of a tenant's graph starts: its entry point epel (on level
 * eplevel) as the one candidate, or, when epel's data key does not exist
 * (see ehnsw_load_element), the elements of the tenant that can be
 * decrypted found by a walk from epel through such elements, on the highest
 * level that has any.  Sets *level to the level of the candidates; NIL when
 * nothing can be reached (the caller treats the graph as empty).
 */
#define EHNSW_KEYLESS_MAX_VISITS	1024

List *
ehnsw_entry_candidates(EhnswState *state, EhnswElement *epel, int eplevel,
					   const float4 *q, int *level)
{
	List	   *walk;
	List	   *found = NIL;
	HTAB	   *seen;
	HASHCTL		ctl;
	uint64		key;
	int			visits = 0;
	int			l;

	*level = eplevel;
	if (epel->x != NULL)
		return list_make1(ehnsw_make_candidate(state, epel, q));
	if (!epel->keyless)
		return NIL;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(uint64);
	ctl.hcxt = CurrentMemoryContext;
	seen = hash_create("ehnsw keyless walk", 64, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	key = ehnsw_tid_key(&epel->tid);
	hash_search(seen, &key, HASH_ENTER, NULL);
	walk = list_make1(epel);
	for (l = Min(eplevel, epel->level); l >= 0; l--)
	{
		int			w;

		/* The walk grows as it goes: index it, do not iterate it. */
		for (w = 0; w < list_length(walk) && visits < EHNSW_KEYLESS_MAX_VISITS; w++)
		{
			EhnswElement *from = list_nth(walk, w);
			int			start = EhnswLevelOffset(state->m, l);
			int			end;
			int			i;

			if (from->level < l)
				continue;
			end = Min(start + EhnswLevelSlots(state->m, l), from->nslots);
			for (i = start; i < end; i++)
			{
				ItemPointer ntid = &from->neighbors[i];
				EhnswElement *ne;
				bool		dup;

				if (!ItemPointerIsValid(ntid))
					break;
				key = ehnsw_tid_key(ntid);
				hash_search(seen, &key, HASH_ENTER, &dup);
				if (dup)
					continue;
				CHECK_FOR_INTERRUPTS();
				visits++;
				ne = ehnsw_load_element(state, ntid, true);
				if (ne->tenant_id != epel->tenant_id)
					continue;
				if (ne->x != NULL && !ne->deleted)
					found = lappend(found, ehnsw_make_candidate(state, ne, q));
				else if (ne->keyless)
					walk = lappend(walk, ne);
			}
		}
		if (found != NIL)
		{
			*level = l;
			return found;
		}
	}
	return NIL;
}

/* list_sort comparator: nearest first. */
int
ehnsw_candidate_cmp(const ListCell *a, const ListCell *b)
{
	const EhnswCandidate *ca = lfirst(a);
	const EhnswCandidate *cb = lfirst(b);

	if (ca->distance < cb->distance)
		return -1;
	if (ca->distance > cb->distance)
		return 1;
	return 0;
}

/*
 * HNSW's SEARCH-LAYER: the ef elements nearest to q found by a greedy
 * best-first walk of one level of one tenant's graph from the entry
 * candidates.  Returns candidates, nearest first.  Elements of another
 * tenant are skipped undecrypted (see ehnsw_load_element).
 *
 * With rest, what a scan needs to go on past the first ef results is
 * handed back: the candidates not yet expanded, and every element found
 * but not among the best ef (pushed out, or too far when found).  See
 * ehnswscan.c.
 */
List *
ehnsw_search_layer(EhnswState *state, const float4 *q, List *entries,
				   int ef, int level, uint32 tenant_id,
				   EhnswSearchRest *rest)
{
	pairingheap *near = pairingheap_allocate(ehnsw_candidate_near_cmp, NULL);
	pairingheap *far = pairingheap_allocate(candidate_far_cmp, NULL);
	int			wlen = 0;
	uint32		stamp;
	ListCell   *lc;
	List	   *result = NIL;

	/* A scan that goes on keeps what it visited before. */
	if (rest != NULL && rest->visit_stamp != 0)
		stamp = rest->visit_stamp;
	else
	{
		stamp = ++visit_stamp_counter;
		if (stamp == 0)
			stamp = ++visit_stamp_counter;
	}
	if (rest != NULL)
		rest->discarded = NIL;

	foreach(lc, entries)
	{
		EhnswCandidate *e = lfirst(lc);
		EhnswCandidate *c = palloc0(sizeof(EhnswCandidate));

		c->element = e->element;
		c->distance = e->distance;
		ehnsw_visit(state, &e->element->tid, stamp);
		pairingheap_add(near, &c->near_node);
		if (e->element->x != NULL && !e->element->returned)
		{
			pairingheap_add(far, &c->far_node);
			wlen++;
		}
	}

	while (!pairingheap_is_empty(near))
	{
		EhnswCandidate *c = pairingheap_container(EhnswCandidate, near_node,
												  pairingheap_remove_first(near));
		EhnswElement *ce = c->element;
		int			start;
		int			end;
		int			i;

		if (wlen > 0 &&
			c->distance > pairingheap_container(EhnswCandidate, far_node,
												pairingheap_first(far))->distance)
			break;
		if (ce->level < level)
			continue;

		start = EhnswLevelOffset(state->m, level);
		end = Min(start + EhnswLevelSlots(state->m, level), ce->nslots);
		for (i = start; i < end; i++)
		{
			ItemPointer ntid = &ce->neighbors[i];
			EhnswElement *ne;
			double		d;

			if (!ItemPointerIsValid(ntid))
				break;
			CHECK_FOR_INTERRUPTS();
			if (!ehnsw_visit(state, ntid, stamp))
				continue;
			ne = ehnsw_load_element(state, ntid, true);
			if (ne->keyless && ne->tenant_id == tenant_id && ne->level >= level)
			{
				/*
				 * No vector (its data key does not exist): a waypoint at the
				 * distance of the element that links to it, never a result,
				 * so the elements it linked stay reachable until VACUUM
				 * removes it and repairs their links.
				 */
				EhnswCandidate *kc = palloc0(sizeof(EhnswCandidate));

				kc->element = ne;
				kc->distance = c->distance;
				pairingheap_add(near, &kc->near_node);
				continue;
			}
			if (ne->x == NULL || ne->tenant_id != tenant_id)
				continue;		/* deleted, or a freed slot reused */
			d = ehnsw_element_distance(state, q, ne);
			if (ne->deleted)
			{
				/* A waypoint for VACUUM's repair, never a result. */
				EhnswCandidate *wc = palloc0(sizeof(EhnswCandidate));

				wc->element = ne;
				wc->distance = d;
				pairingheap_add(near, &wc->near_node);
				continue;
			}
			if (wlen >= ef &&
				d >= pairingheap_container(EhnswCandidate, far_node,
										   pairingheap_first(far))->distance)
			{
				/* Too far for now; a scan that goes on may want it. */
				if (rest != NULL)
				{
					EhnswCandidate *dc = palloc0(sizeof(EhnswCandidate));

					dc->element = ne;
					dc->distance = d;
					rest->discarded = lappend(rest->discarded, dc);
				}
			}
			else
			{
				EhnswCandidate *nc = MemoryContextAllocZero(state->opcxt,
															sizeof(EhnswCandidate));

				nc->element = ne;
				nc->distance = d;
				pairingheap_add(near, &nc->near_node);
				pairingheap_add(far, &nc->far_node);
				wlen++;
				if (wlen > ef)
				{
					pairingheap_node *out = pairingheap_remove_first(far);

					if (rest != NULL)
						rest->discarded = lappend(rest->discarded,
												  pairingheap_container(EhnswCandidate, far_node, out));
					wlen--;
				}
			}
		}
	}

	if (rest != NULL)
	{
		rest->frontier = near;
		rest->visit_stamp = stamp;
	}
	while (!pairingheap_is_empty(far))
		result = lappend(result,
						 pairingheap_container(EhnswCandidate, far_node,
											   pairingheap_remove_first(far)));
	list_sort(result, ehnsw_candidate_cmp);
	return result;
}
