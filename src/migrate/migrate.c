/*-------------------------------------------------------------------------
 *
 * migrate.c
 *	  vecphi.migrate_column(): encrypt a plaintext column (pgvector's
 *	  vector, real[], float8[]; text) row by row under each row's own
 *	  tenant's current data key, in batches that commit, then swap the
 *	  ciphertext column in under the old name, rebuild the vector index as
 *	  ehnsw and scrub what the plaintext left behind.
 *
 * The procedure (SQL, SECURITY INVOKER, so that it may COMMIT between
 * batches) calls four C functions, each of which checks its caller: the
 * owner of the table who is also a member of vecphi_key_admin, or a
 * superuser.  Encrypting under an arbitrary tenant's key is a write into
 * that tenant's data, so owning the table is not enough; the functions
 * are granted to vecphi_key_admin only, and none of them takes a value to
 * encrypt: they encrypt what the named column of the named table holds,
 * under the tenant its tenant column names, and nothing else.
 *
 *	migrate_start	adds the staging column (evector(n) or etext) and the
 *					state row in vecphi.migrations, or resumes
 *	migrate_batch	one batch: locks up to batch_size rows whose plaintext
 *					is not NULL (SKIP LOCKED), and writes each row's
 *					ciphertext and NULL for its plaintext in one UPDATE,
 *					so each new tuple version holds no plaintext and a row
 *					is migrated exactly once whatever is killed when
 *	migrate_finish	under an ACCESS EXCLUSIVE lock, the last rows, then
 *					DROP COLUMN (every value of which is NULL by then),
 *					RENAME the staging column, and each single-column
 *					pgvector index rebuilt as ehnsw (vector_l2_ops ->
 *					evector_l2_ops, cosine, ip; m, ef_construction kept)
 *	migrate_scrub	vecphi.scrub() of the table: the old tuple versions'
 *					bytes (heap and TOAST) zeroed, as erasure does
 *
 * Statements on the table run as the caller (the owner), search_path
 * pinned (privsql.c with no change of user); the state row is written as
 * the owner of vecphi.migrations.  Every batch, the start, the finish and
 * the scrub are audited (action key_migrate) with the tenants written.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "audit.h"
#include "ciphertypes.h"
#include "crypto.h"
#include "envelope.h"
#include "evector.h"
#include "keys.h"
#include "migrate.h"
#include "privsql.h"
#include "report.h"
#include "vecphi.h"

PG_FUNCTION_INFO_V1(vecphi_migrate_start);
PG_FUNCTION_INFO_V1(vecphi_migrate_batch);
PG_FUNCTION_INFO_V1(vecphi_migrate_finish);
PG_FUNCTION_INFO_V1(vecphi_migrate_scrub);

/* Tenants named in one audit record, at most. */
#define MIGRATE_TENANTS_LISTED	16

/* One migration, as the state row and the catalogs describe it. */
typedef struct Migration
{
	Oid			relid;
	char	   *relname;
	char	   *qrel;			/* schema-qualified, quoted */
	char	   *column;
	char	   *tenant_column;
	char	   *staging;
	uint8		kind;			/* ENVELOPE_KIND_* */
	Oid			target;			/* evector or etext */
	bool		finished;
	bool		scrubbed;
} Migration;


/* The owner of the table who is a key administrator, or a superuser. */
static void
check_caller(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	Oid			admin;

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (get_rel_relkind(relid) != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", relname),
				 errdetail("vecphi.migrate_column() migrates plain tables; migrate each partition of a partitioned table.")));
	if (!pg_class_ownercheck(relid, GetUserId()))
		vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE,
					psprintf("must be the owner of table \"%s\" to migrate it", relname),
					"migrate_column: not the owner");
	admin = get_role_oid("vecphi_key_admin", true);
	if (!superuser() && !(OidIsValid(admin) && has_privs_of_role(GetUserId(), admin)))
		vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE,
					psprintf("must be a member of vecphi_key_admin to migrate table \"%s\"", relname),
					"migrate_column: not a key administrator",
					errdetail("The migration encrypts each row under its own tenant's data key, a write into every tenant's data."));
}

static char *
qualified_rel(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/* Start a section of statements on the table: as the caller, path pinned. */
static void
caller_sql_begin(PrivSql *ps)
{
	privsql_begin(ps, InvalidOid);
}

/* Start a section on vecphi.migrations, as its owner. */
static void
state_sql_begin(PrivSql *ps)
{
	Oid			nsp = get_namespace_oid("vecphi", false);
	Oid			rel = get_relname_relid("migrations", nsp);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(rel))
		elog(ERROR, "vecphi: table vecphi.migrations is missing");
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	privsql_begin(ps, owner);
}

