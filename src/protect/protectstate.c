/*-------------------------------------------------------------------------
 *
 * protectstate.c
 *	  The security state of a protected table: what counts as code (owner
 *	  code that would run in claimants' sessions), and the guard and
 *	  owner-code items built from the catalogs.
 *
 * The model and who may change what: the top of protectddl.c and
 * docs/security.md ("Who may change a protected table").
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

static bool expr_has_code(Node * node, bool in_default);
static bool type_has_code(Oid typid, int depth);

/* True if the function belongs to the vecphi extension. */
bool
protect_func_is_vecphi(Oid funcid)
{
	Oid			ext = get_extension_oid("vecphi", true);

	return OidIsValid(ext) &&
		getExtensionOfObject(ProcedureRelationId, funcid) == ext;
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
	else if (p->provolatile != PROVOLATILE_VOLATILE && protect_func_is_vecphi(funcid))
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
bool
protect_rel_is_protected(Oid relid)
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

		if (func_is_harmless(funcid, false) || protect_func_is_vecphi(funcid))
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
					!protect_rel_is_protected(con->conrelid))
					add_item(code, psprintf("foreign key %s of table %s, with an ON DELETE or ON UPDATE action",
											NameStr(con->conname),
											get_rel_name(con->conrelid)));
				ReleaseSysCache(ctup);
			}
			continue;
		}
		if (qnull && protect_func_is_vecphi(tg->tgfoid))
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

		if (protect_rel_is_protected(child))
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

		if (!protect_rel_is_protected(parent))
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
void
protect_relation_state(Oid relid, bool for_protect, List **guard, List **code)
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
List *
protect_protected_states(void)
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
		protect_relation_state(st->relid, false, &st->guard, &st->code);
		states = lappend(states, st);
	}
	return states;
}

ProtectedState *
protect_find_state(List *states, Oid relid)
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
