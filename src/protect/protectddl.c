/*-------------------------------------------------------------------------
 *
 * protectddl.c
 *	  Owner code on protected tables: what counts, who may add it.  This
 *	  file: the DDL hook that judges changes, and protect_check(); the
 *	  state of a table is built in protectstate.c.
 *
 * Claims live in the backend, not in a role, so any code that runs in a
 * claimant's session while its claims are in force can decrypt what the
 * claimant can - whoever wrote that code.  The owner of a protected table
 * holds no claims, but could otherwise plant such code: a trigger, a rule,
 * a policy, a column default or generated expression, a check or domain
 * constraint, an index expression, a partition or inheriting table with
 * triggers of its own, a foreign key whose ON DELETE/UPDATE action fires
 * triggers on another table, or a new body for a function any of these
 * call.  It could also take vecphi's row-level security off.
 *
 * The model: a protected table (one with vecphi's policy vecphi_select)
 * has a "security state", a list of items built from the catalogs:
 *
 *	- guard items, vecphi's own protection: the table's name and owner, its
 *	  row-level security flags, vecphi's five policies (expressions, roles),
 *	  vecphi's triggers (functions of the extension) and their state;
 *	- owner-code items: every object whose code is not vecphi's or a
 *	  harmless built-in (see expr_has_code()), and every function such an
 *	  object calls, with a digest of its definition.
 *
 * The ProcessUtility hook takes the state of every protected table before
 * and after each DDL statement that could change it.  Unless the current
 * user is a superuser or a member of vecphi_security_officer, a statement
 * that adds or changes any item, or removes a guard item of a table that
 * still exists, is refused (42501, audited as a denial) and rolled back;
 * removing owner code is allowed.  The officer's changes are audited as
 * "protected_ddl" events.  vecphi's own DDL functions (protect(),
 * track_erasure()) are let through while they run: fmgr_hook counts them,
 * and they run no code but vecphi's and the catalog's.
 *
 * vecphi.protect() calls vecphi.protect_check() first, which refuses a
 * table that already has owner code (naming it) unless the caller is the
 * officer, who vouches for it (audited), and refuses a protect() that
 * would stop restricting by a column the current protection uses.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_attrdef.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_policy.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_rewrite.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/md5.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "audit.h"
#include "hooks.h"
#include "privsql.h"
#include "protectddl.h"
#include "protectint.h"
#include "report.h"

/* Nesting of vecphi's own DDL functions (protect, track_erasure). */
#define VECPHI_DDL_MAX_DEPTH	32
static Oid	vecphi_ddl_stack[VECPHI_DDL_MAX_DEPTH];
static int	vecphi_ddl_depth = 0;

static int	utility_slot;		/* of protectddl_ProcessUtility (hooks.h) */
static fmgr_hook_type prev_fmgr_hook = NULL;

PG_FUNCTION_INFO_V1(vecphi_protect_check);
PG_FUNCTION_INFO_V1(vecphi_owner_code);


/* True for a superuser or a member of vecphi_security_officer. */
static bool
is_security_officer(void)
{
	Oid			officer;

	if (superuser())
		return true;
	officer = get_role_oid("vecphi_security_officer", true);
	return OidIsValid(officer) && has_privs_of_role(GetUserId(), officer);
}

/* True for vecphi.protect() and vecphi.track_erasure(). */
static bool
is_vecphi_ddl_function(Oid funcid)
{
	HeapTuple	tp;
	bool		result = false;

	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tp))
		return false;
	{
		Form_pg_proc p = (Form_pg_proc) GETSTRUCT(tp);
		const char *name = NameStr(p->proname);

		if (strcmp(name, "protect") == 0 || strcmp(name, "track_erasure") == 0)
		{
			char	   *nsp = get_namespace_name(p->pronamespace);

			result = nsp != NULL && strcmp(nsp, "vecphi") == 0 &&
				protect_func_is_vecphi(funcid);
		}
	}
	ReleaseSysCache(tp);
	return result;
}

/*
 * fmgr_hook: count vecphi's DDL functions while they run.  Both have a SET
 * clause, so PostgreSQL calls them through fmgr_security_definer(), which
 * calls this hook on entry, exit and error.  The exit and error events
 * compare OIDs only: no catalog access in an aborting transaction.
 */
