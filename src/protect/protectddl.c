/*-------------------------------------------------------------------------
 *
 * protectddl.c
 *	  Owner code on protected tables: what counts, who may add it.
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
#include "report.h"

/* Nesting of vecphi's own DDL functions (protect, track_erasure). */
#define VECPHI_DDL_MAX_DEPTH	32
static Oid	vecphi_ddl_stack[VECPHI_DDL_MAX_DEPTH];
static int	vecphi_ddl_depth = 0;

static int	utility_slot;		/* of protectddl_ProcessUtility (hooks.h) */
static fmgr_hook_type prev_fmgr_hook = NULL;

/* The security state of one protected table. */
typedef struct ProtectedState
{
	Oid			relid;
	char	   *relname;
	List	   *guard;			/* char *: vecphi's protection */
	List	   *code;			/* char *: owner code */
} ProtectedState;

typedef struct ExprCheck
{
	bool		in_default;		/* column default: a few volatile built-ins */
	int			depth;
} ExprCheck;

PG_FUNCTION_INFO_V1(vecphi_protect_check);
PG_FUNCTION_INFO_V1(vecphi_owner_code);

static bool expr_has_code(Node * node, bool in_default);
static bool type_has_code(Oid typid, int depth);
static void relation_state(Oid relid, bool for_protect, List **guard, List **code);

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

