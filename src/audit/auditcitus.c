/*-------------------------------------------------------------------------
 *
 * auditcitus.c
 *	  The audit on a Citus cluster: empty shard scans folded on a worker,
 *	  and the coordinator's record of a distributed statement.
 *
 * Folding.  A multi-shard search makes a worker scan every shard it holds;
 * most return no row of the claimant's tenant.  Instead of one record per
 * such scan, audit_emit() hands an empty scan of a shard, made inside a
 * Citus distributed transaction, to auditcitus_fold() (audit_fold_hook).
 * It is kept in backend memory with the other empty scans of the same
 * distributed table, distributed transaction, action and claims; they
 * become one record (rows_returned 0; the number of scans and the shards
 * in the detail) when the worker's transaction ends.  Before it commits or
 * prepares (PREPARE TRANSACTION: Citus's two-phase commit) the record is
 * queued and waited for, as any scan record; when it aborts (ROLLBACK, an
 * error, the backend exiting) it is queued without waiting or raising and
 * without catalog access, as the abort path of decryptions (auditexec.c).
 * Until then the record exists only in this backend: a server crash before
 * the transaction ends loses it (an empty scan disclosed no row).  A scan
 * that returned rows, failed, or ran outside a distributed transaction
 * keeps its own record, as on a single node.  The fold is per backend: a
 * worker serving one search over several connections writes one folded
 * record per connection.
 *
 * The coordinator.  A SELECT under claims that Citus executes (its custom
 * scan) over a protected table writes one "distributed_scan" record when
 * it ends: the distributed table, the rows returned to the client, and
 * (audit_emit() adds them) the distributed transaction and the global PID
 * that the workers' records carry.  A statement that fails writes it with
 * outcome "error".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/planner.h"
#include "utils/memutils.h"

#include "auditint.h"
#include "auditexec.h"
#include "citus.h"
#include "claims.h"

/* Empty shard scans of one table, transaction and claimant. */
typedef struct FoldedScans
{
	AuditRecord rec;			/* the first scan's record, copied */
	CitusTxn	txn;
	int64		scans;
	int			nshards;
	int			maxshards;
	uint64	   *shards;			/* distinct, in the order scanned */
} FoldedScans;

/* A distributed SELECT on the coordinator, recorded at its end. */
typedef struct DistributedQuery
{
	QueryDesc  *qd;
	Oid			relid;
	char	   *relation;		/* its name, for the error path */
	int64		rows;
	bool		recorded;
	MemoryContextCallback on_reset;
} DistributedQuery;

static MemoryContext fold_cxt = NULL;
static List *folded = NIL;
static List *distributed_queries = NIL;

/*
 * Runs of recorded distributed SELECTs under way.  A statement started
 * while one runs is part of it (Citus runs the subqueries it plans apart
 * - a LIMIT subquery, a CTE - as statements of their own, into
 * intermediate results): the outer statement's record covers it.
 */
static int	distributed_run_depth = 0;

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;


/* ---------- folding empty shard scans (workers) ---------- */

