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
#include "report.h"
#include "vecphi.h"

#define IDENTITY_RESNAME		"vecphi_row_identity"
#define AUDIT_IDS_PER_RECORD	1000
#define AUDIT_BUFFER_BYTES		(4 * 1024 * 1024)

typedef enum FuncKind
{
	FK_NONE = 1,
	FK_DISTANCE,
	FK_DECRYPT,
	FK_PROTECTED_INPUT			/* input function of evector or etext */
} FuncKind;

typedef struct FuncKindEntry
{
	Oid			oid;			/* hash key: function or type */
	int			kind;
} FuncKindEntry;

/* What a walk over a statement's expressions found. */
typedef struct CallSearch
{
	bool		distance;
	bool		decrypt;
	Expr	   *query_arg;		/* constant/parameter side of a distance */
} CallSearch;

struct AuditQuery;

/* One audited scan of one execution. */
typedef struct AuditCapture
{
	PlanState  *node;			/* where rows are read */
	ExecProcNodeMtd orig;		/* its real ExecProcNode */
	struct AuditQuery *query;
	bool		from_output;	/* identity column in the node's output */
	AttrNumber	identity_attno; /* ... at this position */
	FmgrInfo	identity_out;
	int			npk;			/* else: primary key columns of the scan */
	AttrNumber	pk_attnos[INDEX_MAX_KEYS];
	FmgrInfo	pk_out[INDEX_MAX_KEYS];
	const char *action;
	Oid			relid;
	Oid			indexid;
	int64		total;			/* rows captured in this execution */
	bool		ran;			/* the node has been executed */
	bool		emitted;		/* at least one record queued */
	StringInfoData ids;			/* text[] literal body being built */
	int64		nids;
} AuditCapture;

typedef struct AuditQuery
{
	QueryDesc  *qd;
	MemoryContext cxt;
	bool		tracking_only;	/* started without claims: nothing captured */
	int			running;		/* nesting of ExecutorRun calls under way */
	bool		distance_seen;	/* a distance was computed while it ran */
	List	   *captures;
	Expr	   *query_arg;
	bool		digest_done;
	bool		has_digest;
	uint8		digest[AUDIT_DIGEST_LEN];
	MemoryContextCallback on_reset;
} AuditQuery;

/* A DestReceiver that holds rows back until their records are durable. */
typedef struct AuditDest
{
	DestReceiver pub;
	DestReceiver *real;
	MemoryContext cxt;
	List	   *rows;			/* MinimalTuples */
	Size		bytes;
	TupleTableSlot *replay;
} AuditDest;

/* vecphi.max_scan_rows (registered in auditexec_init()). */
int			vecphi_max_scan_rows = 0;

static planner_hook_type prev_planner = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;

static HTAB *func_kinds = NULL;
static HTAB *type_kinds = NULL;

/* Audited executions alive in this backend (any nesting level). */
static List *active_queries = NIL;

/* vecphi.decrypt calls not yet recorded, and by whom. */
static int64 pending_decrypt_vectors = 0;
static int64 pending_decrypt_texts = 0;
static char pending_decrypt_user[NAMEDATALEN] = "?";

static void audit_flush_all(const char *outcome, const char *detail,
							bool wait, bool nothrow);


/* ---------- recognising vecphi's functions and types ---------- */

static void
kind_cache_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	if (func_kinds != NULL)
	{
		hash_destroy(func_kinds);
		func_kinds = NULL;
	}
	if (type_kinds != NULL)
	{
		hash_destroy(type_kinds);
		type_kinds = NULL;
	}
}

static HTAB *
kind_cache_create(const char *name)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(FuncKindEntry);
	ctl.hcxt = TopMemoryContext;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Recognise vecphi's C functions by their link symbol and library, so the
 * answer does not depend on schemas or search_path.
 */
