/*-------------------------------------------------------------------------
 *
 * auditexec.c
 *	  Which statements are audited, which rows they disclosed, and holding
 *	  result rows back until their audit records are durable.
 *
 * A statement is audited when its plan calls a vecphi distance function
 * (a similarity search) or vecphi.decrypt, and it runs under claims.
 * Each scan of a table holding evector/etext columns in such a statement
 * becomes a record: index_scan when it goes through an ehnsw index,
 * exact_scan for any other scan in a statement that computes distances,
 * read when the statement only decrypts.
 *
 * Which rows.  The rows a scan passes up are not the rows the statement
 * discloses: an exact search compares every row of the tenant, sorts and
 * keeps ten.  So the planner hook appends a hidden (resjunk) column with
 * the row's identity - its primary key, or ctid without one - to the
 * scan's target list and carries it up through the nodes that only pass
 * rows on (Limit, Sort, Gather, Material, Result...); the executor then
 * reads it from the rows leaving the top of the plan, and the junk filter
 * drops it before the client sees anything.  Plans of other shapes (joins,
 * subqueries, DML) record the rows the scan node itself returns.
 *
 * Holding rows back.  Rows bound for the client pass through a
 * DestReceiver that buffers them while any record is pending; at the end
 * of the run, or every AUDIT_IDS_PER_RECORD rows, the records are queued,
 * the backend waits until the audit writer has committed them
 * (synchronous mode), and only then the buffered rows go out.  Rows never
 * spill to disk: large results are released in batches, each after its
 * own record.  An error half-way still queues what was read, with outcome
 * "error".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/relation.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "executor/tstoreReceiver.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/planner.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "auditint.h"
#include "claims.h"
#include "crypto.h"
#include "envelope.h"
#include "evector.h"
#include "report.h"
#include "vecphi.h"
#include "auditexec.h"

/* vecphi.max_scan_rows (registered in auditexec_init()). */
int			vecphi_max_scan_rows = 0;

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;


/* Audited executions alive in this backend (any nesting level). */
static List *active_queries = NIL;

/* vecphi.decrypt calls not yet recorded, and by whom. */
static int64 pending_decrypt_vectors = 0;
static int64 pending_decrypt_texts = 0;
static char pending_decrypt_user[NAMEDATALEN] = "?";

static void audit_flush_all(const char *outcome, const char *detail,
							bool wait, bool nothrow);


/* ---------- capturing rows at execution ---------- */

static AuditCapture *
capture_for_node(PlanState *node)
{
	ListCell   *lq;
	ListCell   *lc;

	foreach(lq, active_queries)
	{
		AuditQuery *aq = lfirst(lq);

		foreach(lc, aq->captures)
		{
			AuditCapture *cap = lfirst(lc);

			if (cap->node == node)
				return cap;
		}
	}
	elog(ERROR, "vecphi audit: plan node is not captured");
	return NULL;				/* keep compiler quiet */
}

static void
append_identity(AuditCapture *cap, const char *identity)
{
	const char *p;

	if (cap->nids > 0)
		appendStringInfoChar(&cap->ids, ',');
	appendStringInfoChar(&cap->ids, '"');
	for (p = identity; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			appendStringInfoChar(&cap->ids, '\\');
		appendStringInfoChar(&cap->ids, *p);
	}
	appendStringInfoChar(&cap->ids, '"');
	cap->nids++;
}

/* The action a capture's records carry, given what its query did. */
static const char *
capture_action(const AuditCapture *cap)
{
	if (strcmp(cap->action, AUDIT_ACTION_READ) == 0 && cap->query->distance_seen)
		return AUDIT_ACTION_EXACT_SCAN;
	return cap->action;
}

/*
 * vecphi.max_scan_rows: a similarity scan (the query computed distances,
 * seen in its plan or while it ran) may return at most that many rows.
 * Counted where the rows are recorded: the rows leaving the top of a
 * search, or those a scan passes up in plans of other shapes.
 */
static void
capture_check_limit(AuditCapture *cap)
{
	char	   *message;

	if (vecphi_max_scan_rows <= 0 || ++cap->total <= vecphi_max_scan_rows ||
		strcmp(capture_action(cap), AUDIT_ACTION_READ) == 0)
		return;
	message = psprintf("similarity scan exceeds vecphi.max_scan_rows (%d)",
					   vecphi_max_scan_rows);
	vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, message, NULL,
				errhint("Ask for fewer rows (LIMIT), or ask the security officer to raise the limit."));
}