/* True if the function belongs to the vecphi extension. */
static bool
func_is_vecphi(Oid funcid)
{
	Oid			ext = get_extension_oid("vecphi", true);

	return OidIsValid(ext) &&
		getExtensionOfObject(ProcedureRelationId, funcid) == ext;
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
				func_is_vecphi(funcid);
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

/*---------------------------------------------------------------------------
 * What counts as code
 *---------------------------------------------------------------------------
 */

/* Built-ins that run SQL given as text: a way to call anything. */
static bool
builtin_runs_sql(const char *name)
{
	static const char *const names[] = {
		"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
		"cursor_to_xml", "cursor_to_xmlschema",
		"table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema",
		"schema_to_xml", "schema_to_xmlschema", "schema_to_xml_and_xmlschema",
		"database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema",
		"ts_rewrite", "ts_stat",
	};

	for (int i = 0; i < lengthof(names); i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return false;
}

/* Volatile built-ins a column default may call: no channel, no input. */
static bool
builtin_default_ok(const char *name)
{
	static const char *const names[] = {
		"nextval", "clock_timestamp", "random", "gen_random_uuid", "timeofday",
	};

	for (int i = 0; i < lengthof(names); i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return false;
}

/*
 * May an expression call this function without anyone vouching for it?
 * Built-ins of pg_catalog that are immutable or stable (no side effects,
 * and none that runs SQL text); in a column default also nextval() and a
 * few clocks and random sources; vecphi's own functions unless volatile.
 * Nothing else: pg_notify, set_config, lo_*, setval, dblink and every
 * function a user wrote are code.
 */
static bool
func_is_harmless(Oid funcid, bool in_default)
{
	HeapTuple	tp;
	Form_pg_proc p;
	bool		ok = false;

	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tp))
		return false;
	p = (Form_pg_proc) GETSTRUCT(tp);
	if (p->pronamespace == PG_CATALOG_NAMESPACE)
	{
		if (builtin_runs_sql(NameStr(p->proname)))
			ok = false;
		else if (p->provolatile != PROVOLATILE_VOLATILE)
			ok = true;
		else
			ok = in_default && builtin_default_ok(NameStr(p->proname));
	}
	else if (p->provolatile != PROVOLATILE_VOLATILE && func_is_vecphi(funcid))
		ok = true;
	ReleaseSysCache(tp);
	return ok;
}

static bool
func_is_code_cb(Oid funcid, void *context)
{
	return !func_is_harmless(funcid, ((ExprCheck *) context)->in_default);
}

static bool
expr_has_code_walker(Node * node, void *context)
{
	ExprCheck  *cxt = (ExprCheck *) context;

	if (node == NULL)
		return false;
	if (IsA(node, SubLink) || IsA(node, Query))
		return true;
	if (check_functions_in_node(node, func_is_code_cb, context))
		return true;
	if (IsA(node, CoerceToDomain) &&
		type_has_code(((CoerceToDomain *) node)->resulttype, cxt->depth + 1))
		return true;
	return expression_tree_walker(node, expr_has_code_walker, context);
}

/* True if the expression calls anything but harmless functions. */
static bool
expr_has_code(Node * node, bool in_default)
{
	ExprCheck	cxt;

	cxt.in_default = in_default;
	cxt.depth = 0;
	fix_opfuncids(node);
	return expr_has_code_walker(node, &cxt);
}

/* The same, for a pg_node_tree value. */
static bool
tree_has_code(Datum tree, bool in_default)
{
	return expr_has_code((Node *) stringToNode(TextDatumGetCString(tree)), in_default);
}

/* Deparsed form of a pg_node_tree value, for messages and the state. */
static char *
tree_text(Datum tree, Oid relid)
{
	return TextDatumGetCString(DirectFunctionCall2(pg_get_expr, tree,
												   ObjectIdGetDatum(relid)));
}

/*
 * Check constraints and defaults of a domain (and of the domains, arrays,
 * composites and ranges it is made of) that run code.  Calls back for
 * each; returns true if any.
 */
typedef void (*type_code_cb) (Oid typid, const char *what, Datum tree, void *arg);

static bool
type_code_items(Oid typid, int depth, type_code_cb cb, void *arg)
{
	HeapTuple	tp;
	Form_pg_type t;
	bool		found = false;

	if (depth > 8)
		return false;
	tp = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	if (!HeapTupleIsValid(tp))
		return false;
	t = (Form_pg_type) GETSTRUCT(tp);

	if (t->typtype == TYPTYPE_DOMAIN)
	{
		Relation	conrel = table_open(ConstraintRelationId, AccessShareLock);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	ctup;
		bool		isnull;
		Datum		def;

		ScanKeyInit(&key, Anum_pg_constraint_contypid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(typid));
		scan = systable_beginscan(conrel, ConstraintTypidIndexId, true, NULL, 1, &key);
		while (HeapTupleIsValid(ctup = systable_getnext(scan)))
		{
			Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(ctup);
			Datum		bin;

			if (con->contype != CONSTRAINT_CHECK)
				continue;
			bin = heap_getattr(ctup, Anum_pg_constraint_conbin,
							   RelationGetDescr(conrel), &isnull);
			if (!isnull && tree_has_code(bin, false))
			{
				found = true;
				if (cb)
					cb(typid, NameStr(con->conname), bin, arg);
			}
		}
		systable_endscan(scan);
		table_close(conrel, AccessShareLock);

		def = SysCacheGetAttr(TYPEOID, tp, Anum_pg_type_typdefaultbin, &isnull);
		if (!isnull && tree_has_code(def, true))
		{
			found = true;
			if (cb)
				cb(typid, NULL, def, arg);
		}
		found |= type_code_items(t->typbasetype, depth + 1, cb, arg);
	}
	else if (IsTrueArrayType(t))
		found |= type_code_items(t->typelem, depth + 1, cb, arg);
	else if (t->typtype == TYPTYPE_COMPOSITE && OidIsValid(t->typrelid))
	{
		Relation	attrel = table_open(AttributeRelationId, AccessShareLock);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	atup;

		ScanKeyInit(&key, Anum_pg_attribute_attrelid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(t->typrelid));
		scan = systable_beginscan(attrel, AttributeRelidNumIndexId, true, NULL, 1, &key);
		while (HeapTupleIsValid(atup = systable_getnext(scan)))
		{
			Form_pg_attribute att = (Form_pg_attribute) GETSTRUCT(atup);

			if (att->attnum > 0 && !att->attisdropped)
				found |= type_code_items(att->atttypid, depth + 1, cb, arg);
		}
		systable_endscan(scan);
		table_close(attrel, AccessShareLock);
	}
	else if (t->typtype == TYPTYPE_RANGE)
		found |= type_code_items(get_range_subtype(typid), depth + 1, cb, arg);
	ReleaseSysCache(tp);
	return found;
}

static bool
type_has_code(Oid typid, int depth)
{
	return type_code_items(typid, depth, NULL, NULL);
}

/*---------------------------------------------------------------------------
 * The security state of a table
 *---------------------------------------------------------------------------
 */

/* True if the relation has vecphi's policy vecphi_select. */
static bool
rel_is_protected(Oid relid)
{
	Relation	polrel = table_open(PolicyRelationId, AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	bool		found;

	ScanKeyInit(&keys[0], Anum_pg_policy_polrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], Anum_pg_policy_polname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("vecphi_select"));
	scan = systable_beginscan(polrel, PolicyPolrelidPolnameIndexId, true, NULL, 2, keys);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(polrel, AccessShareLock);
	return found;
}

static bool
is_vecphi_policy_name(const char *name)
{
	return strcmp(name, "vecphi_base") == 0 || strcmp(name, "vecphi_select") == 0 ||
		strcmp(name, "vecphi_insert") == 0 || strcmp(name, "vecphi_update") == 0 ||
		strcmp(name, "vecphi_delete") == 0;
}

static void
add_item(List **items, char *item)
{
	ListCell   *lc;

	foreach(lc, *items)
		if (strcmp((char *) lfirst(lc), item) == 0)
		return;
	*items = lappend(*items, item);
}

/* A digest of everything that makes up a function's behaviour. */
static char *
function_item(Oid funcid)
{
	HeapTuple	tp;
	Form_pg_proc p;
	StringInfoData buf;
	char		hex[33];
	const char *errstr = NULL;
	bool		isnull;
	Datum		d;

	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tp))
		return psprintf("function %u (missing)", funcid);
	p = (Form_pg_proc) GETSTRUCT(tp);
	initStringInfo(&buf);
	appendStringInfo(&buf, "%u|%u|%c|%d|%d|%d|", p->proowner, p->prolang,
					 p->provolatile, p->prosecdef, p->proleakproof, p->proisstrict);
	d = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosrc, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(d));
	appendStringInfoChar(&buf, '|');
	d = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_probin, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(d));
	appendStringInfoChar(&buf, '|');
	d = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosqlbody, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(d));
	appendStringInfoChar(&buf, '|');
	d = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_proconfig, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, OidOutputFunctionCall(F_ARRAY_OUT, d));
	ReleaseSysCache(tp);
	if (!pg_md5_hash(buf.data, buf.len, hex, &errstr))
		elog(ERROR, "could not compute MD5: %s", errstr);
	hex[12] = '\0';
	return psprintf("function %s (definition %s)",
					format_procedure(funcid), hex);
}