static int
func_kind(Oid funcid)
{
	FuncKindEntry *entry;
	bool		found;
	HeapTuple	tup;
	int			kind = FK_NONE;

	if (func_kinds == NULL)
		func_kinds = kind_cache_create("vecphi function kinds");
	entry = hash_search(func_kinds, &funcid, HASH_ENTER, &found);
	if (found)
		return entry->kind;
	entry->kind = FK_NONE;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (HeapTupleIsValid(tup))
	{
		Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tup);
		bool		isnull;
		Datum		bin;

		if (proc->prolang == ClanguageId)
		{
			bin = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_probin, &isnull);
			if (!isnull && strstr(TextDatumGetCString(bin), "vecphi") != NULL)
			{
				char	   *src = TextDatumGetCString(SysCacheGetAttr(PROCOID, tup,
																	  Anum_pg_proc_prosrc,
																	  &isnull));

				if (strcmp(src, "evector_l2_distance") == 0 ||
					strcmp(src, "evector_cosine_distance") == 0 ||
					strcmp(src, "evector_inner_product") == 0 ||
					strcmp(src, "evector_negative_inner_product") == 0)
					kind = FK_DISTANCE;
				else if (strcmp(src, "vecphi_decrypt_vector") == 0 ||
						 strcmp(src, "vecphi_decrypt_text") == 0)
					kind = FK_DECRYPT;
				else if (strcmp(src, "evector_in") == 0 ||
						 strcmp(src, "etext_in") == 0)
					kind = FK_PROTECTED_INPUT;
			}
		}
		ReleaseSysCache(tup);
	}
	/* The entry may have moved if an invalidation rebuilt the table. */
	entry = hash_search(func_kinds, &funcid, HASH_ENTER, &found);
	entry->kind = kind;
	return kind;
}

/* evector, etext, a domain over them, or an array of those. */
static bool
type_is_protected(Oid typid)
{
	FuncKindEntry *entry;
	bool		found;
	Oid			base;
	Oid			elem;
	bool		result;

	if (type_kinds == NULL)
		type_kinds = kind_cache_create("vecphi type kinds");
	entry = hash_search(type_kinds, &typid, HASH_FIND, &found);
	if (found)
		return entry->kind == FK_PROTECTED_INPUT;

	base = getBaseType(typid);
	elem = get_element_type(base);
	if (OidIsValid(elem))
		base = getBaseType(elem);
	if (OidIsValid(get_typ_typrelid(base)))
		result = false;			/* composite types are not looked into */
	else
	{
		Oid			input;
		Oid			ioparam;

		getTypeInputInfo(base, &input, &ioparam);
		result = func_kind(input) == FK_PROTECTED_INPUT;
	}

	if (type_kinds == NULL)
		type_kinds = kind_cache_create("vecphi type kinds");
	entry = hash_search(type_kinds, &typid, HASH_ENTER, &found);
	entry->kind = result ? FK_PROTECTED_INPUT : FK_NONE;
	return result;
}

/*
 * Does the relation hold evector or etext columns?  The leader holds a lock
 * on every relation of the range table; a parallel worker locks only those
 * its part of the plan opens, so it takes one here (granted at once through
 * the leader's lock group), as ExecGetRangeTableRelation() does.
 */
static bool
relation_is_protected(Oid relid)
{
	Relation	rel = relation_open(relid,
									IsParallelWorker() ? AccessShareLock : NoLock);
	TupleDesc	desc = RelationGetDescr(rel);
	bool		result = false;
	int			i;

	for (i = 0; i < desc->natts && !result; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && type_is_protected(att->atttypid))
			result = true;
	}
	relation_close(rel, NoLock);
	return result;
}

static Expr *
strip_relabel(Expr * e)
{
	while (e != NULL && IsA(e, RelabelType))
		e = ((RelabelType *) e)->arg;
	return e;
}

static bool
call_walker(Node * node, CallSearch *cs)
{
	Oid			funcid = InvalidOid;
	List	   *args = NIL;

	if (node == NULL)
		return false;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, (bool (*) ()) call_walker, cs, 0);
	if (IsA(node, FuncExpr))
	{
		funcid = ((FuncExpr *) node)->funcid;
		args = ((FuncExpr *) node)->args;
	}
	else if (IsA(node, OpExpr))
	{
		set_opfuncid((OpExpr *) node);
		funcid = ((OpExpr *) node)->opfuncid;
		args = ((OpExpr *) node)->args;
	}
	if (OidIsValid(funcid))
	{
		int			kind = func_kind(funcid);

		if (kind == FK_DISTANCE)
		{
			cs->distance = true;
			if (cs->query_arg == NULL && list_length(args) == 2)
			{
				Expr	   *a = strip_relabel(linitial(args));
				Expr	   *b = strip_relabel(lsecond(args));

				if (b != NULL && (IsA(b, Const) || IsA(b, Param)))
					cs->query_arg = b;
				else if (a != NULL && (IsA(a, Const) || IsA(a, Param)))
					cs->query_arg = a;
			}
		}
		else if (kind == FK_DECRYPT)
			cs->decrypt = true;
	}
	return expression_tree_walker(node, (bool (*) ()) call_walker, cs);
}