static bool
same_string(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static char *
fold_strdup(const char *s)
{
	return s != NULL ? MemoryContextStrdup(fold_cxt, s) : NULL;
}

/* Does rec belong with the scans already folded into f? */
static bool
fold_matches(const FoldedScans *f, const AuditRecord *rec, const CitusTxn * txn)
{
	return f->txn.initiator_node == txn->initiator_node &&
		f->txn.number == txn->number && f->txn.gpid == txn->gpid &&
		same_string(f->rec.relation, rec->relation) &&
		same_string(f->rec.action, rec->action) &&
		same_string(f->rec.db_user, rec->db_user) &&
		same_string(f->rec.subject, rec->subject) &&
		same_string(f->rec.tenant, rec->tenant) &&
		same_string(f->rec.app_role, rec->app_role) &&
		same_string(f->rec.purpose, rec->purpose) &&
		f->rec.break_glass == rec->break_glass &&
		same_string(f->rec.break_glass_reason, rec->break_glass_reason) &&
		f->rec.has_digest == rec->has_digest &&
		(!rec->has_digest ||
		 memcmp(f->rec.digest, rec->digest, AUDIT_DIGEST_LEN) == 0);
}

/*
 * Keep an empty scan of a shard (rec, from audit_emit()) for the folded
 * record of its transaction; false when it is not such a scan and keeps
 * its own record.
 */
static bool
auditcitus_fold(const AuditRecord *rec, uint64 shardid, const CitusTxn * txn)
{
	FoldedScans *f = NULL;
	ListCell   *lc;
	MemoryContext old;
	int			i;

	if (strcmp(rec->action, AUDIT_ACTION_INDEX_SCAN) != 0 &&
		strcmp(rec->action, AUDIT_ACTION_EXACT_SCAN) != 0 &&
		strcmp(rec->action, AUDIT_ACTION_READ) != 0)
		return false;
	if (strcmp(rec->outcome, AUDIT_OUTCOME_OK) != 0 || rec->rows != 0)
		return false;

	if (fold_cxt == NULL)
		fold_cxt = AllocSetContextCreate(TopMemoryContext,
										 "vecphi folded shard scans",
										 ALLOCSET_SMALL_SIZES);
	foreach(lc, folded)
	{
		if (fold_matches(lfirst(lc), rec, txn))
		{
			f = lfirst(lc);
			break;
		}
	}
	old = MemoryContextSwitchTo(fold_cxt);
	if (f == NULL)
	{
		f = palloc0(sizeof(FoldedScans));
		f->rec = *rec;
		f->rec.db_user = fold_strdup(rec->db_user);
		f->rec.subject = fold_strdup(rec->subject);
		f->rec.tenant = fold_strdup(rec->tenant);
		f->rec.app_role = fold_strdup(rec->app_role);
		f->rec.purpose = fold_strdup(rec->purpose);
		f->rec.break_glass_reason = fold_strdup(rec->break_glass_reason);
		f->rec.action = fold_strdup(rec->action);
		f->rec.relation = fold_strdup(rec->relation);
		f->rec.index_name = fold_strdup(rec->index_name);
		f->rec.row_ids = "{}";
		f->rec.outcome = AUDIT_OUTCOME_OK;
		f->rec.detail = NULL;
		f->txn = *txn;
		f->maxshards = 16;
		f->shards = palloc(sizeof(uint64) * f->maxshards);
		folded = lappend(folded, f);
	}
	else if (!same_string(f->rec.index_name, rec->index_name))
		f->rec.index_name = NULL;	/* each shard has its own index */
	f->scans++;
	for (i = 0; i < f->nshards && f->shards[i] != shardid; i++)
		;
	if (i == f->nshards)
	{
		if (f->nshards == f->maxshards)
		{
			f->maxshards *= 2;
			f->shards = repalloc(f->shards, sizeof(uint64) * f->maxshards);
		}
		f->shards[f->nshards++] = shardid;
	}
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Queue the folded records.  Before commit or prepare: as any record (a
 * full queue raises, and the abort that follows queues what is left), then
 * wait until they are committed.  At abort: never wait or raise, and no
 * catalog access: everything was copied when the scans were folded.
 */
static void
fold_emit(bool aborting)
{
	uint64		ticket = 0;
	MemoryContext old;

	if (folded == NIL)
		return;
	old = MemoryContextSwitchTo(fold_cxt);
	while (folded != NIL)
	{
		FoldedScans *f = linitial(folded);
		AuditRecord rec = f->rec;
		StringInfoData buf;
		int			i;

		initStringInfo(&buf);
		appendStringInfo(&buf, "citus: " INT64_FORMAT " empty scans of shards", f->scans);
		for (i = 0; i < f->nshards; i++)
			appendStringInfo(&buf, " " UINT64_FORMAT, f->shards[i]);
		appendStringInfo(&buf, ", transaction %d:" UINT64_FORMAT ", gpid " UINT64_FORMAT,
						 f->txn.initiator_node, f->txn.number, f->txn.gpid);
		rec.detail = buf.data;
		ticket = audit_enqueue_record_mode(&rec, aborting ? AUDIT_PUSH_NOWAIT :
										   AUDIT_PUSH_RAISE);
		folded = list_delete_first(folded);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(fold_cxt);
	if (!aborting && vecphi_audit_synchronous)
		auditqueue_wait(ticket);
}

static void
auditcitus_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			fold_emit(false);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			/* Nothing should be left after PRE_*; if so, never raise. */
			fold_emit(true);
			break;
		case XACT_EVENT_ABORT:
			fold_emit(true);
			distributed_run_depth = 0;
			/* Their executor states are gone (or going) with the abort. */
			distributed_queries = NIL;
			break;
		default:
			break;
	}
}


/* ---------- the coordinator's record of a distributed SELECT ---------- */

/* Is a Citus custom scan (its executor) in the plan? */
static bool
citus_scan_walker(PlanState *ps, void *context)
{
	if (ps == NULL)
		return false;
	if (IsA(ps, CustomScanState))
	{
		const char *name = ((CustomScanState *) ps)->methods->CustomName;

		if (strcmp(name, "AdaptiveExecutorScan") == 0 ||
			strcmp(name, "NonPushableInsertSelectScan") == 0 ||
			strcmp(name, "NonPushableMergeCommandScan") == 0)
			return true;
	}
	return planstate_tree_walker(ps, citus_scan_walker, context);
}

static void
distributed_query_forget(void *arg)
{
	distributed_queries = list_delete_ptr(distributed_queries, arg);
}

static DistributedQuery *
distributed_query_of(QueryDesc *qd)
{
	ListCell   *lc;

	foreach(lc, distributed_queries)
	{
		DistributedQuery *dq = lfirst(lc);

		if (dq->qd == qd)
			return dq;
	}
	return NULL;
}

static void
auditcitus_ExecutorStart(QueryDesc *qd, int eflags)
{
	DistributedQuery *dq;
	ListCell   *lc;
	Oid			relid = InvalidOid;
	MemoryContext old;

	if (prev_ExecutorStart)
		prev_ExecutorStart(qd, eflags);
	else
		standard_ExecutorStart(qd, eflags);

	/* Cheapest tests first: this runs for every statement. */
	if (!vecphi_audit_enabled || am_audit_writer || IsParallelWorker() ||
		distributed_run_depth > 0 ||
		(eflags & EXEC_FLAG_EXPLAIN_ONLY) || qd->operation != CMD_SELECT ||
		!vecphi_citus_preloaded() || claims_peek() == NULL ||
		!citus_scan_walker(qd->planstate, NULL))
		return;
	/* Citus keeps the statement's own range table (permission checks). */
	foreach(lc, qd->plannedstmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION && audit_relation_is_protected(rte->relid))
		{
			relid = rte->relid;
			break;
		}
	}
	if (!OidIsValid(relid))
		return;

	old = MemoryContextSwitchTo(qd->estate->es_query_cxt);
	dq = palloc0(sizeof(DistributedQuery));
	dq->qd = qd;
	dq->relid = relid;
	dq->relation = audit_relation_name(relid);
	dq->on_reset.func = distributed_query_forget;
	dq->on_reset.arg = dq;
	MemoryContextRegisterResetCallback(qd->estate->es_query_cxt, &dq->on_reset);
	MemoryContextSwitchTo(TopMemoryContext);
	distributed_queries = lappend(distributed_queries, dq);
	MemoryContextSwitchTo(old);
}