/*
 * The functions an object depends on (directly, through operators, and
 * through SQL-standard function bodies) that are not harmless: each is an
 * owner-code item, so that replacing or altering it is a change.
 */
static void
add_function_items(Oid classid, Oid objid, List **code, int depth)
{
	Relation	deprel;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *funcs = NIL;
	ListCell   *lc;

	if (depth > 8)
		return;
	deprel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&keys[0], Anum_pg_depend_classid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(classid));
	ScanKeyInit(&keys[1], Anum_pg_depend_objid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(objid));
	scan = systable_beginscan(deprel, DependDependerIndexId, true, NULL, 2, keys);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);

		if (dep->refclassid == ProcedureRelationId)
			funcs = list_append_unique_oid(funcs, dep->refobjid);
		else if (dep->refclassid == OperatorRelationId)
		{
			RegProcedure code_fn = get_opcode(dep->refobjid);

			if (OidIsValid(code_fn))
				funcs = list_append_unique_oid(funcs, code_fn);
		}
	}
	systable_endscan(scan);
	table_close(deprel, AccessShareLock);

	foreach(lc, funcs)
	{
		Oid			funcid = lfirst_oid(lc);

		if (func_is_harmless(funcid, false) || func_is_vecphi(funcid))
			continue;
		add_item(code, function_item(funcid));
		add_function_items(ProcedureRelationId, funcid, code, depth + 1);
	}
}

/* Context of the domain callback: the column and where to put items. */
typedef struct ColumnCodeArg
{
	const char *attname;
	List	  **code;
} ColumnCodeArg;

static void
column_domain_cb(Oid typid, const char *what, Datum tree, void *arg)
{
	ColumnCodeArg *a = (ColumnCodeArg *) arg;
	Relation	conrel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	ctup;

	add_item(a->code, psprintf("column %s: domain %s %s%s: %s", a->attname,
							   format_type_be(typid),
							   what ? "check " : "default", what ? what : "",
							   tree_text(tree, InvalidOid)));
	/* the functions of the domain's constraints */
	conrel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_constraint_contypid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(typid));
	scan = systable_beginscan(conrel, ConstraintTypidIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(ctup = systable_getnext(scan)))
		add_function_items(ConstraintRelationId,
						   ((Form_pg_constraint) GETSTRUCT(ctup))->oid, a->code, 0);
	systable_endscan(scan);
	table_close(conrel, AccessShareLock);
	add_function_items(TypeRelationId, typid, a->code, 0);
}