/* Walk every expression of a plan tree (not its subplans' bodies). */
static void
plan_search_calls(Plan * plan, CallSearch *cs)
{
	ListCell   *lc;

	if (plan == NULL)
		return;
	call_walker((Node *) plan->targetlist, cs);
	call_walker((Node *) plan->qual, cs);
	switch (nodeTag(plan))
	{
		case T_IndexScan:
			call_walker((Node *) ((IndexScan *) plan)->indexqualorig, cs);
			call_walker((Node *) ((IndexScan *) plan)->indexorderbyorig, cs);
			break;
		case T_IndexOnlyScan:
			call_walker((Node *) ((IndexOnlyScan *) plan)->indexqual, cs);
			call_walker((Node *) ((IndexOnlyScan *) plan)->indexorderby, cs);
			break;
		case T_BitmapHeapScan:
			call_walker((Node *) ((BitmapHeapScan *) plan)->bitmapqualorig, cs);
			break;
		case T_Result:
			call_walker(((Result *) plan)->resconstantqual, cs);
			break;
		case T_FunctionScan:
			call_walker((Node *) ((FunctionScan *) plan)->functions, cs);
			break;
		case T_ValuesScan:
			call_walker((Node *) ((ValuesScan *) plan)->values_lists, cs);
			break;
		case T_NestLoop:
		case T_MergeJoin:
		case T_HashJoin:
			call_walker((Node *) ((Join *) plan)->joinqual, cs);
			if (IsA(plan, HashJoin))
				call_walker((Node *) ((HashJoin *) plan)->hashclauses, cs);
			if (IsA(plan, MergeJoin))
				call_walker((Node *) ((MergeJoin *) plan)->mergeclauses, cs);
			break;
		case T_Append:
			foreach(lc, ((Append *) plan)->appendplans)
				plan_search_calls(lfirst(lc), cs);
			break;
		case T_MergeAppend:
			foreach(lc, ((MergeAppend *) plan)->mergeplans)
				plan_search_calls(lfirst(lc), cs);
			break;
		case T_SubqueryScan:
			plan_search_calls(((SubqueryScan *) plan)->subplan, cs);
			break;
		case T_ModifyTable:
			call_walker((Node *) ((ModifyTable *) plan)->returningLists, cs);
			break;
		default:
			break;
	}
	plan_search_calls(plan->lefttree, cs);
	plan_search_calls(plan->righttree, cs);
}

static void
stmt_search_calls(PlannedStmt * stmt, CallSearch *cs)
{
	ListCell   *lc;

	plan_search_calls(stmt->planTree, cs);
	foreach(lc, stmt->subplans)
		plan_search_calls(lfirst(lc), cs);
}


/* ---------- the identity column, added at plan time ---------- */

/* Primary key columns of a relation; 0 without a primary key. */
static int
primary_key_columns(Relation rel, AttrNumber * attnos)
{
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	HeapTuple	tup;
	int			n = 0;

	if (!OidIsValid(pk))
		return 0;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pk));
	if (HeapTupleIsValid(tup))
	{
		Form_pg_index index = (Form_pg_index) GETSTRUCT(tup);
		int			i;

		for (i = 0; i < index->indnkeyatts; i++)
			if (index->indkey.values[i] > 0)
				attnos[n++] = index->indkey.values[i];
		if (n != index->indnkeyatts)
			n = 0;				/* expression keys: fall back to ctid */
		ReleaseSysCache(tup);
	}
	return n;
}

/* The identity of a scanned row: primary key (a row of them) or ctid. */
static Expr *
identity_expr(Oid relid, Index scanrelid)
{
	Relation	rel = relation_open(relid, NoLock);
	AttrNumber	attnos[INDEX_MAX_KEYS];
	int			n = primary_key_columns(rel, attnos);
	Expr	   *result;

	if (n == 0)
		result = (Expr *) makeVar(scanrelid, SelfItemPointerAttributeNumber,
								  TIDOID, -1, InvalidOid, 0);
	else
	{
		List	   *vars = NIL;
		int			i;

		for (i = 0; i < n; i++)
		{
			Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnos[i] - 1);

			vars = lappend(vars, makeVar(scanrelid, attnos[i], att->atttypid,
										 att->atttypmod, att->attcollation, 0));
		}
		if (n == 1)
			result = linitial(vars);
		else
		{
			RowExpr    *row = makeNode(RowExpr);

			row->args = vars;
			row->row_typeid = RECORDOID;
			row->row_format = COERCE_IMPLICIT_CAST;
			row->colnames = NIL;
			for (i = 0; i < n; i++)
				row->colnames = lappend(row->colnames,
										makeString(pstrdup(NameStr(TupleDescAttr(RelationGetDescr(rel),
																				 attnos[i] - 1)->attname))));
			row->location = -1;
			result = (Expr *) row;
		}
	}
	relation_close(rel, NoLock);
	return result;
}

