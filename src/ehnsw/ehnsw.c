/*-------------------------------------------------------------------------
 *
 * ehnsw.c
 *	  The ehnsw index access method: handler, options, cost estimation,
 *	  operator class validation and the metric support functions.  The
 *	  handler names every phase's entry point (ehnswbuild.c, ehnswinsert.c,
 *	  ehnswscan.c, ehnswvacuum.c); those call down to ehnswutils.c and
 *	  ehnswsettings.c, never back here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/amvalidate.h"
#include "access/htup_details.h"
#include "catalog/pg_opclass.h"
#include "commands/progress.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "parser/parsetree.h"
#include "utils/lsyscache.h"
#include "utils/selfuncs.h"
#include "utils/syscache.h"

#include "ehnsw.h"


static relopt_kind ehnsw_relopt_kind;

/*
 * Relative cost of one element visited by a search, in units of
 * cpu_operator_cost: reading the item, decrypting the vector with
 * AES-256-GCM and computing a distance.  Measured to be roughly a hundred
 * simple operator calls for a few hundred dimensions.
 */
#define EHNSW_VISIT_COST_FACTOR 100.0

/* Options and settings; called once from _PG_init. */
void
ehnsw_init(void)
{
	ehnsw_relopt_kind = add_reloption_kind();
	add_int_reloption(ehnsw_relopt_kind, "m",
					  "Maximum number of neighbours of an element on each level above 0 (twice that on level 0)",
					  EHNSW_DEFAULT_M, EHNSW_MIN_M, EHNSW_MAX_M,
					  AccessExclusiveLock);
	add_int_reloption(ehnsw_relopt_kind, "ef_construction",
					  "Size of the candidate list while building the graph",
					  EHNSW_DEFAULT_EF_CONSTRUCTION, EHNSW_MIN_EF_CONSTRUCTION,
					  EHNSW_MAX_EF_CONSTRUCTION, AccessExclusiveLock);

	ehnsw_settings_init();
}

static bytea *
ehnswoptions(Datum reloptions, bool validate)
{
	static const relopt_parse_elt tab[] = {
		{"m", RELOPT_TYPE_INT, offsetof(EhnswOptions, m)},
		{"ef_construction", RELOPT_TYPE_INT, offsetof(EhnswOptions, ef_construction)},
	};

	return (bytea *) build_reloptions(reloptions, validate, ehnsw_relopt_kind,
									  sizeof(EhnswOptions), tab, lengthof(tab));
}

/*
 * The index is only useful for ORDER BY ... LIMIT: without an ordering
 * operator it is never chosen.  With one, a search visits about
 * ef_search * m elements (measured: about 600 for ef_search 40, m 16),
 * each read, decrypted and compared, all before the first row comes out.
 * The pages those visits touch are counted at seq_page_cost rather than
 * random_page_cost: a graph's upper levels and a tenant's neighbourhood
 * are read again by every search and stay in shared buffers.
 */
static void
ehnswcostestimate(PlannerInfo *root, IndexPath *path, double loop_count,
				  Cost *indexStartupCost, Cost *indexTotalCost,
				  Selectivity *indexSelectivity, double *indexCorrelation,
				  double *indexPages)
{
	GenericCosts costs;
	double		ntuples;
	double		npages;
	double		visited;
	double		pages_fetched;
	Selectivity filter_selectivity;
	List	   *filters = NIL;
	ListCell   *lc;
	int			nsecurity;
	int			m = EHNSW_DEFAULT_M;
	Relation	index;

	if (path->indexorderbys == NIL)
	{
		*indexStartupCost = DBL_MAX;
		*indexTotalCost = DBL_MAX;
		*indexSelectivity = 0;
		*indexCorrelation = 0;
		*indexPages = 0;
		return;
	}

	index = index_open(path->indexinfo->indexoid, NoLock);
	if (index->rd_options)
		m = ((EhnswOptions *) index->rd_options)->m;
	index_close(index, NoLock);

	memset(&costs, 0, sizeof(costs));
	genericcostestimate(root, path, loop_count, &costs);

	ntuples = Max(path->indexinfo->tuples, 1.0);
	npages = Max((double) path->indexinfo->pages, 1.0);

	/*
	 * A filter on the table (a WHERE clause, row-level security) that keeps a
	 * fraction of the rows makes the scan go on until LIMIT rows pass it:
	 * about 1 / fraction times the work, within vecphi.scan_budget.
	 */
	nsecurity = list_length(planner_rt_fetch(path->indexinfo->rel->relid,
											 root)->securityQuals);
	foreach(lc, path->indexinfo->rel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		/*
		 * Row-level security quals (levels below the number of security qual
		 * lists; the query's own quals come after them) are left out:
		 * vecphi's policies tie rows to the claimant's tenant, and a scan
		 * walks that tenant's graph only, so the tenant test discards nothing
		 * the index returns.
		 */
		if (rinfo->security_level >= nsecurity)
			filters = lappend(filters, rinfo);
	}
	filter_selectivity = clauselist_selectivity(root, filters,
												path->indexinfo->rel->relid,
												JOIN_INNER, NULL);
	filter_selectivity = Max(filter_selectivity, 1.0 / ntuples);
	visited = (double) ehnsw_ef_search * m;
	visited = Min(visited / filter_selectivity, visited + ehnsw_scan_budget);
	visited = Min(ntuples, visited);
	pages_fetched = npages * (1.0 - exp(-visited / npages));

	*indexStartupCost = visited * (cpu_index_tuple_cost +
								   cpu_operator_cost * EHNSW_VISIT_COST_FACTOR) +
		pages_fetched * seq_page_cost;
	*indexTotalCost = *indexStartupCost;
	*indexSelectivity = costs.indexSelectivity;
	*indexCorrelation = 0;
	*indexPages = pages_fetched;
}