/*
 * vecphi.max_scan_rows for an ehnsw scan (report_index_row(), before the
 * index hands a row to the executor): counted in the scan, so rows a
 * filter or row-level security discards afterwards count too.  *returned
 * is the scan's own count.
 */
void
auditexec_index_row(int64 *returned)
{
	char	   *message;

	if (vecphi_max_scan_rows <= 0 || ++*returned <= vecphi_max_scan_rows)
		return;
	message = psprintf("similarity scan exceeds vecphi.max_scan_rows (%d)",
					   vecphi_max_scan_rows);
	vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, message, NULL,
				errdetail("An ehnsw scan may return at most that many rows, counting rows a filter or row-level security discards afterwards."),
				errhint("Ask for fewer rows (LIMIT), or ask the security officer to raise the limit."));
}

static void
capture_row(AuditCapture *cap, TupleTableSlot *slot)
{
	MemoryContext old;

	capture_check_limit(cap);
	old = MemoryContextSwitchTo(cap->query->cxt);

	if (cap->from_output)
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, cap->identity_attno, &isnull);

		append_identity(cap, isnull ? "" : OutputFunctionCall(&cap->identity_out, d));
	}
	else
	{
		TupleTableSlot *scanslot = ((ScanState *) cap->node)->ss_ScanTupleSlot;

		if (cap->npk == 0)
			append_identity(cap, psprintf("(%u,%u)",
										  ItemPointerGetBlockNumberNoCheck(&scanslot->tts_tid),
										  ItemPointerGetOffsetNumberNoCheck(&scanslot->tts_tid)));
		else if (cap->npk == 1)
		{
			bool		isnull;
			Datum		d = slot_getattr(scanslot, cap->pk_attnos[0], &isnull);

			append_identity(cap, isnull ? "" : OutputFunctionCall(&cap->pk_out[0], d));
		}
		else
		{
			StringInfoData buf;
			int			i;

			initStringInfo(&buf);
			appendStringInfoChar(&buf, '(');
			for (i = 0; i < cap->npk; i++)
			{
				bool		isnull;
				Datum		d = slot_getattr(scanslot, cap->pk_attnos[i], &isnull);

				if (i > 0)
					appendStringInfoChar(&buf, ',');
				if (!isnull)
					appendStringInfoString(&buf, OutputFunctionCall(&cap->pk_out[i], d));
			}
			appendStringInfoChar(&buf, ')');
			append_identity(cap, buf.data);
		}
	}
	MemoryContextSwitchTo(old);
	if (cap->nids >= AUDIT_IDS_PER_RECORD)
		audit_flush_all(AUDIT_OUTCOME_OK, NULL, true, false);
}

/* ExecProcNode of a captured node: the real one, then note the row. */
static TupleTableSlot *
audit_capture_exec(PlanState *node)
{
	AuditCapture *cap = capture_for_node(node);
	TupleTableSlot *slot;

	cap->ran = true;
	slot = cap->orig(node);
	if (!TupIsNull(slot))
		capture_row(cap, slot);
	return slot;
}

/*
 * The identity column the planner hook added to a plan node's target list,
 * or NULL.  (A parallel worker's copy of the plan has resjunk cleared.)
 */
static TargetEntry *
identity_entry(Plan * plan)
{
	ListCell   *lc;

	foreach(lc, plan->targetlist)
	{
		TargetEntry *te = lfirst(lc);

		if ((te->resjunk || IsParallelWorker()) &&
			te->resname && strcmp(te->resname, IDENTITY_RESNAME) == 0)
			return te;
	}
	return NULL;
}

/* The scan at the bottom of a chain of row-passing nodes. */
static PlanState *
chain_scan(PlanState *ps)
{
	while (ps != NULL && !IsA(ps->plan, SeqScan) && !IsA(ps->plan, SampleScan) &&
		   !IsA(ps->plan, IndexScan) && !IsA(ps->plan, BitmapHeapScan) &&
		   !IsA(ps->plan, TidScan) && !IsA(ps->plan, TidRangeScan))
		ps = outerPlanState(ps);
	return ps;
}

static bool
is_ehnsw_index(Oid indexid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexid));
	bool		result = false;

	if (HeapTupleIsValid(tup))
	{
		char	   *am = get_am_name(((Form_pg_class) GETSTRUCT(tup))->relam);

		result = am != NULL && strcmp(am, "ehnsw") == 0;
		ReleaseSysCache(tup);
	}
	return result;
}

