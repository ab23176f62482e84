/*-------------------------------------------------------------------------
 *
 * ehnswbuild.c
 *	  Building an ehnsw index from the rows of its table.
 *
 * Rows go through the same HNSW insertion as a single-row INSERT
 * (ehnswinsert.c), but into a graph held in memory: elements are decrypted
 * once, neighbour lists change in place, and nothing is WAL-logged item by
 * item.  Each element gets its final TID as it is added (items are packed
 * into pages in order, exactly as PageAddItem will place them), so when
 * the graph is complete the pages are written as they are and WAL-logged
 * as full page images in one go.
 *
 * If the graph outgrows maintenance_work_mem, it is written out at that
 * point and the remaining rows are inserted on disk, one by one, which is
 * correct but much slower (a NOTICE says so).
 *
 * Decrypted vectors of the graph are wiped when it is written out.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tableam.h"
#include "catalog/index.h"
#include "commands/progress.h"
#include "miscadmin.h"
#include "storage/bufpage.h"
#include "storage/smgr.h"
#include "utils/backend_progress.h"
#include "access/xloginsert.h"
#include "utils/memutils.h"

#include "crypto.h"
#include "ehnsw.h"

typedef struct EhnswBuildState
{
	EhnswState	state;
	double		heap_tuples;
	double		index_tuples;
	double		tuples_estimate;	/* the table's rows, estimated */
} EhnswBuildState;

/* Lay out an empty metapage. */
static void
fill_metapage(Page page, uint32 dims, int m, int ef_construction, int metric)
{
	EhnswMetaPage metap;

	ehnsw_init_page(page, EHNSW_PAGE_META);
	metap = EhnswPageGetMeta(page);
	memset(metap, 0, offsetof(EhnswMetaPageData, tenants));
	metap->magic = EHNSW_MAGIC;
	metap->version = EHNSW_VERSION;
	metap->dims = dims;
	metap->m = m;
	metap->ef_construction = ef_construction;
	metap->metric = metric;
	metap->insert_blkno = InvalidBlockNumber;
	metap->ntenants = 0;
	((PageHeader) page)->pd_lower =
		((char *) metap->tenants) - (char *) page;
}

/* Options of an index, with the defaults for the ones not given. */
static void
index_options(Relation index, int *m, int *ef_construction)
{
	EhnswOptions *opts = (EhnswOptions *) index->rd_options;

	*m = opts ? opts->m : EHNSW_DEFAULT_M;
	*ef_construction = opts ? opts->ef_construction : EHNSW_DEFAULT_EF_CONSTRUCTION;
}

/* Dimensions of the indexed column, which must be declared evector(n). */
static uint32
index_dims(Relation index)
{
	int32		typmod = TupleDescAttr(RelationGetDescr(index), 0)->atttypmod;

	if (typmod < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column does not have dimensions"),
				 errhint("Declare the column as evector(n) to index it with ehnsw.")));
	return (uint32) typmod;
}

/* Write the metapage of a new index through generic WAL. */
static void
create_metapage(Relation index, ForkNumber fork, uint32 dims, int m,
				int ef_construction, int metric)
{
	Buffer		buf;
	GenericXLogState *xlog;
	Page		page;

	buf = ReadBufferExtended(index, fork, P_NEW, RBM_NORMAL, NULL);
	Assert(BufferGetBlockNumber(buf) == EHNSW_METAPAGE_BLKNO);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	xlog = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(xlog, buf, GENERIC_XLOG_FULL_IMAGE);
	fill_metapage(page, dims, m, ef_construction, metric);
	GenericXLogFinish(xlog);
	UnlockReleaseBuffer(buf);
}

/* A new, empty in-memory graph bounded by maintenance_work_mem. */
static EhnswBuildGraph *
graph_create(uint32 dims)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "ehnsw build graph",
											  ALLOCSET_DEFAULT_SIZES);
	EhnswBuildGraph *graph = MemoryContextAllocZero(cxt, sizeof(EhnswBuildGraph));
	HASHCTL		ctl;

	graph->cxt = cxt;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(EhnswBuildEntry);
	ctl.hcxt = cxt;
	graph->elements = hash_create("ehnsw build graph", 1024, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	graph->tenants = MemoryContextAllocZero(cxt, EHNSW_MAX_TENANTS * sizeof(EhnswEntryPoint));
	graph->plaintexts = ehnsw_wipe_list_create(cxt, dims * sizeof(float4));
	graph->blkno = InvalidBlockNumber;
	graph->memory_limit = (Size) maintenance_work_mem * 1024;
	return graph;
}

