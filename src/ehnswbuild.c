/*-------------------------------------------------------------------------
 *
 * ehnswbuild.c
 *	  Building an ehnsw index from the rows of its table.
 *
 * This version builds by inserting each row through the same code path as
 * a single-row INSERT (ehnswinsert.c), so the graph and the WAL are exactly
 * what concurrent inserts would produce.  It is simple and correct but
 * slower than building the graph in memory first, which is planned.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tableam.h"
#include "catalog/index.h"
#include "commands/progress.h"
#include "miscadmin.h"
#include "storage/smgr.h"
#include "utils/backend_progress.h"
#include "utils/memutils.h"

#include "ehnsw.h"

typedef struct EhnswBuildState
{
	EhnswState	state;
	double		heap_tuples;
	double		index_tuples;
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

/* table_index_build_scan callback: insert one row. */
static void
build_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
			   bool tupleIsAlive, void *arg)
{
	EhnswBuildState *bs = (EhnswBuildState *) arg;
	MemoryContext old;

	bs->heap_tuples++;
	if (isnull[0])
		return;
	old = MemoryContextSwitchTo(bs->state.opcxt);
	if (ehnsw_insert_value(&bs->state, values[0], tid))
		bs->index_tuples++;
	MemoryContextSwitchTo(old);
	ehnsw_state_reset(&bs->state);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE,
								 (int64) bs->index_tuples);
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
	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, EHNSW_PHASE_LOAD);
	table_index_build_scan(heap, index, indexInfo, true, true,
						   build_callback, &bs, NULL);
	MemoryContextDelete(bs.state.opcxt);

	result = palloc(sizeof(IndexBuildResult));
	result->heap_tuples = bs.heap_tuples;
	result->index_tuples = bs.index_tuples;
	return result;
}

/* An unlogged index's init fork: just the metapage. */
void
ehnswbuildempty(Relation index)
{
	int			m;
	int			ef_construction;

	index_options(index, &m, &ef_construction);
	create_metapage(index, INIT_FORKNUM, index_dims(index), m, ef_construction,
					ehnsw_meta_metric(index));
}