static AuditCapture *
capture_create(AuditQuery *aq, PlanState *node, PlanState *scan,
			   const CallSearch *cs)
{
	AuditCapture *cap = palloc0(sizeof(AuditCapture));
	Scan	   *scanplan = (Scan *) scan->plan;
	RangeTblEntry *rte = exec_rt_fetch(scanplan->scanrelid, scan->state);
	TargetEntry *identity;

	cap->node = node;
	cap->query = aq;
	cap->relid = rte->relid;
	if (IsA(scanplan, IndexScan))
		cap->indexid = ((IndexScan *) scanplan)->indexid;
	if (OidIsValid(cap->indexid) && is_ehnsw_index(cap->indexid))
		cap->action = AUDIT_ACTION_INDEX_SCAN;
	else if (cs->distance)
		cap->action = AUDIT_ACTION_EXACT_SCAN;
	else
		cap->action = AUDIT_ACTION_READ;
	initStringInfo(&cap->ids);

	identity = identity_entry(node->plan);
	if (identity != NULL)
	{
		/* Read the identity column from the rows the node returns. */
		Oid			typoutput;
		bool		varlena;

		cap->from_output = true;
		cap->identity_attno = identity->resno;
		getTypeOutputInfo(exprType((Node *) identity->expr), &typoutput, &varlena);
		fmgr_info(typoutput, &cap->identity_out);
	}
	else if (node == scan && ((ScanState *) scan)->ss_currentRelation != NULL)
	{
		/* Read the primary key (or ctid) from the scanned tuple. */
		Relation	rel = ((ScanState *) scan)->ss_currentRelation;
		int			i;

		cap->npk = audit_primary_key_columns(rel, cap->pk_attnos);
		for (i = 0; i < cap->npk; i++)
		{
			Oid			typoutput;
			bool		varlena;

			getTypeOutputInfo(TupleDescAttr(RelationGetDescr(rel),
											cap->pk_attnos[i] - 1)->atttypid,
							  &typoutput, &varlena);
			fmgr_info(typoutput, &cap->pk_out[i]);
		}
	}

	cap->orig = node->ExecProcNodeReal;
	ExecSetExecProcNode(node, audit_capture_exec);
	aq->captures = lappend(aq->captures, cap);
	return cap;
}

typedef struct ScanFinder
{
	AuditQuery *aq;
	const CallSearch *cs;
} ScanFinder;

/* Capture every scan of a protected table (plans of other shapes). */
static bool
capture_scans_walker(PlanState *ps, ScanFinder *finder)
{
	if (ps == NULL)
		return false;
	switch (nodeTag(ps->plan))
	{
		case T_SeqScan:
		case T_SampleScan:
		case T_IndexScan:
		case T_BitmapHeapScan:
		case T_TidScan:
		case T_TidRangeScan:
			{
				Relation	rel = ((ScanState *) ps)->ss_currentRelation;

				if (rel != NULL && audit_relation_is_protected(RelationGetRelid(rel)))
					capture_create(finder->aq, ps, ps, finder->cs);
				break;
			}
		default:
			break;
	}
	return planstate_tree_walker(ps, (bool (*) ()) capture_scans_walker, finder);
}

static void
audit_query_forget(void *arg)
{
	AuditQuery *aq = (AuditQuery *) arg;

	active_queries = list_delete_ptr(active_queries, aq);
}

static bool
audit_active_here(void)
{
	return vecphi_audit_enabled && !am_audit_writer;
}

/*
 * Parallel workers queue their own records but never wait: the leader's
 * wait, after the workers have finished, covers theirs (tickets of one
 * database are committed in order).
 */
static bool
audit_may_wait(void)
{
	return !IsParallelWorker();
}

/* Does the statement read a table or view holding evector/etext columns? */
static bool
stmt_reads_protected(PlannedStmt * stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION &&
			(rte->relkind == RELKIND_RELATION ||
			 rte->relkind == RELKIND_PARTITIONED_TABLE ||
			 rte->relkind == RELKIND_MATVIEW) &&
			audit_relation_is_protected(rte->relid))
			return true;
	}
	return false;
}