static void
protectddl_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *private)
{
	if (prev_fmgr_hook)
		(*prev_fmgr_hook) (event, flinfo, private);

	if (event == FHET_START)
	{
		if (IsTransactionState() && is_vecphi_ddl_function(flinfo->fn_oid))
		{
			if (vecphi_ddl_depth >= VECPHI_DDL_MAX_DEPTH)
				elog(ERROR, "vecphi DDL functions nested too deeply");
			vecphi_ddl_stack[vecphi_ddl_depth++] = flinfo->fn_oid;
		}
	}
	else if (vecphi_ddl_depth > 0 &&
			 vecphi_ddl_stack[vecphi_ddl_depth - 1] == flinfo->fn_oid)
		vecphi_ddl_depth--;
}

/* Reset the nesting count at the end of every transaction. */
static void
protectddl_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT)
		vecphi_ddl_depth = 0;
}


static bool
list_has_string(List *list, const char *s)
{
	ListCell   *lc;

	foreach(lc, list)
		if (strcmp((char *) lfirst(lc), s) == 0)
		return true;
	return false;
}

/* Append to buf each item of a that is not in b, as "<verb> <item>". */
static void
describe_missing(StringInfo buf, List *a, List *b, const char *verb)
{
	ListCell   *lc;

	foreach(lc, a)
	{
		char	   *item = lfirst(lc);

		if (b != NIL && list_has_string(b, item))
			continue;
		if (buf->len > 0)
			appendStringInfoString(buf, "; ");
		appendStringInfo(buf, "%s %s", verb, item);
	}
}

/*
 * Compare the states before and after a statement; refuse it (or, for the
 * officer, record it) when it added or changed code or vecphi's protection.
 */
static void
judge_changes(List *before, List *after, const char *command)
{
	ListCell   *lc;
	bool		officer = is_security_officer();

	foreach(lc, after)
	{
		ProtectedState *post = lfirst(lc);
		ProtectedState *pre = protect_find_state(before, post->relid);
		StringInfoData buf;

		initStringInfo(&buf);
		if (pre == NULL)
			appendStringInfoString(&buf, "make it a protected table outside vecphi.protect()");
		else
		{
			describe_missing(&buf, post->guard, pre->guard, "add");
			describe_missing(&buf, post->code, pre->code, "add");
			describe_missing(&buf, pre->guard, post->guard, "remove");
		}
		if (buf.len == 0)
			continue;
		if (officer)
		{
			AuditEvent	ev;

			memset(&ev, 0, sizeof(ev));
			ev.action = AUDIT_ACTION_PROTECTED_DDL;
			ev.outcome = AUDIT_OUTCOME_OK;
			ev.relid = post->relid;
			ev.rows = -1;
			ev.detail = psprintf("%s: %s", command, buf.data);
			audit_emit(&ev, true);
			continue;
		}
		{
			char	   *msg = psprintf("permission denied to change protected table \"%s\"",
									   pre ? pre->relname : post->relname);

			vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, msg, buf.data,
						errdetail("%s would %s.", command, buf.data),
						errhint("Code that runs in claimants' sessions on a protected table, and vecphi's row-level security, are changed only by a member of vecphi_security_officer or a superuser; see docs/security.md."));
		}
	}

	/* A table that was protected and still exists must still be. */
	foreach(lc, before)
	{
		ProtectedState *pre = lfirst(lc);
		StringInfoData buf;
		char	   *msg;

		if (protect_find_state(after, pre->relid) != NULL ||
			!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(pre->relid)))
			continue;
		initStringInfo(&buf);
		appendStringInfoString(&buf, "take vecphi's protection off (its policy vecphi_select)");
		if (officer)
		{
			AuditEvent	ev;

			memset(&ev, 0, sizeof(ev));
			ev.action = AUDIT_ACTION_PROTECTED_DDL;
			ev.outcome = AUDIT_OUTCOME_OK;
			ev.relid = pre->relid;
			ev.rows = -1;
			ev.detail = psprintf("%s: %s", command, buf.data);
			audit_emit(&ev, true);
			continue;
		}
		msg = psprintf("permission denied to change protected table \"%s\"", pre->relname);
		vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, msg, buf.data,
					errdetail("%s would %s.", command, buf.data),
					errhint("Code that runs in claimants' sessions on a protected table, and vecphi's row-level security, are changed only by a member of vecphi_security_officer or a superuser; see docs/security.md."));
	}
}