/* Run a statement on vecphi.migrations that returns nothing we read. */
static void
state_exec(const char *sql, int nargs, Oid *types, Datum *values)
{
	PrivSql		ps;
	int			rc;

	state_sql_begin(&ps);
	rc = privsql_execute(&ps, sql, nargs, types, values, false, 0);
	if (rc < 0)
		elog(ERROR, "vecphi: could not update vecphi.migrations: %s",
			 SPI_result_code_string(rc));
	privsql_end(&ps);
}

/* Read the state row of (relid, column) into *m; false when none. */
static bool
load_migration(Oid relid, const char *column, Migration *m)
{
	MemoryContext cxt = CurrentMemoryContext;
	PrivSql		ps;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];
	bool		found;
	Oid			evector;
	Oid			etext;

	memset(m, 0, sizeof(*m));
	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(column);
	state_sql_begin(&ps);
	if (privsql_execute(&ps,
						"SELECT tenant_column::pg_catalog.text, staging_column::pg_catalog.text, "
						"target_type, finished IS NOT NULL, scrubbed IS NOT NULL "
						"FROM vecphi.migrations WHERE relid OPERATOR(pg_catalog.=) $1 "
						"AND column_name OPERATOR(pg_catalog.=) $2::pg_catalog.name",
						2, types, values, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "vecphi: could not read vecphi.migrations");
	found = SPI_processed == 1;
	if (found)
	{
		HeapTuple	t = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;

		m->tenant_column = MemoryContextStrdup(cxt, SPI_getvalue(t, d, 1));
		m->staging = MemoryContextStrdup(cxt, SPI_getvalue(t, d, 2));
		m->kind = strcmp(SPI_getvalue(t, d, 3), "etext") == 0 ?
			ENVELOPE_KIND_TEXT : ENVELOPE_KIND_VECTOR;
		m->finished = DatumGetBool(SPI_getbinval(t, d, 4, &isnull));
		m->scrubbed = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
	}
	privsql_end(&ps);
	m->relid = relid;
	m->relname = get_rel_name(relid);
	m->qrel = qualified_rel(relid);
	m->column = pstrdup(column);
	vecphi_ciphertext_types(&evector, &etext);
	m->target = m->kind == ENVELOPE_KIND_TEXT ? etext : evector;
	return found;
}

/* One audit record of the migration. */
static void
audit_migration(const Migration *m, int64 rows, const char *detail)
{
	AuditEvent	ev;

	memset(&ev, 0, sizeof(ev));
	ev.action = AUDIT_ACTION_KEY_MIGRATE;
	ev.outcome = AUDIT_OUTCOME_OK;
	ev.relid = m->relid;
	ev.rows = rows;
	ev.detail = psprintf("column %s: %s", m->column, detail);
	audit_emit(&ev, true);
}

/* The plaintext of one vector, checked; palloc'd, the caller wipes it. */
static float4 *
vector_plaintext(Datum d, int *dim)
{
	ArrayType  *a = DatumGetArrayTypeP(d);
	float4	   *x = evector_floats_from_array(a, dim);

	if ((Pointer) a != DatumGetPointer(d))	/* a detoasted copy */
		crypto_wipe(a, VARSIZE(a));
	evector_check_values(x, *dim, "evector");
	return x;
}

/* The tenant of a row, checked: it must have keys that are not shredded. */
static uint32
row_tenant(const Migration *m, const char *name)
{
	uint32		tenant_id;

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("a row of \"%s\" to migrate has no tenant in column \"%s\"",
						m->relname, m->tenant_column),
				 errdetail("Batches already committed stay migrated."),
				 errhint("Set the row's tenant, then call vecphi.migrate_column() again to resume.")));
	tenant_id = keys_tenant_id(name, true);
	if (tenant_id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tenant \"%s\" of a row of \"%s\" has no keys", name, m->relname),
				 errdetail("Batches already committed stay migrated; this batch was rolled back."),
				 errhint("A key administrator creates them with vecphi.create_tenant('%s') (or correct the row's %s); then call vecphi.migrate_column() again to resume.",
						 name, m->tenant_column)));
	if (keys_tenant_is_shredded(tenant_id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("keys of tenant \"%s\" of a row of \"%s\" have been crypto-shredded",
						name, m->relname),
				 errdetail("Batches already committed stay migrated; this batch was rolled back."),
				 errhint("Delete that tenant's rows, then call vecphi.migrate_column() again to resume.")));
	return tenant_id;
}