/* Check that an operator class has its ordering operator and metric. */
static bool
ehnswvalidate(Oid opclassoid)
{
	HeapTuple	tup;
	Form_pg_opclass form;
	bool		ok;

	tup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclassoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for operator class %u", opclassoid);
	form = (Form_pg_opclass) GETSTRUCT(tup);
	ok = OidIsValid(get_opfamily_proc(form->opcfamily, form->opcintype,
									  form->opcintype, EHNSW_METRIC_PROC)) &&
		OidIsValid(get_opfamily_member(form->opcfamily, form->opcintype,
									   form->opcintype, 1));
	if (!ok)
		ereport(INFO,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("ehnsw operator class \"%s\" needs ordering operator 1 and support function 1",
						NameStr(form->opcname))));
	ReleaseSysCache(tup);
	return ok;
}

static char *
ehnswbuildphasename(int64 phasenum)
{
	switch (phasenum)
	{
		case PROGRESS_CREATEIDX_SUBPHASE_INITIALIZE:
			return "initializing";
		case EHNSW_PHASE_LOAD:
			return "inserting rows into the graph";
		case EHNSW_PHASE_WRITE:
			return "writing the graph to the index";
		default:
			return NULL;
	}
}

PG_FUNCTION_INFO_V1(ehnsw_handler);
Datum
ehnsw_handler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *amroutine = makeNode(IndexAmRoutine);

	amroutine->amstrategies = 0;
	amroutine->amsupport = 1;
	amroutine->amoptsprocnum = 0;
	amroutine->amcanorder = false;
	amroutine->amcanorderbyop = true;
	amroutine->amcanbackward = false;
	amroutine->amcanunique = false;
	amroutine->amcanmulticol = false;
	amroutine->amoptionalkey = true;
	amroutine->amsearcharray = false;
	amroutine->amsearchnulls = false;
	amroutine->amstorage = false;
	amroutine->amclusterable = false;
	amroutine->ampredlocks = false;
	amroutine->amcanparallel = false;
	amroutine->amcaninclude = false;
	amroutine->amusemaintenanceworkmem = false;
	amroutine->amparallelvacuumoptions = VACUUM_OPTION_PARALLEL_BULKDEL;
	amroutine->amkeytype = InvalidOid;

	amroutine->ambuild = ehnswbuild;
	amroutine->ambuildempty = ehnswbuildempty;
	amroutine->aminsert = ehnswinsert;
	amroutine->ambulkdelete = ehnswbulkdelete;
	amroutine->amvacuumcleanup = ehnswvacuumcleanup;
	amroutine->amcanreturn = NULL;
	amroutine->amcostestimate = ehnswcostestimate;
	amroutine->amoptions = ehnswoptions;
	amroutine->amproperty = NULL;
	amroutine->ambuildphasename = ehnswbuildphasename;
	amroutine->amvalidate = ehnswvalidate;
	amroutine->amadjustmembers = NULL;
	amroutine->ambeginscan = ehnswbeginscan;
	amroutine->amrescan = ehnswrescan;
	amroutine->amgettuple = ehnswgettuple;
	amroutine->amgetbitmap = NULL;
	amroutine->amendscan = ehnswendscan;
	amroutine->ammarkpos = NULL;
	amroutine->amrestrpos = NULL;
	amroutine->amestimateparallelscan = NULL;
	amroutine->aminitparallelscan = NULL;
	amroutine->amparallelrescan = NULL;

	PG_RETURN_POINTER(amroutine);
}

/* Support function 1 of each operator class: which distance it orders by. */
PG_FUNCTION_INFO_V1(ehnsw_metric_l2);
Datum
ehnsw_metric_l2(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(EHNSW_METRIC_L2);
}

PG_FUNCTION_INFO_V1(ehnsw_metric_cosine);
Datum
ehnsw_metric_cosine(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(EHNSW_METRIC_COSINE);
}

PG_FUNCTION_INFO_V1(ehnsw_metric_ip);
Datum
ehnsw_metric_ip(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(EHNSW_METRIC_IP);
}