/*
 * Every execution of a statement that reads encrypted data (it scans a
 * table with evector/etext columns, or computes distances or decrypts) is
 * registered in active_queries until its executor state goes away.  Under
 * claims its scans are captured and recorded; without claims it is only
 * tracked, so that claims cannot appear while it runs
 * (audit_claims_change_check): its scans would go unrecorded.
 */
static void
audit_ExecutorStart(QueryDesc *qd, int eflags)
{
	CallSearch	cs = {0};
	PlanState  *top;
	PlanState  *scan;
	AuditQuery *aq;
	MemoryContext old;
	bool		top_identity = false;
	bool		has_claims;

	if (prev_ExecutorStart)
		prev_ExecutorStart(qd, eflags);
	else
		standard_ExecutorStart(qd, eflags);

	if (!audit_active_here() || (eflags & EXEC_FLAG_EXPLAIN_ONLY))
		return;
	/* A worker verifies the leader's claims lazily; do it now. */
	has_claims = (IsParallelWorker() ? claims_current() : claims_peek()) != NULL;
	if (!has_claims && IsParallelWorker())
		return;

	audit_stmt_search_calls(qd->plannedstmt, &cs);
	if (!cs.distance && !cs.decrypt && !stmt_reads_protected(qd->plannedstmt))
		return;

	old = MemoryContextSwitchTo(qd->estate->es_query_cxt);
	aq = palloc0(sizeof(AuditQuery));
	aq->qd = qd;
	aq->cxt = qd->estate->es_query_cxt;
	aq->query_arg = cs.query_arg;
	aq->tracking_only = !has_claims;
	aq->digest_done = !has_claims;

	top = qd->planstate;
	top_identity = identity_entry(top->plan) != NULL;
	if (top_identity && IsParallelWorker())
	{
		/* The leader reads the identity column from the Gather. */
		MemoryContextSwitchTo(old);
		return;
	}
	if (aq->tracking_only)
	{
		/* Nothing to capture: only tracked (see above). */
	}
	else if (top_identity && (scan = chain_scan(top)) != NULL)
		capture_create(aq, top, scan, &cs);
	else
	{
		ScanFinder	finder = {aq, &cs};

		capture_scans_walker(top, &finder);
	}

	aq->on_reset.func = audit_query_forget;
	aq->on_reset.arg = aq;
	MemoryContextRegisterResetCallback(aq->cxt, &aq->on_reset);
	MemoryContextSwitchTo(old);

	old = MemoryContextSwitchTo(TopMemoryContext);
	active_queries = lappend(active_queries, aq);
	MemoryContextSwitchTo(old);
}


/* ---------- queuing the records ---------- */

/*
 * SHA-256 of the query vector's plaintext, when it is a constant/param (or
 * the cast of one to evector_query): the values as little-endian float4,
 * so an evector and an evector_query with the same values get the same
 * fingerprint.
 */
static void
audit_query_digest(AuditQuery *aq)
{
	Expr	   *arg = aq->query_arg;
	Oid			cast = InvalidOid;
	Datum		value = (Datum) 0;
	bool		isnull = true;

	aq->digest_done = true;
	if (arg == NULL)
		return;
	if (IsA(arg, FuncExpr))		/* the cast auditplan.c accepted */
	{
		cast = ((FuncExpr *) arg)->funcid;
		arg = linitial(((FuncExpr *) arg)->args);
		while (IsA(arg, RelabelType))
			arg = ((RelabelType *) arg)->arg;
	}
	if (IsA(arg, Const))
	{
		value = ((Const *) arg)->constvalue;
		isnull = ((Const *) arg)->constisnull;
	}
	else if (IsA(arg, Param) && ((Param *) arg)->paramkind == PARAM_EXTERN)
	{
		ParamListInfo params = aq->qd->params;
		int			id = ((Param *) arg)->paramid;

		if (params != NULL && id > 0 && id <= params->numParams)
		{
			ParamExternData workspace;
			ParamExternData *prm;

			if (params->paramFetch != NULL)
				prm = params->paramFetch(params, id, false, &workspace);
			else
				prm = &params->params[id - 1];
			value = prm->value;
			isnull = prm->isnull;
		}
	}
	if (isnull)
		return;
	if (OidIsValid(cast))
		value = OidFunctionCall1(cast, value);
	if (evector_query_is_type(exprType((Node *) aq->query_arg)))
		evector_query_digest(value, aq->digest);
	else
	{
		struct varlena *env = PG_DETOAST_DATUM(value);
		EnvelopeHeader hdr;
		Size		len;
		void	   *x;

		if (!envelope_owned_by_claimant(env, ENVELOPE_KIND_VECTOR))
			return;
		x = envelope_open(env, ENVELOPE_KIND_VECTOR, &hdr, &len);
		crypto_sha256(x, len, aq->digest);
		crypto_wipe(x, len);
		pfree(x);
	}
	aq->has_digest = true;
}

