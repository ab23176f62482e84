/*-------------------------------------------------------------------------
 *
 * bindingcatalog.c
 *	  The catalog of ciphertext binding: vecphi.protected_tables, its
 *	  writes (vecphi.register_binding(), called by protect()), and the
 *	  utility hook that keeps a column's label across RENAME COLUMN.
 *	  binding.c holds the design and the checks.
 *
 * Reads are plain heap scans in C (no SQL, no permission check): the
 * trigger and the policy function need them for every query.  Writes run
 * as the extension owner through SPI, every name schema-qualified, every
 * operator OPERATOR(pg_catalog.x), every value a typed parameter.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/parallel.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "audit.h"
#include "binding.h"
#include "bindingint.h"
#include "ciphertypes.h"
#include "claims.h"
#include "crypto.h"
#include "envelope.h"
#include "hooks.h"
#include "privsql.h"


#define BINDING_CATALOG		"protected_tables"
#define Natts_protected_tables	5
#define Anum_pt_relid		1
#define Anum_pt_label		2
#define Anum_pt_colnames	3
#define Anum_pt_collabels	4

static int	utility_slot;		/* of binding_ProcessUtility (hooks.h) */

/* Make room for n columns in an entry's name and label arrays. */
static void
entry_grow(BindingEntry *entry, int n)
{
	char	  **names = palloc0(sizeof(char *) * Max(n, 1));
	char	  **labels = palloc0(sizeof(char *) * Max(n, 1));

	for (int i = 0; i < entry->nnames; i++)
	{
		names[i] = entry->names[i];
		labels[i] = entry->labels[i];
	}
	entry->names = names;
	entry->labels = labels;
}

/* OID of vecphi.protected_tables, or InvalidOid without the extension. */
static Oid
catalog_relid(void)
{
	Oid			nsp;

	if (!OidIsValid(get_extension_oid("vecphi", true)))
		return InvalidOid;
	nsp = get_namespace_oid("vecphi", true);
	if (!OidIsValid(nsp))
		return InvalidOid;
	return get_relname_relid(BINDING_CATALOG, nsp);
}

