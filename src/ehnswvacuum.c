/*-------------------------------------------------------------------------
 *
 * ehnswvacuum.c
 *	  VACUUM of an ehnsw index.
 *
 * An element whose heap row is dead is marked deleted and its envelope
 * bytes are zeroed on the page (WAL-logged, so standbys zero them too):
 * after a CHECKPOINT no byte of a deleted value's ciphertext remains in
 * the index file.  Searches skip deleted elements.  A tenant whose entry
 * point was deleted gets its highest remaining live element as the new
 * one, or leaves the directory when it has none.
 *
 * Not yet done (planned): repairing the neighbour lists that pointed at
 * deleted elements, and reusing their space.
 *
 * Vacuum takes the writers' lock (see ehnswinsert.c), so it never races an
 * insert; scans keep running and see each element before or after.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "ehnsw.h"

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
	ehnsw_check_page(index, buf, entry->blkno);
	page = BufferGetPage(buf);
	if (entry->offno >= FirstOffsetNumber &&
		entry->offno <= PageGetMaxOffsetNumber(page))
	{
		itemid = PageGetItemId(page, entry->offno);
		if (ItemIdIsNormal(itemid))
			deleted = ((EhnswElementTuple) PageGetItem(page, itemid))->deleted != 0;
	}
	UnlockReleaseBuffer(buf);
	return deleted;
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

	LockPage(index, EHNSW_METAPAGE_BLKNO, ExclusiveLock);
	nblocks = RelationGetNumberOfBlocks(index);
	for (blkno = EHNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buf;
		Page		page;
		GenericXLogState *xlog = NULL;
		OffsetNumber off;
		OffsetNumber maxoff;

		vacuum_delay_point();
		buf = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL,
								 info->strategy);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		ehnsw_check_page(index, buf, blkno);
		page = BufferGetPage(buf);
		maxoff = PageGetMaxOffsetNumber(page);
		for (off = FirstOffsetNumber; off <= maxoff; off++)
		{
			ItemId		itemid = PageGetItemId(page, off);
			EhnswElementTuple etup;

			if (!ItemIdIsNormal(itemid))
				continue;
			etup = (EhnswElementTuple) PageGetItem(page, itemid);
			if (!etup->deleted && callback(&etup->heaptid, callback_state))
			{
				if (xlog == NULL)
				{
					xlog = GenericXLogStart(index);
					page = GenericXLogRegisterBuffer(xlog, buf, 0);
					itemid = PageGetItemId(page, off);
					etup = (EhnswElementTuple) PageGetItem(page, itemid);
				}
				etup->deleted = 1;
				ItemPointerSetInvalid(&etup->heaptid);
				memset((char *) etup + etup->envelope_offset, 0,
					   ItemIdGetLength(itemid) - etup->envelope_offset);
				stats->tuples_removed++;
			}
			else if (!etup->deleted)
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
		if (xlog != NULL)
			GenericXLogFinish(xlog);
		UnlockReleaseBuffer(buf);
	}

	/* Give tenants whose entry point is gone a live one. */
	ehnsw_read_meta(index, &meta, NULL, 0, &found);
	mbuf = ReadBuffer(index, EHNSW_METAPAGE_BLKNO);
	LockBuffer(mbuf, BUFFER_LOCK_SHARE);
	entries = palloc(meta.ntenants * sizeof(EhnswEntryPoint));
	memcpy(entries, EhnswPageGetMeta(BufferGetPage(mbuf))->tenants,
		   meta.ntenants * sizeof(EhnswEntryPoint));
	UnlockReleaseBuffer(mbuf);
	for (i = 0; i < meta.ntenants; i++)
	{
		TenantBest *b;
		ItemPointerData tid;

		if (!entry_point_deleted(index, &entries[i]))
			continue;
		b = hash_search(best, &entries[i].tenant_id, HASH_FIND, NULL);
		if (b == NULL)
			ItemPointerSetInvalid(&tid);
		else
			tid = b->tid;
		ehnsw_set_entry_point(index, entries[i].tenant_id, &tid,
							  b ? b->level : 0, false);
	}
	UnlockPage(index, EHNSW_METAPAGE_BLKNO, ExclusiveLock);
	stats->num_pages = nblocks;
	return stats;
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
	return stats;
}
