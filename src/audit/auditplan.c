/*-------------------------------------------------------------------------
 *
 * auditplan.c
 *	  The audit's planner part: recognising vecphi's functions and types
 *	  (by link symbol, independent of schemas), finding what a statement
 *	  calls, and the hidden identity column the planner hook adds to the
 *	  scans of audited statements.
 *
 * The design (which statements, which rows, holding rows back) is at the
 * top of auditexec.c.
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
#include "auditexec.h"

static HTAB *func_kinds = NULL;
static HTAB *type_kinds = NULL;

/* The planner hook before audit_planner (installed by auditexec_init()). */
planner_hook_type audit_prev_planner = NULL;

/* ---------- recognising vecphi's functions and types ---------- */

void
audit_kind_cache_invalidate(Datum arg, int cacheid, uint32 hashvalue)
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
 * Is src the link symbol of a distance function: evector_<metric> over two
 * evectors, or its _query and _query_rev forms with an evector_query?
 */
static bool
is_distance_symbol(const char *src)
{
	static const char *const metrics[] = {
		"evector_l2_distance", "evector_cosine_distance",
		"evector_inner_product", "evector_negative_inner_product"
	};
	int			i;

	for (i = 0; i < lengthof(metrics); i++)
	{
		size_t		len = strlen(metrics[i]);

		if (strncmp(src, metrics[i], len) == 0 &&
			(src[len] == '\0' || strcmp(src + len, "_query") == 0 ||
			 strcmp(src + len, "_query_rev") == 0))
			return true;
	}
	return false;
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

				if (is_distance_symbol(src))
					kind = FK_DISTANCE;
				else if (strcmp(src, "vecphi_decrypt_vector") == 0 ||
						 strcmp(src, "vecphi_decrypt_text") == 0)
					kind = FK_DECRYPT;
				else if (strcmp(src, "evector_in") == 0 ||
						 strcmp(src, "etext_in") == 0)
					kind = FK_PROTECTED_INPUT;
				else if (strcmp(src, "evector_query_from_array") == 0)
					kind = FK_QUERY_CAST;
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
bool
audit_relation_is_protected(Oid relid)
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

/*
 * Can e be fingerprinted as a query vector: a constant or parameter, or
 * the implicit cast of one to evector_query (a generic plan keeps it)?
 */
static bool
query_arg_candidate(Expr * e)
{
	if (e == NULL)
		return false;
	if (IsA(e, FuncExpr) && func_kind(((FuncExpr *) e)->funcid) == FK_QUERY_CAST &&
		list_length(((FuncExpr *) e)->args) == 1)
		e = strip_relabel(linitial(((FuncExpr *) e)->args));
	return e != NULL && (IsA(e, Const) || IsA(e, Param));
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

				if (query_arg_candidate(b))
					cs->query_arg = b;
				else if (query_arg_candidate(a))
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

void
audit_stmt_search_calls(PlannedStmt * stmt, CallSearch *cs)
{
	ListCell   *lc;

	plan_search_calls(stmt->planTree, cs);
	foreach(lc, stmt->subplans)
		plan_search_calls(lfirst(lc), cs);
}


/* ---------- the identity column, added at plan time ---------- */

/* Primary key columns of a relation; 0 without a primary key. */
int
audit_primary_key_columns(Relation rel, AttrNumber * attnos)
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
	int			n = audit_primary_key_columns(rel, attnos);
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
					!audit_relation_is_protected(rte->relid))
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

PlannedStmt *
audit_planner(Query * parse, const char *query_string, int cursorOptions,
			  ParamListInfo boundParams)
{
	PlannedStmt *stmt;

	if (audit_prev_planner)
		stmt = audit_prev_planner(parse, query_string, cursorOptions, boundParams);
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