static bool
audit_anything_pending(void)
{
	ListCell   *lq;
	ListCell   *lc;

	if (pending_decrypt_vectors > 0 || pending_decrypt_texts > 0)
		return true;
	foreach(lq, active_queries)
	{
		AuditQuery *aq = lfirst(lq);

		foreach(lc, aq->captures)
		{
			AuditCapture *cap = lfirst(lc);

			if (cap->nids > 0 || (cap->ran && !cap->emitted))
				return true;
		}
	}
	return false;
}

/*
 * Queue a record for every capture with rows not yet recorded (or that ran
 * without any record so far), and one for pending decryptions; with wait,
 * return only once they are committed.  nothrow is for error paths: no
 * digest, no waiting, drop rather than raise.
 */
static void
audit_flush_all(const char *outcome, const char *detail, bool wait, bool nothrow)
{
	ListCell   *lq;
	ListCell   *lc;
	bool		queued = false;
	Oid			single_relid = InvalidOid;
	int			nrels = 0;

	foreach(lq, active_queries)
	{
		AuditQuery *aq = lfirst(lq);

		if (!nothrow && !aq->digest_done && aq->captures != NIL)
			audit_query_digest(aq);
		foreach(lc, aq->captures)
		{
			AuditCapture *cap = lfirst(lc);
			AuditEvent	ev;
			char	   *ids;

			if (cap->relid != single_relid)
			{
				single_relid = cap->relid;
				nrels++;
			}
			if (!(cap->nids > 0 || (cap->ran && !cap->emitted)))
				continue;
			/* A worker's share of a parallel scan: only rows it found. */
			if (cap->nids == 0 && IsParallelWorker())
				continue;
			ids = psprintf("{%s}", cap->ids.data);
			memset(&ev, 0, sizeof(ev));
			ev.action = capture_action(cap);
			ev.outcome = outcome;
			ev.relid = cap->relid;
			ev.indexid = cap->indexid;
			ev.rows = cap->nids;
			ev.row_ids = ids;
			ev.detail = detail;
			ev.query_digest = aq->has_digest ? aq->digest : NULL;
			if (nothrow)
			{
				AuditRecord rec;

				/* audit_emit() may raise; queue the record without it. */
				memset(&rec, 0, sizeof(rec));
				audit_record_fill_context(&rec);
				rec.action = (char *) capture_action(cap);
				rec.outcome = (char *) outcome;
				rec.relation = audit_relation_name(cap->relid);
				rec.index_name = OidIsValid(cap->indexid) ? get_rel_name(cap->indexid) : NULL;
				rec.has_rows = true;
				rec.rows = cap->nids;
				rec.row_ids = ids;
				rec.detail = (char *) detail;
				(void) audit_enqueue_record(&rec, true);
			}
			else
				audit_emit(&ev, false);
			queued = true;
			cap->emitted = true;
			cap->nids = 0;
			resetStringInfo(&cap->ids);
		}
	}
	if (pending_decrypt_vectors > 0 || pending_decrypt_texts > 0)
	{
		AuditEvent	ev;

		memset(&ev, 0, sizeof(ev));
		ev.action = AUDIT_ACTION_DECRYPT;
		ev.outcome = outcome;
		ev.relid = nrels == 1 ? single_relid : InvalidOid;
		ev.rows = pending_decrypt_vectors + pending_decrypt_texts;
		ev.detail = psprintf("evector values: " INT64_FORMAT ", etext values: " INT64_FORMAT,
							 pending_decrypt_vectors, pending_decrypt_texts);
		pending_decrypt_vectors = pending_decrypt_texts = 0;
		if (!nothrow)
		{
			audit_emit(&ev, false);
			queued = true;
		}
	}
	if (queued && wait && !nothrow && vecphi_audit_synchronous && audit_may_wait())
		auditqueue_last_ticket_wait();
}

/*
 * A distance was computed: every statement running now, whatever function
 * computed it (an operator in its plan, or a SQL or PL/pgSQL function the
 * planner cannot look into), is a similarity search.
 */