/*
 * One batch: encrypt up to limit rows whose plaintext is not NULL, each
 * under its tenant's current data key, and write ciphertext and NULL in
 * one UPDATE per row.  Returns the number of rows; *tenants gets the
 * names of the tenants written (for the audit record).
 */
static int64
run_batch(const Migration *m, int limit, StringInfo tenants)
{
	PrivSql		ps;
	char	   *qcol = pstrdup(quote_identifier(m->column));
	char	   *qstaging = pstrdup(quote_identifier(m->staging));
	char	   *qtenant = pstrdup(quote_identifier(m->tenant_column));
	SPITupleTable *rows;
	SPIPlanPtr	plan;
	Oid			types[2];
	List	   *seen = NIL;
	int64		n;
	uint64		i;

	caller_sql_begin(&ps);
	if (privsql_execute(&ps,
						psprintf("SELECT ctid, %s::pg_catalog.text, %s::%s FROM %s "
								 "WHERE %s IS NOT NULL LIMIT %d FOR UPDATE SKIP LOCKED",
								 qtenant, qcol,
								 m->kind == ENVELOPE_KIND_TEXT ? "pg_catalog.text" : "pg_catalog.float4[]",
								 m->qrel, qcol, limit),
						0, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "vecphi: could not read the rows to migrate");
	rows = SPI_tuptable;
	n = (int64) SPI_processed;
	types[0] = m->target;
	types[1] = TIDOID;
	/* RETURNING: a trigger of the owner's must not undo the swap. */
	plan = SPI_prepare(psprintf("UPDATE %s SET %s = $1, %s = NULL WHERE ctid OPERATOR(pg_catalog.=) $2 "
								"RETURNING %s IS NULL AND %s IS NOT NULL",
								m->qrel, qstaging, qcol, qcol, qstaging), 2, types);
	if (plan == NULL)
		elog(ERROR, "vecphi: could not prepare the migration update: %s",
			 SPI_result_code_string(SPI_result));
	for (i = 0; i < (uint64) n; i++)
	{
		HeapTuple	t = rows->vals[i];
		bool		isnull;
		Datum		tid = SPI_getbinval(t, rows->tupdesc, 1, &isnull);
		char	   *tenant = SPI_getvalue(t, rows->tupdesc, 2);
		Datum		value = SPI_getbinval(t, rows->tupdesc, 3, &isnull);
		uint32		tenant_id = row_tenant(m, tenant);
		struct varlena *env;
		Datum		args[2];

		if (isnull)
			continue;			/* cannot happen: WHERE ... IS NOT NULL */
		if (m->kind == ENVELOPE_KIND_TEXT)
		{
			text	   *s = DatumGetTextPP(value);
			Size		len = VARSIZE_ANY_EXHDR(s);

			env = envelope_seal_for(ENVELOPE_KIND_TEXT, (uint32) len,
									VARDATA_ANY(s), len, tenant_id, NULL);
			crypto_wipe(VARDATA_ANY(s), len);
		}
		else
		{
			int			dim;
			float4	   *x = vector_plaintext(value, &dim);

			envelope_floats_to_le(x, dim);
			env = envelope_seal_for(ENVELOPE_KIND_VECTOR, (uint32) dim, x,
									(Size) dim * sizeof(float4), tenant_id, NULL);
			crypto_wipe(x, (Size) dim * sizeof(float4));
		}
		args[0] = PointerGetDatum(env);
		args[1] = tid;
		if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING ||
			SPI_processed != 1 ||
			!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) ||
			isnull)
			ereport(ERROR,
					(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
					 errmsg("a row of \"%s\" was not migrated as written", m->relname),
					 errdetail("A trigger on the table skipped the update or changed the columns being migrated."),
					 errhint("Disable the table's triggers for the migration.")));
		/* The row as read holds the plaintext (and the tid, used above). */
		crypto_wipe(t->t_data, t->t_len);
		if (!list_member(seen, makeString(tenant)))
		{
			seen = lappend(seen, makeString(tenant));
			if (list_length(seen) <= MIGRATE_TENANTS_LISTED)
				appendStringInfo(tenants, "%s%s", list_length(seen) > 1 ? ", " : "", tenant);
			else if (list_length(seen) == MIGRATE_TENANTS_LISTED + 1)
				appendStringInfoString(tenants, ", ...");
		}
	}
	privsql_end(&ps);
	return n;
}