/* Policies: vecphi's are guard items; others with code are owner code. */
static void
policy_state(Oid relid, List **guard, List **code)
{
	Relation	polrel = table_open(PolicyRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_pg_policy_polrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(polrel, PolicyPolrelidPolnameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_policy pol = (Form_pg_policy) GETSTRUCT(tup);
		bool		qnull,
					cnull,
					rnull;
		Datum		qual = heap_getattr(tup, Anum_pg_policy_polqual,
										RelationGetDescr(polrel), &qnull);
		Datum		check = heap_getattr(tup, Anum_pg_policy_polwithcheck,
										 RelationGetDescr(polrel), &cnull);
		Datum		roles = heap_getattr(tup, Anum_pg_policy_polroles,
										 RelationGetDescr(polrel), &rnull);
		char	   *desc;

		desc = psprintf("policy %s (%s, %c, roles %s) using %s with check %s",
						NameStr(pol->polname),
						pol->polpermissive ? "permissive" : "restrictive",
						pol->polcmd,
						rnull ? "-" : OidOutputFunctionCall(F_ARRAY_OUT, roles),
						qnull ? "-" : tree_text(qual, relid),
						cnull ? "-" : tree_text(check, relid));
		if (is_vecphi_policy_name(NameStr(pol->polname)))
			add_item(guard, desc);
		else if ((!qnull && tree_has_code(qual, false)) ||
				 (!cnull && tree_has_code(check, false)))
		{
			add_item(code, desc);
			add_function_items(PolicyRelationId, pol->oid, code, 0);
		}
	}
	systable_endscan(scan);
	table_close(polrel, AccessShareLock);
}

/*
 * Triggers: vecphi's (function of the extension, no WHEN) are guard
 * items; other user triggers are owner code.  Internal triggers are
 * PostgreSQL's; the foreign-key action triggers among them stand for a
 * referencing table whose triggers a claimant's DELETE or UPDATE would
 * fire, unless that table is protected too.
 */
static void
trigger_state(Oid relid, List **guard, List **code)
{
	Relation	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_pg_trigger_tgrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT(tup);
		bool		qnull;

		(void) heap_getattr(tup, Anum_pg_trigger_tgqual, RelationGetDescr(tgrel), &qnull);
		if (tg->tgisinternal)
		{
			HeapTuple	ctup;

			if (!OidIsValid(tg->tgconstraint))
				continue;
			ctup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(tg->tgconstraint));
			if (HeapTupleIsValid(ctup))
			{
				Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(ctup);

				if (con->contype == CONSTRAINT_FOREIGN && con->confrelid == relid &&
					con->conrelid != relid &&
					((con->confdeltype != FKCONSTR_ACTION_NOACTION &&
					  con->confdeltype != FKCONSTR_ACTION_RESTRICT) ||
					 (con->confupdtype != FKCONSTR_ACTION_NOACTION &&
					  con->confupdtype != FKCONSTR_ACTION_RESTRICT)) &&
					!rel_is_protected(con->conrelid))
					add_item(code, psprintf("foreign key %s of table %s, with an ON DELETE or ON UPDATE action",
											NameStr(con->conname),
											get_rel_name(con->conrelid)));
				ReleaseSysCache(ctup);
			}
			continue;
		}
		if (qnull && func_is_vecphi(tg->tgfoid))
			add_item(guard, psprintf("vecphi trigger %s executing %s (enabled %c)",
									 NameStr(tg->tgname), format_procedure(tg->tgfoid),
									 tg->tgenabled));
		else
		{
			add_item(code, psprintf("trigger %s executing %s (enabled %c%s)",
									NameStr(tg->tgname), format_procedure(tg->tgfoid),
									tg->tgenabled, qnull ? "" : ", with WHEN"));
			add_function_items(TriggerRelationId, tg->oid, code, 0);
		}
	}
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
}

/* Rules: all of them are owner code. */
static void
rule_state(Oid relid, List **code)
{
	Relation	rwrel = table_open(RewriteRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_pg_rewrite_ev_class, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rwrel, RewriteRelRulenameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_rewrite rw = (Form_pg_rewrite) GETSTRUCT(tup);

		add_item(code, psprintf("rule %s (enabled %c)", NameStr(rw->rulename),
								rw->ev_enabled));
		add_function_items(RewriteRelationId, rw->oid, code, 0);
	}
	systable_endscan(scan);
	table_close(rwrel, AccessShareLock);
}