void
audit_note_distance(void)
{
	ListCell   *lc;

	foreach(lc, active_queries)
	{
		AuditQuery *aq = lfirst(lc);

		if (aq->running > 0)
			aq->distance_seen = true;
	}
}

/*
 * Claims must not appear or change while a statement that reads encrypted
 * data runs (an open cursor included): its scans were set up for the claims
 * in force when it started, and would decrypt under others unrecorded.
 */
static void
audit_claims_change_check(void)
{
	const char *message = "vecphi claims cannot change while a statement reading encrypted data is running";

	if (!audit_active_here() || active_queries == NIL)
		return;
	vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, message, NULL,
				errdetail("Its scans started under the claims in force then, and are recorded under those."),
				errhint("Call vecphi.set_claims() in a statement of its own, after closing open cursors."));
}

void
audit_count_decrypt(bool is_text)
{
	if (!audit_active_here())
		return;
	if (pending_decrypt_vectors == 0 && pending_decrypt_texts == 0)
	{
		char	   *user = GetUserNameFromId(GetUserId(), true);

		strlcpy(pending_decrypt_user, user ? user : "?", NAMEDATALEN);
	}
	if (is_text)
		pending_decrypt_texts++;
	else
		pending_decrypt_vectors++;
}


/* ---------- holding rows back ---------- */

static void
audit_dest_release(AuditDest *ad)
{
	ListCell   *lc;

	foreach(lc, ad->rows)
	{
		ExecStoreMinimalTuple((MinimalTuple) lfirst(lc), ad->replay, false);
		ad->real->receiveSlot(ad->replay, ad->real);
	}
	ad->rows = NIL;
	ad->bytes = 0;
	if (ad->replay != NULL)
		ExecClearTuple(ad->replay);
	MemoryContextReset(ad->cxt);
}

static void
audit_dest_flush(AuditDest *ad)
{
	audit_flush_all(AUDIT_OUTCOME_OK, NULL, true, false);
	audit_dest_release(ad);
}

static bool
audit_dest_receive(TupleTableSlot *slot, DestReceiver *self)
{
	AuditDest  *ad = (AuditDest *) self;
	MemoryContext old;
	MinimalTuple tup;

	if (!audit_anything_pending())
	{
		if (ad->rows != NIL)
			audit_dest_release(ad);
		return ad->real->receiveSlot(slot, ad->real);
	}
	old = MemoryContextSwitchTo(ad->cxt);
	tup = ExecCopySlotMinimalTuple(slot);
	ad->rows = lappend(ad->rows, tup);
	MemoryContextSwitchTo(old);
	ad->bytes += tup->t_len;
	if (list_length(ad->rows) >= AUDIT_IDS_PER_RECORD || ad->bytes >= AUDIT_BUFFER_BYTES)
		audit_dest_flush(ad);
	return true;
}

static void
audit_dest_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	AuditDest  *ad = (AuditDest *) self;
	MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(ad));

	ad->replay = MakeSingleTupleTableSlot(typeinfo, &TTSOpsMinimalTuple);
	MemoryContextSwitchTo(old);
	ad->real->rStartup(ad->real, operation, typeinfo);
}

static void
audit_dest_shutdown(DestReceiver *self)
{
	AuditDest  *ad = (AuditDest *) self;

	audit_dest_flush(ad);
	ad->real->rShutdown(ad->real);
}

static void
audit_dest_destroy(DestReceiver *self)
{
}

static bool
dest_reaches_client(DestReceiver *dest)
{
	switch (dest->mydest)
	{
		case DestRemote:
		case DestRemoteExecute:
		case DestRemoteSimple:
		case DestCopyOut:
			return true;
		default:
			return false;
	}
}

static AuditQuery *
audit_query_of(QueryDesc *qd)
{
	ListCell   *lc;

	foreach(lc, active_queries)
	{
		AuditQuery *aq = lfirst(lc);

		if (aq->qd == qd)
			return aq;
	}
	return NULL;
}