/* Queue the record of a failed distributed SELECT; never raise. */
static void
distributed_query_failed(DistributedQuery *dq)
{
	AuditRecord rec;
	CitusTxn	txn;

	memset(&rec, 0, sizeof(rec));
	audit_record_fill_context(&rec);
	rec.action = AUDIT_ACTION_DISTRIBUTED_SCAN;
	rec.outcome = AUDIT_OUTCOME_ERROR;
	rec.relation = dq->relation;
	rec.has_rows = true;
	rec.rows = dq->rows;
	if (vecphi_citus_current_txn(&txn))
		rec.detail = psprintf("citus: transaction %d:" UINT64_FORMAT ", gpid " UINT64_FORMAT,
							  txn.initiator_node, txn.number, txn.gpid);
	(void) audit_enqueue_record(&rec, true);
	dq->recorded = true;
}

static void
auditcitus_ExecutorRun(QueryDesc *qd, ScanDirection direction, uint64 count,
					   bool execute_once)
{
	DistributedQuery *volatile dq = distributed_queries != NIL ?
	distributed_query_of(qd) : NULL;

	if (dq == NULL)
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(qd, direction, count, execute_once);
		else
			standard_ExecutorRun(qd, direction, count, execute_once);
		return;
	}
	distributed_run_depth++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(qd, direction, count, execute_once);
		else
			standard_ExecutorRun(qd, direction, count, execute_once);
	}
	PG_CATCH();
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		distributed_run_depth--;
		if (!dq->recorded)
			distributed_query_failed(dq);
		MemoryContextSwitchTo(old);
		PG_RE_THROW();
	}
	PG_END_TRY();
	distributed_run_depth--;
	/* ExecutorRun counts a SELECT's rows sent to the receiver afresh. */
	dq->rows += qd->estate->es_processed;
}

static void
auditcitus_ExecutorEnd(QueryDesc *qd)
{
	DistributedQuery *dq = distributed_queries != NIL ? distributed_query_of(qd) : NULL;

	if (dq != NULL && !dq->recorded)
	{
		AuditEvent	ev;

		memset(&ev, 0, sizeof(ev));
		ev.action = AUDIT_ACTION_DISTRIBUTED_SCAN;
		ev.outcome = AUDIT_OUTCOME_OK;
		ev.relid = dq->relid;
		ev.rows = dq->rows;
		dq->recorded = true;
		audit_emit(&ev, true);
	}
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(qd);
	else
		standard_ExecutorEnd(qd);
}

/* Register the hooks and the transaction callback (audit_init()). */
void
auditcitus_init(void)
{
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = auditcitus_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = auditcitus_ExecutorRun;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = auditcitus_ExecutorEnd;
	RegisterXactCallback(auditcitus_xact_callback, NULL);
	audit_fold_hook = auditcitus_fold;
}