/* Statements that can change the state of a protected table. */
static bool
may_change_protection(Node * stmt)
{
	switch (nodeTag(stmt))
	{
		case T_CreateFunctionStmt:
			return ((CreateFunctionStmt *) stmt)->replace;
		case T_RenameStmt:
			/* a role's new name is no change to any table */
			return ((RenameStmt *) stmt)->renameType != OBJECT_ROLE &&
				((RenameStmt *) stmt)->renameType != OBJECT_DATABASE &&
				((RenameStmt *) stmt)->renameType != OBJECT_TABLESPACE;
		case T_AlterTableStmt:
		case T_AlterTableMoveAllStmt:
		case T_CreateTrigStmt:
		case T_RuleStmt:
		case T_CreatePolicyStmt:
		case T_AlterPolicyStmt:
		case T_DropStmt:
		case T_IndexStmt:
		case T_AlterDomainStmt:
		case T_AlterFunctionStmt:
		case T_AlterObjectSchemaStmt:
		case T_AlterOwnerStmt:
		case T_CreateStmt:
		case T_CreateForeignTableStmt:
		case T_AlterOperatorStmt:
		case T_ReassignOwnedStmt:
		case T_DropOwnedStmt:
		case T_AlterTypeStmt:
		case T_AlterExtensionContentsStmt:
			return true;
		default:
			return false;
	}
}

/*
 * CREATE INDEX CONCURRENTLY commits before it ends, so a refusal after it
 * could not undo it: refuse an index with expressions or a predicate on a
 * protected table up front.
 */
static void
check_concurrent_index(IndexStmt * stmt)
{
	Oid			relid;
	ListCell   *lc;
	bool		has_expr = stmt->whereClause != NULL;
	char	   *msg;

	if (!stmt->concurrent)
		return;
	foreach(lc, stmt->indexParams)
		has_expr |= ((IndexElem *) lfirst(lc))->expr != NULL;
	if (!has_expr)
		return;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!OidIsValid(relid) || !protect_rel_is_protected(relid))
		return;
	msg = psprintf("permission denied to change protected table \"%s\"", get_rel_name(relid));
	vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, msg, "CREATE INDEX CONCURRENTLY with expressions or a predicate",
				errdetail("An index with expressions or a predicate may run code in claimants' sessions."),
				errhint("Have a member of vecphi_security_officer create it; see docs/security.md."));
}

static void
protectddl_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
						  bool readOnlyTree, ProcessUtilityContext context,
						  ParamListInfo params, QueryEnvironment * queryEnv,
						  DestReceiver *dest, QueryCompletion * qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		check;
	List	   *before = NIL;

	check = vecphi_ddl_depth == 0 && !creating_extension && !IsBinaryUpgrade &&
		IsTransactionState() && OidIsValid(MyDatabaseId) &&
		may_change_protection(stmt) &&
		OidIsValid(get_extension_oid("vecphi", true));
	if (check)
	{
		if (IsA(stmt, IndexStmt) && !is_security_officer())
			check_concurrent_index((IndexStmt *) stmt);
		before = protect_protected_states();
	}

	utility_next(utility_slot, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);

	if (check && IsTransactionState())
	{
		CommandCounterIncrement();
		judge_changes(before, protect_protected_states(), GetCommandTagName(CreateCommandTag(stmt)));
	}
}

/*---------------------------------------------------------------------------
 * SQL functions
 *---------------------------------------------------------------------------
 */

/* Collect the attribute numbers of the outer query's Vars, not Query's. */
static bool
policy_columns_walker(Node * node, void *context)
{
	Bitmapset **cols = (Bitmapset * *) context;

	if (node == NULL || IsA(node, Query))
		return false;
	if (IsA(node, Var))
	{
		Var		   *var = (Var *) node;

		if (var->varlevelsup == 0 && var->varattno > 0)
			*cols = bms_add_member(*cols, var->varattno);
		return false;
	}
	return expression_tree_walker(node, policy_columns_walker, context);
}

/* Columns a vecphi_select policy restricts by (attribute numbers). */
static Bitmapset *
policy_columns(Oid relid)
{
	Relation	polrel = table_open(PolicyRelationId, AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	Bitmapset  *cols = NULL;

	ScanKeyInit(&keys[0], Anum_pg_policy_polrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], Anum_pg_policy_polname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("vecphi_select"));
	scan = systable_beginscan(polrel, PolicyPolrelidPolnameIndexId, true, NULL, 2, keys);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		qual = heap_getattr(tup, Anum_pg_policy_polqual,
										RelationGetDescr(polrel), &isnull);

		if (!isnull)
			(void) policy_columns_walker((Node *) stringToNode(TextDatumGetCString(qual)),
										 &cols);
	}
	systable_endscan(scan);
	table_close(polrel, AccessShareLock);
	return cols;
}