/* Record a batch: state row, audit record, NOTICE. */
static void
record_batch(const Migration *m, int64 n, const char *tenants)
{
	Oid			types[3] = {OIDOID, TEXTOID, INT8OID};
	Datum		values[3];
	MemoryContext cxt = CurrentMemoryContext;
	PrivSql		ps;
	char	   *done = "?";
	char	   *left = "?";

	values[0] = ObjectIdGetDatum(m->relid);
	values[1] = CStringGetTextDatum(m->column);
	values[2] = Int64GetDatum(n);
	state_sql_begin(&ps);
	if (privsql_execute(&ps,
						"UPDATE vecphi.migrations SET rows_done = rows_done OPERATOR(pg_catalog.+) $3, "
						"rows_left = pg_catalog.int8larger(rows_left OPERATOR(pg_catalog.-) $3, 0), "
						"batches = batches OPERATOR(pg_catalog.+) 1 "
						"WHERE relid OPERATOR(pg_catalog.=) $1 AND column_name OPERATOR(pg_catalog.=) $2::pg_catalog.name "
						"RETURNING rows_done, rows_left",
						3, types, values, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "vecphi: could not update vecphi.migrations");
	if (SPI_processed == 1)
	{
		done = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		left = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	}
	privsql_end(&ps);
	audit_migration(m, n, psprintf("batch of " INT64_FORMAT " rows encrypted under their own tenants' keys (%s)",
								   n, tenants));
	ereport(NOTICE,
			(errmsg("migrated " INT64_FORMAT " rows of \"%s\".%s: %s done, %s left",
					n, m->relname, quote_identifier(m->column), done, left)));
}

/* The envelope kind a plaintext column migrates to, or 0. */
static uint8
source_kind(Oid typid, int32 typmod, int32 *target_typmod)
{
	HeapTuple	tup;
	bool		is_vector;

	*target_typmod = -1;
	typid = getBaseType(typid);
	if (typid == FLOAT4ARRAYOID || typid == FLOAT8ARRAYOID)
		return ENVELOPE_KIND_VECTOR;
	if (typid == TEXTOID || typid == VARCHAROID)
		return ENVELOPE_KIND_TEXT;
	/* pgvector's type, in whatever schema it was installed */
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	if (!HeapTupleIsValid(tup))
		return 0;
	is_vector = strcmp(NameStr(((Form_pg_type) GETSTRUCT(tup))->typname), "vector") == 0 &&
		((Form_pg_type) GETSTRUCT(tup))->typtype == TYPTYPE_BASE;
	ReleaseSysCache(tup);
	if (is_vector)
	{
		*target_typmod = typmod;	/* pgvector: the dimensions */
		return ENVELOPE_KIND_VECTOR;
	}
	return 0;
}

/* Count the rows still to migrate. */
static int64
rows_left(const Migration *m)
{
	PrivSql		ps;
	int64		n = 0;
	bool		isnull;

	caller_sql_begin(&ps);
	if (privsql_execute(&ps, psprintf("SELECT pg_catalog.count(*) FROM %s WHERE %s IS NOT NULL",
									  m->qrel, quote_identifier(m->column)),
						0, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "vecphi: could not count the rows to migrate");
	if (SPI_processed == 1)
		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	privsql_end(&ps);
	return n;
}

/*
 * Refuse a table whose row-level security applies to its owner (FORCE ROW
 * LEVEL SECURITY): the owner would not see every row, and the finish would
 * drop the plaintext of the rows it did not migrate.
 */
static void
check_row_security(const Migration *m)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(m->relid));
	bool		forced;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", m->relid);
	forced = ((Form_pg_class) GETSTRUCT(tup))->relrowsecurity &&
		((Form_pg_class) GETSTRUCT(tup))->relforcerowsecurity;
	ReleaseSysCache(tup);
	if (forced)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("row-level security of \"%s\" applies to its owner", m->relname),
				 errdetail("The migration must see every row, or the finish would drop the plaintext of the rows it did not see."),
				 errhint("ALTER TABLE %s NO FORCE ROW LEVEL SECURITY for the migration.", m->qrel)));
}