/* Append one finished page to the index. */
static void
write_page(Relation index, BlockNumber blkno, Page page)
{
	Buffer		buf = ReadBufferExtended(index, MAIN_FORKNUM, P_NEW, RBM_NORMAL, NULL);

	if (BufferGetBlockNumber(buf) != blkno)
		elog(ERROR, "ehnsw build expected to extend index \"%s\" to block %u, got %u",
			 RelationGetRelationName(index), blkno, BufferGetBlockNumber(buf));
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	memcpy(BufferGetPage(buf), page, BLCKSZ);
	MarkBufferDirty(buf);
	UnlockReleaseBuffer(buf);
}

/* The build's phase and its tuples in pg_stat_progress_create_index. */
static void
progress_report(int64 phase, int64 total, int64 done)
{
	static const int index[] = {
		PROGRESS_CREATEIDX_SUBPHASE,
		PROGRESS_CREATEIDX_TUPLES_TOTAL,
		PROGRESS_CREATEIDX_TUPLES_DONE
	};
	int64		val[3];

	val[0] = phase;
	val[1] = total;
	val[2] = done;
	pgstat_progress_update_multi_param(3, index, val);
}

/*
 * Write an in-memory graph out: its pages, then the metapage's tenant
 * directory, then WAL for all of it.  Wipes the decrypted vectors.
 */
static void
graph_flush(EhnswState *state)
{
	EhnswBuildGraph *graph = state->graph;
	Relation	index = state->index;
	Page		page = palloc(BLCKSZ);
	BlockNumber current = InvalidBlockNumber;
	ListCell   *lc;
	Buffer		mbuf;
	GenericXLogState *xlog;
	Page		mpage;
	EhnswMetaPage metap;

	progress_report(EHNSW_PHASE_WRITE, list_length(graph->items), 0);
	foreach(lc, graph->items)
	{
		EhnswBuildItem *item = lfirst(lc);
		BlockNumber blkno = ItemPointerGetBlockNumber(&item->element->tid);
		OffsetNumber offno;

		pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE,
									 foreach_current_index(lc) + 1);

		if (blkno != current)
		{
			if (current != InvalidBlockNumber)
				write_page(index, current, page);
			ehnsw_init_page(page, EHNSW_PAGE_ELEMENTS);
			current = blkno;
		}
		offno = PageAddItem(page, (Item) item->etup, item->size,
							InvalidOffsetNumber, false, false);
		if (offno != ItemPointerGetOffsetNumber(&item->element->tid))
			elog(ERROR, "ehnsw build placed an element at (%u,%u) instead of (%u,%u)",
				 blkno, offno, blkno, ItemPointerGetOffsetNumber(&item->element->tid));
	}
	if (current != InvalidBlockNumber)
		write_page(index, current, page);

	mbuf = ReadBuffer(index, EHNSW_METAPAGE_BLKNO);
	LockBuffer(mbuf, BUFFER_LOCK_EXCLUSIVE);
	xlog = GenericXLogStart(index);
	mpage = GenericXLogRegisterBuffer(xlog, mbuf, GENERIC_XLOG_FULL_IMAGE);
	metap = EhnswPageGetMeta(mpage);
	metap->ntenants = graph->ntenants;
	memcpy(metap->tenants, graph->tenants, graph->ntenants * sizeof(EhnswEntryPoint));
	metap->insert_blkno = current;
	((PageHeader) mpage)->pd_lower =
		((char *) &metap->tenants[metap->ntenants]) - (char *) mpage;
	GenericXLogFinish(xlog);
	UnlockReleaseBuffer(mbuf);

	if (RelationNeedsWAL(index) && current != InvalidBlockNumber)
		log_newpage_range(index, MAIN_FORKNUM, EHNSW_METAPAGE_BLKNO + 1,
						  current + 1, true);

	/* Deleting the context wipes the decrypted vectors first. */
	MemoryContextDelete(graph->cxt);
	state->graph = NULL;
	pfree(page);
}

/*
 * pg_stat_progress_create_index in the load phase: tuples_total is the
 * table's rows as the planner estimates them (raised when more turn up),
 * tuples_done the rows taken in so far; blocks_total and blocks_done are
 * the table scan's, reported by table_index_build_scan().
 */