static AttrNumber
append_identity_entry(Plan * plan, Expr * expr)
{
	AttrNumber	resno = list_length(plan->targetlist) + 1;

	plan->targetlist = lappend(plan->targetlist,
							   makeTargetEntry(expr, resno,
											   pstrdup(IDENTITY_RESNAME), true));
	return resno;
}

/*
 * Add the identity column to a chain of row-passing nodes ending in a scan
 * of a protected table.  Returns its position in plan's target list, or 0
 * when the plan has another shape (nothing is changed then).
 */
static AttrNumber
attach_identity(Plan * plan, List *rtable)
{
	switch (nodeTag(plan))
	{
		case T_SeqScan:
		case T_SampleScan:
		case T_IndexScan:
		case T_BitmapHeapScan:
		case T_TidScan:
		case T_TidRangeScan:
			{
				Index		scanrelid = ((Scan *) plan)->scanrelid;
				RangeTblEntry *rte = rt_fetch(scanrelid, rtable);

				if (rte->rtekind != RTE_RELATION ||
					rte->relkind != RELKIND_RELATION ||
					!relation_is_protected(rte->relid))
					return 0;
				return append_identity_entry(plan, identity_expr(rte->relid, scanrelid));
			}
		case T_Limit:
		case T_Sort:
		case T_IncrementalSort:
		case T_Material:
		case T_Gather:
		case T_GatherMerge:
		case T_Result:
			{
				Plan	   *child = plan->lefttree;
				AttrNumber	child_attno;
				TargetEntry *child_te;

				if (child == NULL)
					return 0;
				child_attno = attach_identity(child, rtable);
				if (child_attno == 0)
					return 0;
				child_te = list_nth(child->targetlist, child_attno - 1);
				return append_identity_entry(plan,
											 (Expr *) makeVar(OUTER_VAR, child_attno,
															  exprType((Node *) child_te->expr),
															  exprTypmod((Node *) child_te->expr),
															  exprCollation((Node *) child_te->expr),
															  0));
			}
		default:
			return 0;
	}
}

static PlannedStmt *
audit_planner(Query * parse, const char *query_string, int cursorOptions,
			  ParamListInfo boundParams)
{
	PlannedStmt *stmt;

	if (prev_planner)
		stmt = prev_planner(parse, query_string, cursorOptions, boundParams);
	else
		stmt = standard_planner(parse, query_string, cursorOptions, boundParams);

	/*
	 * Every SELECT whose rows come from a scan of a protected table carries
	 * the identity column: whatever computes distances or decrypts (an
	 * operator the planner sees, or a function it cannot look into), the
	 * record names the rows the statement returned.
	 */
	if (vecphi_audit_enabled && !am_audit_writer &&
		stmt->commandType == CMD_SELECT && stmt->planTree != NULL)
		(void) attach_identity(stmt->planTree, stmt->rtable);
	return stmt;
}


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

		cap->npk = primary_key_columns(rel, cap->pk_attnos);
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

				if (rel != NULL && relation_is_protected(RelationGetRelid(rel)))
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
			relation_is_protected(rte->relid))
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

	stmt_search_calls(qd->plannedstmt, &cs);
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

/* SHA-256 of the query vector's plaintext, when it is a constant/param. */
static void
audit_query_digest(AuditQuery *aq)
{
	Expr	   *arg = aq->query_arg;
	Datum		value = (Datum) 0;
	bool		isnull = true;

	aq->digest_done = true;
	if (arg == NULL)
		return;
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
	if (!isnull)
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
		aq->has_digest = true;
	}
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
	prev_planner = planner_hook;
	planner_hook = audit_planner;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = audit_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = audit_ExecutorRun;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = audit_ExecutorEnd;
	RegisterXactCallback(audit_xact_callback, NULL);
	claims_set_change_check(audit_claims_change_check);
	CacheRegisterSyscacheCallback(PROCOID, kind_cache_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, kind_cache_invalidate, (Datum) 0);
}