/*
 * vecphi.protect_check(tbl, tenant_column, category_column): run by
 * protect() before it changes anything.  Locks the table and everything
 * that inherits from it against concurrent DDL, then refuses (42501) when
 * a table not yet protected has owner code, or when protect() would stop
 * restricting by a column the current protection uses - unless the caller
 * is the security officer, whose vouching for owner code is audited.
 */
Datum
vecphi_protect_check(PG_FUNCTION_ARGS)
{
	Oid			relid;
	List	   *rels;
	ListCell   *lc;
	bool		officer = is_security_officer();
	StringInfoData found;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_VOID();
	relid = PG_GETARG_OID(0);
	/* protect() changes the table: its owner's business first of all */
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
	rels = find_all_inheritors(relid, ShareUpdateExclusiveLock, NULL);
	initStringInfo(&found);
	foreach(lc, rels)
	{
		Oid			child = lfirst_oid(lc);
		List	   *guard,
				   *code;
		ListCell   *ic;

		if (protect_rel_is_protected(child))
		{
			/* already protected: its code was approved; check weakening */
			Bitmapset  *old_cols = policy_columns(child);
			Bitmapset  *new_cols = NULL;
			AttrNumber	att;
			int			i;

			att = get_attnum(child, NameStr(*PG_GETARG_NAME(1)));
			if (att > 0)
				new_cols = bms_add_member(new_cols, att);
			if (!PG_ARGISNULL(2))
			{
				att = get_attnum(child, NameStr(*PG_GETARG_NAME(2)));
				if (att > 0)
					new_cols = bms_add_member(new_cols, att);
			}
			i = -1;
			while ((i = bms_next_member(old_cols, i)) >= 0)
			{
				char	   *msg;
				char	   *detail;

				if (bms_is_member(i, new_cols) || officer)
					continue;
				msg = psprintf("permission denied to weaken the protection of table \"%s\"",
							   get_rel_name(child));
				detail = psprintf("Its rows are restricted by column \"%s\", which vecphi.protect() would no longer use.",
								  get_attname(child, i, false));
				vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, msg, detail,
							errdetail("%s", detail),
							errhint("Only a member of vecphi_security_officer or a superuser may loosen a table's protection."));
			}
			continue;
		}
		protect_relation_state(child, true, &guard, &code);
		foreach(ic, code)
		{
			if (found.len > 0)
				appendStringInfoString(&found, "; ");
			appendStringInfo(&found, "%s: %s", get_rel_name(child), (char *) lfirst(ic));
		}
	}
	if (found.len > 0)
	{
		if (officer)
		{
			AuditEvent	ev;

			memset(&ev, 0, sizeof(ev));
			ev.action = AUDIT_ACTION_PROTECTED_DDL;
			ev.outcome = AUDIT_OUTCOME_OK;
			ev.relid = relid;
			ev.rows = -1;
			ev.detail = psprintf("protect() vouching for %s", found.data);
			audit_emit(&ev, true);
		}
		else
		{
			char	   *msg = psprintf("table \"%s\" has code that would run in claimants' sessions",
									   get_rel_name(relid));

			vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, msg, found.data,
						errdetail("Found %s.", found.data),
						errhint("Remove it, or have a member of vecphi_security_officer call vecphi.protect(), vouching for it; see docs/security.md."));
		}
	}
	PG_RETURN_VOID();
}

/*
 * vecphi.owner_code(tbl): the owner-code items of a table, as protect()
 * and the DDL checks see them (for the security officer's review).
 */
Datum
vecphi_owner_code(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	List	   *guard,
			   *code;
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;

	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	protect_relation_state(relid, false, &guard, &code);
	elems = palloc(sizeof(Datum) * (list_length(code) + 1));
	foreach(lc, code)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

void
protectddl_init(void)
{
	utility_slot = utility_register(protectddl_ProcessUtility);
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = protectddl_fmgr_hook;
	RegisterXactCallback(protectddl_xact_callback, NULL);
}