static bool
table_is_protected(Oid relid)
{
	PrivSql		ps;
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	bool		result;

	values[0] = ObjectIdGetDatum(relid);
	caller_sql_begin(&ps);
	if (privsql_execute(&ps, "SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid OPERATOR(pg_catalog.=) $1 "
						"AND polname OPERATOR(pg_catalog.=) 'vecphi_select'",
						1, types, values, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "vecphi: could not read pg_policy");
	result = SPI_processed > 0;
	privsql_end(&ps);
	return result;
}

/*
 * Refuse while a role other than the caller, the owner and superusers may
 * write to the table: a row it inserted or updated during the migration
 * would be encrypted under the key of whatever tenant it names, so an
 * application role with a token for one tenant could have rows planted
 * under another's key.  Reads go on; writes wait for vecphi.protect().
 */
static void
check_no_writers(const Migration *m)
{
	MemoryContext cxt = CurrentMemoryContext;
	PrivSql		ps;
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		values[2];
	char	   *writers = NULL;

	values[0] = ObjectIdGetDatum(m->relid);
	values[1] = ObjectIdGetDatum(GetUserId());
	caller_sql_begin(&ps);
	if (privsql_execute(&ps,
						"WITH rel AS (SELECT relowner, relacl FROM pg_catalog.pg_class "
						"  WHERE oid OPERATOR(pg_catalog.=) $1), "
						"grants AS (SELECT (pg_catalog.aclexplode(relacl)).* FROM rel "
						"  UNION ALL SELECT (pg_catalog.aclexplode(attacl)).* FROM pg_catalog.pg_attribute "
						"  WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attacl IS NOT NULL), "
						"writers AS (SELECT g.grantee FROM grants g WHERE g.privilege_type "
						"  OPERATOR(pg_catalog.=) ANY (ARRAY['INSERT', 'UPDATE']::pg_catalog.text[]) "
						"  UNION SELECT r.oid FROM pg_catalog.pg_roles r, rel "
						"  WHERE pg_catalog.pg_has_role(r.oid, rel.relowner, 'USAGE')) "
						"SELECT pg_catalog.string_agg(CASE WHEN w.grantee OPERATOR(pg_catalog.=) 0 "
						"  THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END, ', ' ORDER BY r.rolname) "
						"FROM writers w LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) w.grantee, rel "
						"WHERE w.grantee OPERATOR(pg_catalog.<>) rel.relowner AND w.grantee OPERATOR(pg_catalog.<>) $2 "
						"AND r.rolsuper IS NOT TRUE",
						2, types, values, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "vecphi: could not read the privileges of \"%s\"", m->relname);
	if (SPI_processed == 1)
	{
		char	   *w = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (w != NULL)
			writers = MemoryContextStrdup(cxt, w);
	}
	privsql_end(&ps);
	if (writers != NULL)
		vecphi_deny(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
					psprintf("roles other than the owner of \"%s\" may write to it: %s", m->relname, writers),
					"migrate_column: other roles may write to the table",
					errdetail("A row they insert or update during the migration would be encrypted under the key of whatever tenant it names."),
					errhint("Revoke INSERT and UPDATE on %s (and membership in its owner) from them for the migration; the application can keep reading.  Grant writes back after vecphi.protect().",
							m->qrel));
}

/*
 * vecphi.migrate_start(tbl, column_name, tenant_column): begin (or resume)
 * a migration; false when the column was migrated already.
 */
Datum
vecphi_migrate_start(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *column = NameStr(*PG_GETARG_NAME(1));
	char	   *tenant_column = NameStr(*PG_GETARG_NAME(2));
	Migration	m;
	AttrNumber	attnum;
	AttrNumber	tenant_attnum;
	Oid			source;
	int32		typmod;
	Oid			collation;
	int32		target_typmod;
	Oid			evector;
	Oid			etext;
	PrivSql		ps;
	int64		left;

	check_caller(relid);
	if (load_migration(relid, column, &m))
	{
		if (!m.finished)
		{
			check_no_writers(&m);
			check_row_security(&m);
		}
		if (m.finished)
		{
			ereport(NOTICE,
					(errmsg("column \"%s\" of \"%s\" is migrated already", column, m.relname)));
			PG_RETURN_BOOL(false);
		}
		if (strcmp(m.tenant_column, tenant_column) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the migration of \"%s\".%s under way takes tenants from column \"%s\", not \"%s\"",
							m.relname, column, m.tenant_column, tenant_column)));
		left = rows_left(&m);
		Assert(left >= 0);
		{
			Oid			types[3] = {OIDOID, TEXTOID, INT8OID};
			Datum		values[3];

			values[0] = ObjectIdGetDatum(relid);
			values[1] = CStringGetTextDatum(column);
			values[2] = Int64GetDatum(left);
			state_exec("UPDATE vecphi.migrations SET rows_left = $3 WHERE relid OPERATOR(pg_catalog.=) $1 "
					   "AND column_name OPERATOR(pg_catalog.=) $2::pg_catalog.name", 3, types, values);
		}
		ereport(NOTICE,
				(errmsg("resuming the migration of \"%s\".%s: " INT64_FORMAT " rows left",
						m.relname, quote_identifier(column), left)));
		PG_RETURN_BOOL(true);
	}

	check_no_writers(&m);
	if (table_is_protected(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is protected already", m.relname),
				 errhint("Migrate its plaintext columns before vecphi.protect() (docs/migration.md).")));
	check_row_security(&m);
	attnum = get_attnum(relid, column);
	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", column, m.relname)));
	tenant_attnum = get_attnum(relid, tenant_column);
	if (tenant_attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", tenant_column, m.relname)));
	if (tenant_attnum == attnum)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the tenant column cannot be the column to migrate")));
	get_atttypetypmodcoll(relid, attnum, &source, &typmod, &collation);
	vecphi_ciphertext_types(&evector, &etext);
	m.kind = source_kind(source, typmod, &target_typmod);
	if (m.kind == 0)
		ereport(ERROR,
				(errcode(migrate_cipher_kind(source, evector, etext) ?
						 ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE : ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of \"%s\" has type %s", column, m.relname, format_type_be(source)),
				 errdetail("vecphi.migrate_column() encrypts columns of type vector, real[] or double precision[] (to evector) and text (to etext).")));
	m.target = m.kind == ENVELOPE_KIND_TEXT ? etext : evector;
	m.tenant_column = tenant_column;
	m.staging = psprintf("vecphi_migrating_%s", column);
	if (strlen(m.staging) >= NAMEDATALEN)
		m.staging[NAMEDATALEN - 1] = '\0';
	if (get_attnum(relid, m.staging) != InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("column \"%s\" of \"%s\" exists already", m.staging, m.relname),
				 errhint("vecphi.migrate_column() adds it as the staging column; rename or drop it.")));

	caller_sql_begin(&ps);
	if (privsql_execute(&ps, psprintf("ALTER TABLE %s ADD COLUMN %s %s", m.qrel,
									  quote_identifier(m.staging),
									  format_type_extended(m.target,
														   m.kind == ENVELOPE_KIND_VECTOR ? target_typmod : -1,
														   FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY)),
						0, NULL, NULL, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "vecphi: could not add the staging column");
	privsql_end(&ps);
	left = rows_left(&m);
	{
		Oid			types[9] = {OIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID};
		Datum		values[9];

		values[0] = ObjectIdGetDatum(relid);
		values[1] = CStringGetTextDatum(m.qrel);
		values[2] = CStringGetTextDatum(column);
		values[3] = CStringGetTextDatum(tenant_column);
		values[4] = CStringGetTextDatum(m.staging);
		values[5] = CStringGetTextDatum(m.kind == ENVELOPE_KIND_TEXT ? "etext" : "evector");
		values[6] = Int64GetDatum(left);
		values[7] = CStringGetTextDatum(format_type_be(source));
		values[8] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
		state_exec("INSERT INTO vecphi.migrations (relid, table_name, column_name, tenant_column, "
				   "staging_column, target_type, rows_left, source_type, migrated_by) "
				   "VALUES ($1, $2, $3::pg_catalog.name, $4::pg_catalog.name, $5::pg_catalog.name, "
				   "$6, $7, $8, $9::pg_catalog.name)",
				   9, types, values);
	}
	audit_migration(&m, left, psprintf("migration started from %s, tenants from column %s",
									   format_type_be(source), tenant_column));
	ereport(NOTICE,
			(errmsg("migrating " INT64_FORMAT " rows of \"%s\".%s to %s", left, m.relname,
					quote_identifier(column), format_type_be(m.target))));
	PG_RETURN_BOOL(true);
}

/* The migration of (relid, column) under way, or an error. */
static void
migration_under_way(Oid relid, const char *column, Migration *m)
{
	check_caller(relid);
	if (!load_migration(relid, column, m))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no migration of column \"%s\" of \"%s\" was started", column, m->relname),
				 errhint("Use CALL vecphi.migrate_column().")));
}