static void
audit_ExecutorRun(QueryDesc *qd, ScanDirection direction, uint64 count,
				  bool execute_once)
{
	AuditDest  *volatile ad = NULL;
	DestReceiver *real = qd->dest;
	AuditQuery *volatile aq = audit_query_of(qd);
	volatile bool audited = aq != NULL && !aq->tracking_only;

	/* Rows for the client are held back whenever claims could decrypt. */
	if (audit_active_here() && dest_reaches_client(real) &&
		(audited || claims_peek() != NULL))
	{
		ad = MemoryContextAllocZero(qd->estate->es_query_cxt, sizeof(AuditDest));
		ad->pub.receiveSlot = audit_dest_receive;
		ad->pub.rStartup = audit_dest_startup;
		ad->pub.rShutdown = audit_dest_shutdown;
		ad->pub.rDestroy = audit_dest_destroy;
		ad->pub.mydest = real->mydest;
		ad->real = real;
		ad->cxt = AllocSetContextCreate(qd->estate->es_query_cxt,
										"vecphi audit held rows",
										ALLOCSET_DEFAULT_SIZES);
		qd->dest = &ad->pub;
	}

	if (aq != NULL)
		aq->running++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(qd, direction, count, execute_once);
		else
			standard_ExecutorRun(qd, direction, count, execute_once);
	}
	PG_CATCH();
	{
		if (aq != NULL)
			aq->running--;
		qd->dest = real;
		if (audit_active_here() && active_queries != NIL)
		{
			MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
			ErrorData  *edata = CopyErrorData();

			audit_flush_all(AUDIT_OUTCOME_ERROR, edata->message, false, true);
			FreeErrorData(edata);
			MemoryContextSwitchTo(old);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (aq != NULL)
		aq->running--;
	qd->dest = real;

	/*
	 * A run ends with its records durable: rows for the client are still
	 * held, rows into a tuplestore (FETCH, RETURN QUERY) or SPI are about to
	 * be used.  A lazily evaluated SQL function is run a row at a time; it is
	 * flushed at its end instead (its rows are held by the caller's run).
	 */
	if (audit_active_here() && real->mydest != DestSQLFunction &&
		(ad != NULL || audited))
		audit_flush_all(AUDIT_OUTCOME_OK, NULL, true, false);
	if (ad != NULL && ad->rows != NIL)
		audit_dest_release(ad);
}

static void
audit_ExecutorEnd(QueryDesc *qd)
{
	AuditQuery *aq = audit_query_of(qd);

	if (audit_active_here() && aq != NULL && !aq->tracking_only)
		audit_flush_all(AUDIT_OUTCOME_OK, NULL, true, false);
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(qd);
	else
		standard_ExecutorEnd(qd);
}

/*
 * Decryptions outside any audited statement (e.g. in a PL/pgSQL
 * expression) are recorded at the latest when the transaction ends.
 */
static void
audit_xact_callback(XactEvent event, void *arg)
{
	if (!audit_active_here())
		return;
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PARALLEL_PRE_COMMIT)
		audit_flush_all(AUDIT_OUTCOME_OK, NULL, true, false);
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		if (pending_decrypt_vectors > 0 || pending_decrypt_texts > 0)
		{
			AuditRecord rec;

			memset(&rec, 0, sizeof(rec));
			rec.at = GetCurrentTimestamp();
			rec.backend_pid = MyProcPid;
			/* No catalog access while aborting: the name noted earlier. */
			rec.db_user = pending_decrypt_user;
			rec.action = AUDIT_ACTION_DECRYPT;
			rec.outcome = AUDIT_OUTCOME_ERROR;
			rec.has_rows = true;
			rec.rows = pending_decrypt_vectors + pending_decrypt_texts;
			(void) audit_enqueue_record(&rec, true);
		}
		pending_decrypt_vectors = pending_decrypt_texts = 0;
	}
}

/* Register the executor hooks and vecphi.max_scan_rows (audit_init()). */
void
auditexec_init(void)
{
	DefineCustomIntVariable("vecphi.max_scan_rows",
							"Most rows one similarity scan may return to a claimant (0: no limit).",
							"A minimum-necessary control and a brake on extracting a tenant's data by nearest-neighbour walking.",
							&vecphi_max_scan_rows,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_NO_RESET_ALL,
							NULL, NULL, NULL);
	audit_prev_planner = planner_hook;
	planner_hook = audit_planner;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = audit_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = audit_ExecutorRun;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = audit_ExecutorEnd;
	RegisterXactCallback(audit_xact_callback, NULL);
	claims_set_change_check(audit_claims_change_check);
	CacheRegisterSyscacheCallback(PROCOID, audit_kind_cache_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, audit_kind_cache_invalidate, (Datum) 0);
}