static void
progress_load_phase(EhnswBuildState *bs)
{
	progress_report(EHNSW_PHASE_LOAD, (int64) bs->tuples_estimate,
					(int64) bs->heap_tuples);
}

/* table_index_build_scan callback: insert one row. */
static void
build_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
			   bool tupleIsAlive, void *arg)
{
	EhnswBuildState *bs = (EhnswBuildState *) arg;
	MemoryContext old;

	bs->heap_tuples++;
	if (bs->heap_tuples > bs->tuples_estimate)
	{
		/* More rows than estimated: the total follows what is known. */
		bs->tuples_estimate = bs->heap_tuples;
		pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL,
									 (int64) bs->tuples_estimate);
	}
	if (!isnull[0])
	{
		old = MemoryContextSwitchTo(bs->state.opcxt);
		if (ehnsw_insert_value(&bs->state, values[0], tid))
			bs->index_tuples++;
		MemoryContextSwitchTo(old);
		ehnsw_state_reset(&bs->state);
	}
	/* Rows of the table taken in so far, NULLs included. */
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE,
								 (int64) bs->heap_tuples);
	if (isnull[0])
		return;

	if (bs->state.graph != NULL &&
		bs->state.graph->memory_used > bs->state.graph->memory_limit)
	{
		ereport(NOTICE,
				(errmsg("ehnsw graph no longer fits into maintenance_work_mem after %.0f rows",
						bs->index_tuples),
				 errdetail("The rest of the rows are inserted on disk, which takes much longer."),
				 errhint("Increase maintenance_work_mem to build faster.")));
		graph_flush(&bs->state);
		progress_load_phase(bs);
	}
}

IndexBuildResult *
ehnswbuild(Relation heap, Relation index, IndexInfo *indexInfo)
{
	EhnswBuildState bs;
	IndexBuildResult *result;
	int			m;
	int			ef_construction;

	if (RelationGetNumberOfBlocks(index) != 0)
		elog(ERROR, "index \"%s\" already contains data",
			 RelationGetRelationName(index));
	index_options(index, &m, &ef_construction);
	if (ef_construction < 2 * m)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ef_construction must be greater than or equal to 2 * m")));

	ehnsw_check_dims(index_dims(index), m);
	create_metapage(index, MAIN_FORKNUM, index_dims(index), m, ef_construction,
					ehnsw_meta_metric(index));

	memset(&bs, 0, sizeof(bs));
	ehnsw_state_init(&bs.state, index, true);
	bs.state.graph = graph_create(bs.state.dims);
	{
		BlockNumber pages;
		double		tuples;
		double		allvisfrac;

		table_relation_estimate_size(heap, NULL, &pages, &tuples, &allvisfrac);
		bs.tuples_estimate = Max(tuples, 0);
	}
	progress_load_phase(&bs);
	table_index_build_scan(heap, index, indexInfo, true, true,
						   build_callback, &bs, NULL);
	/* Every row is in: the total is exact now. */
	bs.tuples_estimate = bs.heap_tuples;
	progress_load_phase(&bs);
	if (bs.state.graph != NULL)
		graph_flush(&bs.state);
	MemoryContextDelete(bs.state.opcxt);

	result = palloc(sizeof(IndexBuildResult));
	result->heap_tuples = bs.heap_tuples;
	result->index_tuples = bs.index_tuples;
	return result;
}

/*
 * An unlogged index's init fork: just the metapage.  Generic WAL skips
 * unlogged relations, but the init fork must survive a crash (it is what
 * the index is reset to), so write it directly, WAL-log it, and sync it,
 * as PostgreSQL's own index AMs do.
 */
void
ehnswbuildempty(Relation index)
{
	int			m;
	int			ef_construction;
	PGAlignedBlock block;
	Page		page = (Page) block.data;

	index_options(index, &m, &ef_construction);
	fill_metapage(page, index_dims(index), m, ef_construction,
				  ehnsw_meta_metric(index));
	PageSetChecksumInplace(page, EHNSW_METAPAGE_BLKNO);
	smgrwrite(RelationGetSmgr(index), INIT_FORKNUM, EHNSW_METAPAGE_BLKNO,
			  (char *) page, true);
	log_newpage(&(RelationGetSmgr(index))->smgr_rnode.node, INIT_FORKNUM,
				EHNSW_METAPAGE_BLKNO, page, true);
	smgrimmedsync(RelationGetSmgr(index), INIT_FORKNUM);
}