/* vecphi.migrate_batch(tbl, column_name, batch_size): true if rows moved. */
Datum
vecphi_migrate_batch(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *column = NameStr(*PG_GETARG_NAME(1));
	int32		batch = PG_GETARG_INT32(2);
	Migration	m;
	StringInfoData tenants;
	int64		n;

	if (batch < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be at least 1")));
	check_caller(relid);
	/* No finish may swap the columns between the state read and the batch. */
	LockRelationOid(relid, RowExclusiveLock);
	migration_under_way(relid, column, &m);
	if (m.finished)
		PG_RETURN_BOOL(false);
	check_no_writers(&m);
	check_row_security(&m);
	initStringInfo(&tenants);
	n = run_batch(&m, batch, &tenants);
	if (n > 0)
		record_batch(&m, n, tenants.data);
	PG_RETURN_BOOL(n > 0);
}

/* The ehnsw opclass for a pgvector opclass, or NULL. */
static const char *
ehnsw_opclass(const char *pgvector_opclass)
{
	if (strcmp(pgvector_opclass, "vector_l2_ops") == 0)
		return "evector_l2_ops";
	if (strcmp(pgvector_opclass, "vector_cosine_ops") == 0)
		return "evector_cosine_ops";
	if (strcmp(pgvector_opclass, "vector_ip_ops") == 0)
		return "evector_ip_ops";
	return NULL;
}

/*
 * vecphi.migrate_finish(tbl, column_name): the last rows under an ACCESS
 * EXCLUSIVE lock, the swap, the index.
 */
Datum
vecphi_migrate_finish(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *column = NameStr(*PG_GETARG_NAME(1));
	Migration	m;
	PrivSql		ps;
	List	   *creates = NIL;
	StringInfoData done;
	int64		n;
	ListCell   *lc;
	char	   *qcol = pstrdup(quote_identifier(column));
	char	   *opcnsp;
	Oid			evector;
	Oid			etext;

	check_caller(relid);
	LockRelationOid(relid, AccessExclusiveLock);
	migration_under_way(relid, column, &m); /* read under the lock */
	if (m.finished)
		PG_RETURN_VOID();
	check_no_writers(&m);
	check_row_security(&m);
	for (;;)
	{
		StringInfoData tenants;

		initStringInfo(&tenants);
		n = run_batch(&m, 1000, &tenants);
		if (n == 0)
			break;
		record_batch(&m, n, tenants.data);
	}
	n = rows_left(&m);
	if (n > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg(INT64_FORMAT " rows of \"%s\" still hold plaintext in column \"%s\"",
						n, m.relname, column),
				 errdetail("The plaintext column is dropped only when no row holds a value in it."),
				 errhint("Call vecphi.migrate_column() again.")));

	vecphi_ciphertext_types(&evector, &etext);
	opcnsp = pstrdup(quote_identifier(get_namespace_name(vecphi_extension_namespace(false))));
	initStringInfo(&done);
	appendStringInfo(&done, "swapped in as %s", format_type_be(m.target));
	caller_sql_begin(&ps);
	{
		Oid			types[2] = {OIDOID, INT2OID};
		Datum		values[2];
		uint64		i;

		values[0] = ObjectIdGetDatum(relid);
		values[1] = Int16GetDatum(get_attnum(relid, column));
		if (privsql_execute(&ps,
							"SELECT c.relname::pg_catalog.text, opc.opcname::pg_catalog.text, "
							"i.indnatts OPERATOR(pg_catalog.=) 1 AND i.indexprs IS NULL AND i.indpred IS NULL, "
							"(SELECT pg_catalog.string_agg(o, ', ') FROM pg_catalog.unnest(c.reloptions) o "
							" WHERE o OPERATOR(pg_catalog.~) '^(m|ef_construction)=[0-9]+$') "
							"FROM pg_catalog.pg_index i "
							"JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid "
							"JOIN pg_catalog.pg_opclass opc ON opc.oid OPERATOR(pg_catalog.=) i.indclass[0] "
							"WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indkey[0] OPERATOR(pg_catalog.=) $2 "
							"ORDER BY 1",
							2, types, values, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "vecphi: could not read the indexes of \"%s\"", m.relname);
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	d = SPI_tuptable->tupdesc;
			bool		isnull;
			char	   *idx = SPI_getvalue(t, d, 1);
			const char *opc = ehnsw_opclass(SPI_getvalue(t, d, 2));
			bool		simple = DatumGetBool(SPI_getbinval(t, d, 3, &isnull));
			char	   *opts = SPI_getvalue(t, d, 4);

			if (opc == NULL || !simple || m.kind != ENVELOPE_KIND_VECTOR)
			{
				ereport(NOTICE,
						(errmsg("index \"%s\" goes with the plaintext column and is not rebuilt", idx)));
				continue;
			}
			creates = lappend(creates,
							  psprintf("CREATE INDEX %s ON %s USING ehnsw (%s %s.%s)%s%s%s",
									   quote_identifier(idx), m.qrel, qcol, opcnsp, opc,
									   opts ? " WITH (" : "", opts ? opts : "", opts ? ")" : ""));
			appendStringInfo(&done, "; index %s rebuilt as ehnsw (%s%s%s)", idx, opc,
							 opts ? ", " : "", opts ? opts : "");
		}
	}
	if (privsql_execute(&ps, psprintf("ALTER TABLE %s DROP COLUMN %s", m.qrel, qcol),
						0, NULL, NULL, false, 0) != SPI_OK_UTILITY ||
		privsql_execute(&ps, psprintf("ALTER TABLE %s RENAME COLUMN %s TO %s", m.qrel,
									  quote_identifier(m.staging), qcol),
						0, NULL, NULL, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "vecphi: could not swap the columns of \"%s\"", m.relname);
	foreach(lc, creates)
	{
		if (privsql_execute(&ps, lfirst(lc), 0, NULL, NULL, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "vecphi: could not rebuild an index of \"%s\"", m.relname);
	}
	privsql_end(&ps);
	{
		Oid			types[2] = {OIDOID, TEXTOID};
		Datum		values[2];

		values[0] = ObjectIdGetDatum(relid);
		values[1] = CStringGetTextDatum(column);
		state_exec("UPDATE vecphi.migrations SET finished = pg_catalog.now(), rows_left = 0 "
				   "WHERE relid OPERATOR(pg_catalog.=) $1 AND column_name OPERATOR(pg_catalog.=) $2::pg_catalog.name",
				   2, types, values);
	}
	audit_migration(&m, -1, done.data);
	ereport(NOTICE, (errmsg("column %s of \"%s\" %s", qcol, m.relname, done.data)));
	PG_RETURN_VOID();
}

/*
 * vecphi.migrate_scrub(tbl, column_name): vecphi.scrub() of the migrated
 * table, recorded; true when complete.
 */
Datum
vecphi_migrate_scrub(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *column = NameStr(*PG_GETARG_NAME(1));
	Migration	m;
	PrivSql		ps;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];
	bool		complete = false;
	int64		pending = 0;
	int64		bytes = 0;
	bool		isnull;

	migration_under_way(relid, column, &m);
	if (!m.finished)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the migration of \"%s\".%s is not finished", m.relname, quote_identifier(column))));
	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(column);
	caller_sql_begin(&ps);
	if (privsql_execute(&ps, "SELECT complete, pages_pending, bytes_scrubbed FROM vecphi.scrub($1)",
						1, types, values, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "vecphi: could not scrub \"%s\"", m.relname);
	complete = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	pending = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	bytes = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	privsql_end(&ps);
	if (complete)
		state_exec("UPDATE vecphi.migrations SET scrubbed = pg_catalog.now() "
				   "WHERE relid OPERATOR(pg_catalog.=) $1 AND column_name OPERATOR(pg_catalog.=) $2::pg_catalog.name",
				   2, types, values);
	audit_migration(&m, -1, psprintf("scrub %s: " INT64_FORMAT " bytes of old row versions zeroed, "
									 INT64_FORMAT " pages pending",
									 complete ? "complete" : "incomplete", bytes, pending));
	if (complete)
		ereport(NOTICE,
				(errmsg("scrubbed \"%s\": no old row version of the plaintext column is left in its heap or TOAST pages",
						m.relname)));
	else
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("scrub of \"%s\" is incomplete: " INT64_FORMAT " pages still hold old row versions",
						m.relname, pending),
				 errdetail("Another session holds a snapshot or a pin that keeps them."),
				 errhint("Run VACUUM %s (vecphi scrubs after it) once those sessions end, or call vecphi.migrate_column() again.",
						 m.qrel)));
	PG_RETURN_BOOL(complete);
}