/* Read the catalog row of exactly relid; false when it has none. */
static bool
catalog_read(Oid catid, Oid relid, BindingEntry *entry)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;
	Snapshot	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();

	rel = table_open(catid, AccessShareLock);
	ScanKeyInit(&key, Anum_pt_relid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, snapshot, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		Datum		d;
		Datum	   *names;
		Datum	   *labels;
		int			nlabels;
		int			i;

		found = true;
		entry->relid = relid;
		d = heap_getattr(tuple, Anum_pt_label, desc, &isnull);
		entry->label = TextDatumGetCString(d);
		d = heap_getattr(tuple, Anum_pt_colnames, desc, &isnull);
		deconstruct_array(DatumGetArrayTypeP(d), NAMEOID, NAMEDATALEN, false,
						  TYPALIGN_CHAR, &names, NULL, &entry->nnames);
		d = heap_getattr(tuple, Anum_pt_collabels, desc, &isnull);
		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false,
						  TYPALIGN_INT, &labels, NULL, &nlabels);
		if (nlabels != entry->nnames)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("vecphi.protected_tables row of relation %u is damaged", relid),
					 errdetail("It lists %d columns and %d column labels.",
							   entry->nnames, nlabels)));
		entry->names = palloc(sizeof(char *) * Max(entry->nnames, 1));
		entry->labels = palloc(sizeof(char *) * Max(entry->nnames, 1));
		for (i = 0; i < entry->nnames; i++)
		{
			entry->names[i] = pstrdup(NameStr(*DatumGetName(names[i])));
			entry->labels[i] = TextDatumGetCString(labels[i]);
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The binding entry that governs relid: that of its top-most registered
 * ancestor (a partition's values are bound to the partitioned table), or
 * its own.  False when neither is registered.
 */
bool
binding_lookup(Oid relid, BindingEntry *entry)
{
	Oid			catid = catalog_relid();
	List	   *ancestors = NIL;

	if (!OidIsValid(catid))
		return false;
	if (get_rel_relispartition(relid))
		ancestors = get_partition_ancestors(relid);
	/* get_partition_ancestors lists the parent first, the root last. */
	for (int i = list_length(ancestors) - 1; i >= 0; i--)
		if (catalog_read(catid, list_nth_oid(ancestors, i), entry))
			return true;
	return catalog_read(catid, relid, entry);
}

/* "schema.name" of a relation, for labels and messages. */
char *
binding_relname(Oid relid)
{
	return psprintf("%s.%s", get_namespace_name(get_rel_namespace(relid)),
					get_rel_name(relid));
}

/* The extension owner, who owns vecphi.protected_tables. */
static Oid
extension_owner(void)
{
	Oid			owner = InvalidOid;

	(void) vecphi_extension_row(NULL, &owner, false);
	return owner;
}

/*
 * Run one statement on vecphi.protected_tables as the extension owner.
 * Every name in sql is schema-qualified and every operator is written
 * OPERATOR(pg_catalog.x), so the caller's search_path cannot reach it.
 */
static void
catalog_exec(const char *sql, int nargs, Oid *types, Datum *values)
{
	PrivSql		ps;
	int			rc;

	privsql_begin(&ps, extension_owner());
	rc = privsql_execute(&ps, sql, nargs, types, values, false, 0);
	if (rc < 0)
		elog(ERROR, "vecphi: could not write vecphi.protected_tables: %s",
			 SPI_result_code_string(rc));
	privsql_end(&ps);
}

/* Write an entry's column names and labels back. */
static void
catalog_write_columns(BindingEntry *entry, bool insert)
{
	Datum	   *names = palloc(sizeof(Datum) * Max(entry->nnames, 1));
	Datum	   *labels = palloc(sizeof(Datum) * Max(entry->nnames, 1));
	Oid			types[4] = {REGCLASSOID, TEXTOID, NAMEARRAYOID, TEXTARRAYOID};
	Datum		values[4];

	for (int i = 0; i < entry->nnames; i++)
	{
		Name		n = palloc0(NAMEDATALEN);

		namestrcpy(n, entry->names[i]);
		names[i] = NameGetDatum(n);
		labels[i] = CStringGetTextDatum(entry->labels[i]);
	}
	values[0] = ObjectIdGetDatum(entry->relid);
	values[1] = CStringGetTextDatum(entry->label);
	values[2] = PointerGetDatum(construct_array(names, entry->nnames, NAMEOID,
												NAMEDATALEN, false, TYPALIGN_CHAR));
	values[3] = PointerGetDatum(construct_array(labels, entry->nnames, TEXTOID,
												-1, false, TYPALIGN_INT));
	if (insert)
		catalog_exec("INSERT INTO vecphi.protected_tables "
					 "(relid, binding_label, column_names, column_labels) "
					 "VALUES ($1, $2, $3, $4)", 4, types, values);
	else
		catalog_exec("UPDATE vecphi.protected_tables "
					 "SET column_names = $3, column_labels = $4 "
					 "WHERE relid OPERATOR(pg_catalog.=) $1 "
					 "AND binding_label OPERATOR(pg_catalog.=) $2", 4, types, values);
	CommandCounterIncrement();
}

/*
 * The work of vecphi.register_binding(tbl, label) (binding.c): registers
 * the table's binding label (its qualified name unless wanted names
 * another; a label of one's choosing needs the security officer) and its
 * ciphertext columns.  A label never changes once set.  Returns the label;
 * *registered says whether the table was registered just now.
 */
char *
binding_register(Oid relid, const char *wanted, bool *registered)
{
	Oid			catid = catalog_relid();
	BindingEntry entry;
	bool		exists;
	Oid			evector;
	Oid			etext;
	Relation	rel;
	TupleDesc	desc;
	int			before;

	if (!OidIsValid(catid))
		elog(ERROR, "vecphi.protected_tables is missing");
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
	if (wanted != NULL && wanted[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("binding label must not be empty")));

	exists = catalog_read(catid, relid, &entry);
	if (exists)
	{
		if (wanted != NULL && strcmp(wanted, entry.label) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table %s is already bound under label \"%s\"",
							binding_relname(relid), entry.label),
					 errdetail("A binding label never changes: the values already written are sealed under it.")));
	}
	else
	{
		char	   *deflabel = binding_relname(relid);
		Oid			types[1] = {TEXTOID};
		Datum		values[1];

		if (wanted != NULL && strcmp(wanted, deflabel) != 0 && !superuser() &&
			!has_privs_of_role(GetUserId(), get_role_oid("vecphi_security_officer", false)))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to choose the binding label of table %s", deflabel),
					 errdetail("Only a member of vecphi_security_officer may bind a table under a label other than its name (for a logical replication subscriber or a restore under another name).")));
		entry.relid = relid;
		entry.label = wanted ? pstrdup(wanted) : deflabel;
		entry.nnames = 0;
		entry.names = NULL;
		entry.labels = NULL;
		/* A label left behind by a table dropped meanwhile is free again. */
		values[0] = CStringGetTextDatum(entry.label);
		catalog_exec("DELETE FROM vecphi.protected_tables p "
					 "WHERE p.binding_label OPERATOR(pg_catalog.=) $1 AND NOT EXISTS "
					 "(SELECT FROM pg_catalog.pg_class c "
					 "WHERE c.oid OPERATOR(pg_catalog.=) p.relid::pg_catalog.oid)",
					 1, types, values);
	}

	/* Columns not listed yet are labelled with their current names. */
	vecphi_ciphertext_types(&evector, &etext);
	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	before = entry.nnames;
	entry_grow(&entry, entry.nnames + desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		listed = false;

		if (att->attisdropped ||
			ciphertext_type_kind(att->atttypid, evector, etext) == 0)
			continue;
		for (int j = 0; j < entry.nnames; j++)
			if (strcmp(entry.names[j], NameStr(att->attname)) == 0)
				listed = true;
		if (listed)
			continue;
		entry.names[entry.nnames] = pstrdup(NameStr(att->attname));
		entry.labels[entry.nnames] = entry.names[entry.nnames];
		entry.nnames++;
	}
	table_close(rel, AccessShareLock);

	if (!exists)
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(entry.label)};
		int			rc;
		PrivSql		ps;

		/* The label must be free (a clear error rather than 23505). */
		privsql_begin(&ps, InvalidOid);
		rc = privsql_execute(&ps, "SELECT p.relid::pg_catalog.text FROM vecphi.protected_tables p "
							 "WHERE p.binding_label OPERATOR(pg_catalog.=) $1",
							 1, types, values, true, 1);
		if (rc == SPI_OK_SELECT && SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("binding label \"%s\" is in use by table %s",
							entry.label, SPI_getvalue(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1))));
		privsql_end(&ps);
		catalog_write_columns(&entry, true);
	}
	else if (entry.nnames != before)
		catalog_write_columns(&entry, false);
	*registered = !exists;
	return entry.label;
}