/* Column defaults, generated columns and the domains of column types. */
static void
column_state(Oid relid, List **code)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	rel = table_open(AttrDefaultRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_attrdef_adrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, AttrDefaultIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_attrdef ad = (Form_pg_attrdef) GETSTRUCT(tup);
		bool		isnull;
		Datum		bin = heap_getattr(tup, Anum_pg_attrdef_adbin,
									   RelationGetDescr(rel), &isnull);
		bool		generated = get_attgenerated(relid, ad->adnum) != '\0';

		if (isnull || !tree_has_code(bin, !generated))
			continue;
		add_item(code, psprintf("%s column %s: %s",
								generated ? "generated" : "default of",
								get_attname(relid, ad->adnum, false),
								tree_text(bin, relid)));
		add_function_items(AttrDefaultRelationId, ad->oid, code, 0);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	rel = table_open(AttributeRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_attribute_attrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, AttributeRelidNumIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_attribute att = (Form_pg_attribute) GETSTRUCT(tup);
		ColumnCodeArg arg;

		if (att->attnum <= 0 || att->attisdropped)
			continue;
		arg.attname = pstrdup(NameStr(att->attname));
		arg.code = code;
		(void) type_code_items(att->atttypid, 0, column_domain_cb, &arg);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/* Check constraints with code. */
static void
constraint_state(Oid relid, List **code)
{
	Relation	conrel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_pg_constraint_conrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(conrel, ConstraintRelidTypidNameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tup);
		bool		isnull;
		Datum		bin;

		if (con->contype != CONSTRAINT_CHECK)
			continue;
		bin = heap_getattr(tup, Anum_pg_constraint_conbin, RelationGetDescr(conrel), &isnull);
		if (isnull || !tree_has_code(bin, false))
			continue;
		add_item(code, psprintf("check constraint %s: %s", NameStr(con->conname),
								tree_text(bin, relid)));
		add_function_items(ConstraintRelationId, con->oid, code, 0);
	}
	systable_endscan(scan);
	table_close(conrel, AccessShareLock);
}

/* Indexes whose expressions or predicate run code (read from pg_index). */
static void
index_state(Oid relid, List **code)
{
	Relation	idxrel = table_open(IndexRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_pg_index_indrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(idxrel, IndexIndrelidIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_index idx = (Form_pg_index) GETSTRUCT(tup);
		bool		enull,
					pnull;
		Datum		exprs = heap_getattr(tup, Anum_pg_index_indexprs,
										 RelationGetDescr(idxrel), &enull);
		Datum		pred = heap_getattr(tup, Anum_pg_index_indpred,
										RelationGetDescr(idxrel), &pnull);

		if ((enull || !tree_has_code(exprs, false)) &&
			(pnull || !tree_has_code(pred, false)))
			continue;
		add_item(code, psprintf("index %s%s%s%s%s", get_rel_name(idx->indexrelid),
								enull ? "" : ": expressions ",
								enull ? "" : tree_text(exprs, relid),
								pnull ? "" : ", predicate ",
								pnull ? "" : tree_text(pred, relid)));
		add_function_items(RelationRelationId, idx->indexrelid, code, 0);
	}
	systable_endscan(scan);
	table_close(idxrel, AccessShareLock);
}

/*
 * Tables that inherit from this one (partitions included) and are not
 * protected themselves: a claimant's rows routed there, or an UPDATE or
 * DELETE through the parent, run their triggers.  protect() protects
 * partitions, so it leaves those out (for_protect).
 */
static void
inheritor_state(Oid relid, bool for_protect, List **code)
{
	Relation	inhrel = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_pg_inherits_inhparent, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(inhrel, InheritsParentIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Oid			child = ((Form_pg_inherits) GETSTRUCT(tup))->inhrelid;

		if (rel_is_protected(child))
			continue;
		if (for_protect && get_rel_relispartition(child))
			continue;
		add_item(code, psprintf("%s %s, not protected",
								get_rel_relispartition(child) ? "partition" : "inheriting table",
								get_rel_name(child)));
	}
	systable_endscan(scan);
	table_close(inhrel, AccessShareLock);
}

/*
 * Unprotected tables this one inherits from (or is a partition of): a
 * query through such a parent reads this table's rows without this
 * table's policies.  Protected parents apply vecphi's policies themselves.
 */
static void
parent_state(Oid relid, List **guard)
{
	Relation	inhrel = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_pg_inherits_inhrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(inhrel, InheritsRelidSeqnoIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Oid			parent = ((Form_pg_inherits) GETSTRUCT(tup))->inhparent;

		if (!rel_is_protected(parent))
			add_item(guard, psprintf("inherits from unprotected table %s",
									 get_rel_name(parent)));
	}
	systable_endscan(scan);
	table_close(inhrel, AccessShareLock);
}

static void relation_state_items(Oid relid, bool for_protect, List **guard,
								 List **code);

/*
 * The guard and owner-code items of one table.  Expressions and type names
 * are deparsed under a pinned search_path: how they print depends on which
 * objects are visible, and a domain planted in pg_temp (or dropped) must
 * not make the same policy look changed.
 */
static void
relation_state(Oid relid, bool for_protect, List **guard, List **code)
{
	int			guc_level = NewGUCNestLevel();

	(void) set_config_option("search_path", PRIVSQL_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	relation_state_items(relid, for_protect, guard, code);
	AtEOXact_GUC(false, guc_level);
}

static void
relation_state_items(Oid relid, bool for_protect, List **guard, List **code)
{
	HeapTuple	tp;
	Form_pg_class cls;

	*guard = NIL;
	*code = NIL;
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		return;
	cls = (Form_pg_class) GETSTRUCT(tp);
	add_item(guard, psprintf("table %s.%s", get_namespace_name(cls->relnamespace),
							 NameStr(cls->relname)));
	add_item(guard, psprintf("owner %s", GetUserNameFromId(cls->relowner, true)));
	add_item(guard, psprintf("row level security %s, %s",
							 cls->relrowsecurity ? "enabled" : "disabled",
							 cls->relforcerowsecurity ? "forced" : "not forced"));
	/* protect() sets it so that VACUUM erases ehnsw elements too */
	{
		bool		isnull;
		Datum		opts = SysCacheGetAttr(RELOID, tp, Anum_pg_class_reloptions, &isnull);
		const char *cleanup = "unset";

		if (!isnull)
		{
			Datum	   *elems;
			int			n;

			deconstruct_array(DatumGetArrayTypeP(opts), TEXTOID, -1, false,
							  TYPALIGN_INT, &elems, NULL, &n);
			for (int i = 0; i < n; i++)
			{
				char	   *opt = TextDatumGetCString(elems[i]);

				if (strncmp(opt, "vacuum_index_cleanup=", 21) == 0)
					cleanup = opt + 21;
			}
		}
		add_item(guard, psprintf("vacuum_index_cleanup %s", cleanup));
	}
	ReleaseSysCache(tp);

	policy_state(relid, guard, code);
	trigger_state(relid, guard, code);
	rule_state(relid, code);
	column_state(relid, code);
	constraint_state(relid, code);
	index_state(relid, code);
	inheritor_state(relid, for_protect, code);
	parent_state(relid, guard);
}

/* Every protected table of the database, with its state. */
static List *
protected_states(void)
{
	Relation	polrel = table_open(PolicyRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *relids = NIL;
	List	   *states = NIL;
	ListCell   *lc;

	ScanKeyInit(&key, Anum_pg_policy_polname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("vecphi_select"));
	scan = systable_beginscan(polrel, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
		relids = list_append_unique_oid(relids, ((Form_pg_policy) GETSTRUCT(tup))->polrelid);
	systable_endscan(scan);
	table_close(polrel, AccessShareLock);

	foreach(lc, relids)
	{
		ProtectedState *st = palloc0(sizeof(ProtectedState));

		st->relid = lfirst_oid(lc);
		st->relname = get_rel_name(st->relid);
		relation_state(st->relid, false, &st->guard, &st->code);
		states = lappend(states, st);
	}
	return states;
}

static ProtectedState *
find_state(List *states, Oid relid)
{
	ListCell   *lc;

	foreach(lc, states)
	{
		ProtectedState *st = lfirst(lc);

		if (st->relid == relid)
			return st;
	}
	return NULL;
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
		ProtectedState *pre = find_state(before, post->relid);
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

		if (find_state(after, pre->relid) != NULL ||
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
	if (!OidIsValid(relid) || !rel_is_protected(relid))
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
		before = protected_states();
	}

	utility_next(utility_slot, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);

	if (check && IsTransactionState())
	{
		CommandCounterIncrement();
		judge_changes(before, protected_states(), GetCommandTagName(CreateCommandTag(stmt)));
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

		if (rel_is_protected(child))
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
		relation_state(child, true, &guard, &code);
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
	relation_state(relid, false, &guard, &code);
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