/*
 * After ALTER TABLE ... RENAME COLUMN of a registered table: the column
 * keeps its label (the values are sealed under it) under its new name.
 */
static void
binding_note_rename(Oid relid, const char *oldname, const char *newname)
{
	Oid			catid = catalog_relid();
	BindingEntry entry;
	bool		found = false;
	Oid			evector;
	Oid			etext;
	AttrNumber	attnum;

	if (!OidIsValid(catid) || !catalog_read(catid, relid, &entry))
		return;
	for (int j = 0; j < entry.nnames; j++)
		if (strcmp(entry.names[j], oldname) == 0)
		{
			entry.names[j] = pstrdup(newname);
			found = true;
		}
	if (!found)
	{
		vecphi_ciphertext_types(&evector, &etext);
		attnum = get_attnum(relid, newname);
		if (attnum == InvalidAttrNumber ||
			ciphertext_type_kind(get_atttype(relid, attnum), evector, etext) == 0)
			return;
		entry_grow(&entry, entry.nnames + 1);
		entry.names[entry.nnames] = pstrdup(newname);
		entry.labels[entry.nnames] = pstrdup(oldname);
		entry.nnames++;
	}
	catalog_write_columns(&entry, false);
}

/* ALTER TABLE ... RENAME COLUMN keeps the column's binding label. */
static void
binding_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment * queryEnv,
					   DestReceiver *dest, QueryCompletion * qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	RenameStmt *rename = NULL;
	Oid			relid = InvalidOid;
	char	   *oldname = NULL;
	char	   *newname = NULL;

	if (IsA(parsetree, RenameStmt) &&
		((RenameStmt *) parsetree)->renameType == OBJECT_COLUMN &&
		((RenameStmt *) parsetree)->relation != NULL &&
		IsTransactionState())
	{
		rename = (RenameStmt *) parsetree;
		relid = RangeVarGetRelid(rename->relation, NoLock, true);
		oldname = pstrdup(rename->subname);
		newname = pstrdup(rename->newname);
	}

	utility_next(utility_slot, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);

	if (OidIsValid(relid))
		binding_note_rename(relid, oldname, newname);
}

/* Install the utility hook. */
void
binding_init(void)
{
	utility_slot = utility_register(binding_ProcessUtility);
}
