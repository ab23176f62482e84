/*-------------------------------------------------------------------------
 *
 * keyadmin.c
 *	  Key administration from SQL: vecphi.create_tenant(), rotate_kek(),
 *	  rotate_dek(), shred_tenant(), keyring_id(), fork_keyring(),
 *	  adopt_keyring().  Their writes are SQL run through privsql.c inside
 *	  SECURITY DEFINER functions; key files and provider commands go
 *	  through keyprovider.c.  See keys.c for the key hierarchy as a whole.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"

#include "crypto.h"
#include "keysettings.h"
#include "keys.h"
#include "keysint.h"
#include "privsql.h"
#include "report.h"
#include "vecphi.h"

/* ---------- key administration (SQL) ---------- */

/* Check a tenant name from SQL and return it as a C string. */
static char *
tenant_name_arg(text *arg)
{
	char	   *name = text_to_cstring(arg);

	if (name[0] == '-')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant name \"%s\"", name),
				 errdetail("A tenant name cannot start with a hyphen: a key provider's command could take it for an option.")));
	if (!vecphi_tenant_name_is_valid(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant name \"%s\"", name),
				 errdetail("Tenant names are 1 to %d letters, digits, underscores or hyphens.",
						   VECPHI_TENANT_NAME_MAX)));
	return name;
}

/*
 * The privileged section of the key function running now (privsql.c): the
 * functions are SECURITY DEFINER, and their statements pin search_path and
 * qualify every name besides, so that they do not depend on the function
 * definition for it.
 */
static PrivSql keys_sql;

/* Run one SPI statement with arguments and check its result code. */
static void
spi_run(const char *sql, int nargs, Oid *types, Datum *values,
		bool read_only, int expected)
{
	int			rc;

	rc = privsql_execute(&keys_sql, sql, nargs, types, values, read_only, 0);
	if (rc != expected)
		elog(ERROR, "vecphi: SPI statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
}

/* Integer column of the first SPI result row. */
static int32
spi_int(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

/*
 * The next value of one of the extension's id sequences (vecphi.tenant_ids,
 * vecphi.dek_versions), and past floor, the highest id in use.  Sequences
 * do not roll back: an id handed to a transaction that aborted, or died in
 * a crash, is never handed out again, even though the rows that used it
 * are gone.  The floor covers a sequence left behind the table (rows
 * brought in without it); it cannot know ids that were handed out and
 * rolled back, which is why only the extension's owner may touch the
 * sequences.
 */
static int32
sequence_next_past(const char *seqname, int32 floor)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	int32		next;

	values[0] = CStringGetTextDatum(seqname);
	spi_run("SELECT pg_catalog.nextval($1::pg_catalog.regclass)::pg_catalog.int4",
			1, types, values, false, SPI_OK_SELECT);
	next = spi_int(0, 1);
	if (next <= floor)
	{
		values[1] = Int32GetDatum(floor);
		spi_run("SELECT pg_catalog.setval($1::pg_catalog.regclass, $2)",
				2, types, values, false, SPI_OK_SELECT);
		spi_run("SELECT pg_catalog.nextval($1::pg_catalog.regclass)::pg_catalog.int4",
				1, types, values, false, SPI_OK_SELECT);
		next = spi_int(0, 1);
	}
	return next;
}

/* A tenant's id, KEK version and whether it was shredded, row locked. */
#define TENANT_LOCK_SQL \
	"SELECT t.tenant_id, t.kek_version, s.tenant_id IS NOT NULL " \
	"FROM vecphi.tenants t LEFT JOIN vecphi.shredded_tenants s " \
	"ON s.tenant_id OPERATOR(pg_catalog.=) t.tenant_id " \
	"WHERE t.tenant OPERATOR(pg_catalog.=) $1 FOR UPDATE OF t"

/* Lock a tenant's row and return its id and KEK version. */
static uint32
tenant_lock_for_admin(const char *name, uint32 *kek_version)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	spi_run(TENANT_LOCK_SQL, 1, types, values, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("tenant \"%s\" does not exist", name)));
	if (spi_int(0, 3))
		keys_tenant_shredded_error(name);
	*kek_version = spi_int(0, 2);
	return spi_int(0, 1);
}

/* A new random keyring id. */
static char *
keyring_id_generate(void)
{
	uint8		raw[KEYRING_ID_LEN / 2];
	char	   *id = palloc(KEYRING_ID_LEN + 1);
	int			i;

	crypto_random_bytes(raw, sizeof(raw));
	for (i = 0; i < (int) sizeof(raw); i++)
		snprintf(id + 2 * i, 3, "%02x", raw[i]);
	return id;
}

/* A copy of s in the memory of SPI's caller, which SPI_finish() keeps. */
static char *
spi_outlive(const char *s)
{
	char	   *copy = SPI_palloc(strlen(s) + 1);

	strcpy(copy, s);
	return copy;
}

/*
 * The keyring id, read (and row locked) in the running privileged section.
 * With create, a database that has none yet gets one (its first key
 * administration); otherwise having none is an error.
 */
static char *
admin_keyring_id(bool create)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *id;

	spi_run("SELECT keyring_id FROM vecphi.keyring_identity FOR UPDATE",
			0, NULL, NULL, false, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull);

		id = isnull ? "" : TextDatumGetCString(d);
		if (!keys_keyring_id_is_valid(id))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("vecphi.keyring_identity holds a malformed keyring id")));
		/* Callers use it after SPI_finish(), which frees SPI's memory. */
		return spi_outlive(id);
	}
	if (!create)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this database's vecphi keyring has no id"),
				 errdetail("vecphi.keyring_identity is empty; key files are named by the keyring id."),
				 errhint("Restore vecphi.keyring_identity with the rest of the keyring, or see docs/keys.md.")));
	id = keyring_id_generate();
	values[0] = CStringGetTextDatum(id);
	spi_run("INSERT INTO vecphi.keyring_identity (keyring_id) VALUES ($1)",
			1, types, values, false, SPI_OK_INSERT);
	return spi_outlive(id);
}

/* bytea datum holding a wrapped key. */
static Datum
wrapped_key_datum(const uint8 *wrapped)
{
	bytea	   *b = palloc(VARHDRSZ + VECPHI_WRAPPED_KEY_LEN);

	SET_VARSIZE(b, VARHDRSZ + VECPHI_WRAPPED_KEY_LEN);
	memcpy(VARDATA(b), wrapped, VECPHI_WRAPPED_KEY_LEN);
	return PointerGetDatum(b);
}

/* Generate a DEK, wrap it under kek, and store it in the keyring. */
static void
dek_create(uint32 tenant_id, uint32 dek_version, uint32 kek_version,
		   const uint8 *kek)
{
	uint8		dek[VECPHI_KEY_LEN];
	uint8		wrapped[VECPHI_WRAPPED_KEY_LEN];
	Oid			types[4] = {INT4OID, INT4OID, INT4OID, BYTEAOID};
	Datum		values[4];

	crypto_random_bytes(dek, sizeof(dek));
	crypto_wrap_key(kek, dek, wrapped);
	crypto_wipe(dek, sizeof(dek));
	values[0] = Int32GetDatum(tenant_id);
	values[1] = Int32GetDatum(dek_version);
	values[2] = Int32GetDatum(kek_version);
	values[3] = wrapped_key_datum(wrapped);
	spi_run("INSERT INTO vecphi.keyring (tenant_id, dek_version, kek_version, wrapped_dek) "
			"VALUES ($1, $2, $3, $4)",
			4, types, values, false, SPI_OK_INSERT);
}

/* Tell every backend that the keyring changed. */
static void
keys_invalidate_all(void)
{
	CacheInvalidateRelcacheByRelid(keys_table_oid("tenants"));
	CacheInvalidateRelcacheByRelid(keys_table_oid("keyring"));
	CacheInvalidateRelcacheByRelid(keys_table_oid("keyring_identity"));
}

/*
 * Report a key event for the audit log (common/report.h).  Queued, not
 * awaited: the event's own transaction may still roll back, and the record
 * says it was tried.
 */
static void
key_event_report(ReportKeyEvent event, const char *tenant, uint32 version)
{
	report_key_event(event, -1,
					 psprintf("tenant %s, version %u", tenant, version),
					 false);
}

/*
 * vecphi.keyring_changed(): AFTER trigger (row level, and statement level
 * for TRUNCATE) on the key tables, enabled ALWAYS.  Key administration
 * invalidates the caches itself; this covers the writes it does not make:
 * a logical replication apply worker writing a publisher's key
 * administration (a shred included) into a subscriber, which fires row
 * triggers only, and a superuser's direct DML.  Without it, a subscriber
 * backend would keep decrypting with a data key it cached before a
 * replicated shred.
 */
PG_FUNCTION_INFO_V1(vecphi_keyring_changed);

Datum
vecphi_keyring_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("vecphi.keyring_changed() may only be called as a trigger")));
	keys_invalidate_all();
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(vecphi_create_tenant);
Datum
vecphi_create_tenant(PG_FUNCTION_ARGS)
{
	char	   *name = tenant_name_arg(PG_GETARG_TEXT_PP(0));
	uint8		kek[VECPHI_KEY_LEN];
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	uint32		tenant_id;
	char	   *keyring_id;

	keysync_require_coordinator("vecphi.create_tenant()");

	keys_provider_check_config();
	privsql_begin(&keys_sql, InvalidOid);
	spi_run("LOCK TABLE vecphi.tenants IN SHARE ROW EXCLUSIVE MODE",
			0, NULL, NULL, false, SPI_OK_UTILITY);
	keyring_id = admin_keyring_id(true);
	values[0] = CStringGetTextDatum(name);
	spi_run("SELECT 1 FROM vecphi.tenants WHERE tenant OPERATOR(pg_catalog.=) $1",
			1, &types[1], values, false, SPI_OK_SELECT);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("tenant \"%s\" already exists", name)));
	spi_run("SELECT coalesce(pg_catalog.max(tenant_id), 0) FROM vecphi.tenants",
			0, NULL, NULL, false, SPI_OK_SELECT);
	tenant_id = sequence_next_past("vecphi.tenant_ids", spi_int(0, 1));

	PG_TRY();
	{
		if (keys_provider_is_embedded())
		{
			keys_directory_check();
			keys_owner_check(keyring_id, true);
			keys_kek_create_file(keyring_id, name, 1, true, kek);
		}
		else
			keys_kek_run_command(keyring_id, name, 1, kek);

		values[0] = Int32GetDatum(tenant_id);
		values[1] = CStringGetTextDatum(name);
		spi_run("INSERT INTO vecphi.tenants (tenant_id, tenant, kek_version, current_dek) "
				"VALUES ($1, $2, 1, 1)",
				2, types, values, false, SPI_OK_INSERT);
		dek_create(tenant_id, 1, 1, kek);
	}
	PG_FINALLY();
	{
		crypto_wipe(kek, sizeof(kek));
	}
	PG_END_TRY();

	privsql_end(&keys_sql);
	keysync_tenant(tenant_id);
	keys_invalidate_all();
	key_event_report(REPORT_KEY_CREATE, name, 1);
	PG_RETURN_INT32(tenant_id);
}

PG_FUNCTION_INFO_V1(vecphi_rotate_kek);
Datum
vecphi_rotate_kek(PG_FUNCTION_ARGS)
{
	char	   *name = tenant_name_arg(PG_GETARG_TEXT_PP(0));
	uint32		tenant_id;
	uint32		old_version;
	uint32		new_version;
	uint8		old_kek[VECPHI_KEY_LEN];
	uint8		new_kek[VECPHI_KEY_LEN];
	uint8		dek[VECPHI_KEY_LEN];
	uint8		wrapped[VECPHI_WRAPPED_KEY_LEN];
	bool		embedded = keys_provider_is_embedded();
	bool		stale_before;
	char	   *keyring_id;

	keysync_require_coordinator("vecphi.rotate_kek()");

	privsql_begin(&keys_sql, InvalidOid);
	tenant_id = tenant_lock_for_admin(name, &old_version);
	new_version = old_version + 1;
	keyring_id = admin_keyring_id(false);
	if (embedded)
	{
		keys_directory_check();
		keys_owner_check(keyring_id, true);
	}

	/*
	 * Only when this transaction has not itself rotated the tenant is
	 * old_version the committed one, and a file of the version before it a
	 * leftover of a crash after an earlier rotation's commit.
	 */
	stale_before = embedded && old_version > 1 &&
		!keys_pending_files_of(keyring_id, name);

	PG_TRY();
	{
		Oid			types[4] = {INT4OID, INT4OID, INT4OID, BYTEAOID};
		Datum		values[4];
		SPITupleTable *rows;
		uint64		nrows;
		uint64		i;

		keys_kek_fetch(keyring_id, name, old_version, old_kek);
		if (embedded)
			keys_kek_create_file(keyring_id, name, new_version, false, new_kek);
		else
			keys_kek_run_command(keyring_id, name, new_version, new_kek);
		if (crypto_equal(old_kek, new_kek, VECPHI_KEY_LEN))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("key provider returned the same key-encryption key for versions %u and %u of tenant \"%s\"",
							old_version, new_version, name)));

		values[0] = Int32GetDatum(tenant_id);
		spi_run("SELECT dek_version, kek_version, wrapped_dek FROM vecphi.keyring "
				"WHERE tenant_id OPERATOR(pg_catalog.=) $1 ORDER BY dek_version FOR UPDATE",
				1, types, values, false, SPI_OK_SELECT);
		rows = SPI_tuptable;
		nrows = SPI_processed;
		for (i = 0; i < nrows; i++)
		{
			bool		isnull;
			int32		dek_version;
			int32		row_kek_version;
			bytea	   *old_wrapped;
			bool		ok;

			dek_version = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
			row_kek_version = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull));
			old_wrapped = DatumGetByteaPP(SPI_getbinval(rows->vals[i], rows->tupdesc, 3, &isnull));
			if ((uint32) row_kek_version != old_version)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("data key %d of tenant \"%s\" is wrapped under KEK version %d, not the current %u",
								dek_version, name, row_kek_version, old_version)));
			ok = crypto_unwrap_key(old_kek, (uint8 *) VARDATA_ANY(old_wrapped),
								   VARSIZE_ANY_EXHDR(old_wrapped), dek);
			if (!ok)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("data key %d of tenant \"%s\" cannot be unwrapped", dek_version, name),
						 errdetail("The key-encryption key from the provider is not the one that wrapped it, or the wrapped key was altered.")));
			crypto_wrap_key(new_kek, dek, wrapped);
			crypto_wipe(dek, sizeof(dek));

			values[1] = Int32GetDatum(dek_version);
			values[2] = Int32GetDatum(new_version);
			values[3] = wrapped_key_datum(wrapped);
			spi_run("UPDATE vecphi.keyring SET wrapped_dek = $4, kek_version = $3 "
					"WHERE tenant_id OPERATOR(pg_catalog.=) $1 "
					"AND dek_version OPERATOR(pg_catalog.=) $2",
					4, types, values, false, SPI_OK_UPDATE);
		}
		values[1] = Int32GetDatum(new_version);
		spi_run("UPDATE vecphi.tenants SET kek_version = $2 "
				"WHERE tenant_id OPERATOR(pg_catalog.=) $1",
				2, types, values, false, SPI_OK_UPDATE);
	}
	PG_FINALLY();
	{
		crypto_wipe(old_kek, sizeof(old_kek));
		crypto_wipe(new_kek, sizeof(new_kek));
		crypto_wipe(dek, sizeof(dek));
	}
	PG_END_TRY();

	privsql_end(&keys_sql);

	/*
	 * Every data key of the tenant is now wrapped under new_version (the loop
	 * checked each was under old_version): the older files go when this
	 * transaction commits, never before, and never if it aborts.
	 */
	if (embedded)
	{
		keys_pending_file_add(keys_kek_file_path(keyring_id, name, old_version), true);
		if (stale_before)
			keys_pending_file_add(keys_kek_file_path(keyring_id, name, old_version - 1), true);
	}
	keysync_tenant(tenant_id);
	keys_invalidate_all();
	key_event_report(REPORT_KEY_ROTATE_KEK, name, new_version);
	PG_RETURN_INT32(new_version);
}

PG_FUNCTION_INFO_V1(vecphi_rotate_dek);
Datum
vecphi_rotate_dek(PG_FUNCTION_ARGS)
{
	char	   *name = tenant_name_arg(PG_GETARG_TEXT_PP(0));
	uint32		tenant_id;
	uint32		kek_version;
	uint32		new_dek;
	uint8		kek[VECPHI_KEY_LEN];
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2];

	char	   *keyring_id;

	keysync_require_coordinator("vecphi.rotate_dek()");
	keys_provider_check_config();
	privsql_begin(&keys_sql, InvalidOid);
	tenant_id = tenant_lock_for_admin(name, &kek_version);
	keyring_id = admin_keyring_id(false);
	values[0] = Int32GetDatum(tenant_id);
	spi_run("SELECT coalesce(pg_catalog.max(dek_version), 0) "
			"FROM vecphi.keyring WHERE tenant_id OPERATOR(pg_catalog.=) $1",
			1, types, values, false, SPI_OK_SELECT);
	new_dek = sequence_next_past("vecphi.dek_versions", spi_int(0, 1));

	PG_TRY();
	{
		keys_kek_fetch(keyring_id, name, kek_version, kek);
		dek_create(tenant_id, new_dek, kek_version, kek);
	}
	PG_FINALLY();
	{
		crypto_wipe(kek, sizeof(kek));
	}
	PG_END_TRY();

	values[1] = Int32GetDatum(new_dek);
	spi_run("UPDATE vecphi.tenants SET current_dek = $2 "
			"WHERE tenant_id OPERATOR(pg_catalog.=) $1",
			2, types, values, false, SPI_OK_UPDATE);
	privsql_end(&keys_sql);
	keysync_tenant(tenant_id);
	keys_invalidate_all();
	key_event_report(REPORT_KEY_ROTATE_DEK, name, new_dek);
	PG_RETURN_INT32(new_dek);
}

PG_FUNCTION_INFO_V1(vecphi_shred_tenant);
Datum
vecphi_shred_tenant(PG_FUNCTION_ARGS)
{
	char	   *name = tenant_name_arg(PG_GETARG_TEXT_PP(0));
	bool		embedded = keys_provider_is_embedded();
	Oid			types[4] = {INT4OID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4];
	uint32		tenant_id;
	uint32		kek_version;
	uint32		v;
	bool		already;
	int			ndeks;
	char	   *keyring_id;

	keysync_require_coordinator("vecphi.shred_tenant()");

	if (!embedded &&
		(vecphi_kek_destroy_command == NULL || vecphi_kek_destroy_command[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("vecphi.kek_destroy_command is not set"),
				 errdetail("With vecphi.kek_command as key provider, shredding a tenant needs a command that destroys its key-encryption key at the provider."),
				 errhint("Set vecphi.kek_destroy_command in postgresql.conf and reload.")));
	if (embedded)
		keys_directory_check();

	privsql_begin(&keys_sql, InvalidOid);
	values[0] = CStringGetTextDatum(name);
	spi_run(TENANT_LOCK_SQL, 1, &types[1], values, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("tenant \"%s\" does not exist", name)));
	tenant_id = spi_int(0, 1);
	kek_version = spi_int(0, 2);
	already = spi_int(0, 3) != 0;
	keyring_id = admin_keyring_id(false);
	if (embedded)
		keys_owner_check(keyring_id, true);

	values[0] = Int32GetDatum(tenant_id);
	spi_run("DELETE FROM vecphi.keyring WHERE tenant_id OPERATOR(pg_catalog.=) $1",
			1, types, values, false, SPI_OK_DELETE);
	ndeks = (int) SPI_processed;
	if (!already)
	{
		values[1] = CStringGetTextDatum(name);
		values[2] = Int32GetDatum(kek_version);
		values[3] = Int32GetDatum(ndeks);
		spi_run("INSERT INTO vecphi.shredded_tenants (tenant_id, tenant, kek_version, data_keys) "
				"VALUES ($1, $2, $3, $4)",
				4, types, values, false, SPI_OK_INSERT);
	}
	privsql_end(&keys_sql);

	/*
	 * Destroy every KEK version the tenant ever had (earlier ones may have
	 * been left by a crash during a rotation, and the next one by a crash
	 * during a rotation that never committed).  Key files go when this
	 * transaction commits, as superseded files do; a provider behind
	 * kek_command is asked just before the commit, so that its failure still
	 * stops the shred.  Either way an abort, of the transaction or of the
	 * subtransaction that shredded, keeps the tenant intact.  Shredding an
	 * already shredded tenant repeats the destruction, for a crash between
	 * commit and unlink.
	 */
	for (v = 1; v <= kek_version + 1; v++)
	{
		if (embedded)
		{
			keys_pending_file_add(keys_kek_file_path(keyring_id, name, v), true);
			keys_pending_file_add(psprintf("%s.tmp", keys_kek_file_path(keyring_id, name, v)), true);
		}
		else if (v <= kek_version)
			keys_pending_add(PENDING_DESTROY_COMMAND, name, keyring_id, v);
	}
	keysync_tenant(tenant_id);
	keys_invalidate_all();
	if (already)
		ereport(NOTICE,
				(errmsg("tenant \"%s\" was already shredded; its key-encryption keys are destroyed again",
						name)));

	report_key_event(REPORT_KEY_SHRED, ndeks,
					 psprintf("tenant %s: %d data keys dropped, key-encryption key versions 1 to %u destroyed by %s%s",
							  name, ndeks, kek_version,
							  embedded ? "the embedded provider at commit" : "vecphi.kek_destroy_command at commit",
							  already ? " (repeated)" : ""),
					 true);
	PG_RETURN_INT32(ndeks);
}


/* ---------- keyrings (SQL) ---------- */

PG_FUNCTION_INFO_V1(vecphi_keyring_id);
Datum
vecphi_keyring_id(PG_FUNCTION_ARGS)
{
	char	   *keyring_id;

	privsql_begin(&keys_sql, InvalidOid);
	spi_run("LOCK TABLE vecphi.tenants IN SHARE ROW EXCLUSIVE MODE",
			0, NULL, NULL, false, SPI_OK_UTILITY);
	keyring_id = admin_keyring_id(true);
	privsql_end(&keys_sql);
	keysync_tenant(0);
	CacheInvalidateRelcacheByRelid(keys_table_oid("keyring_identity"));
	PG_RETURN_TEXT_P(cstring_to_text(keyring_id));
}

/*
 * Give this database a keyring of its own: a new id, and a copy of the
 * current KEK file of every tenant that is not shredded under it.  The old
 * files are only read.  For a dump restored beside its source, or any copy
 * that must rotate and shred on its own.
 */
PG_FUNCTION_INFO_V1(vecphi_fork_keyring);
Datum
vecphi_fork_keyring(PG_FUNCTION_ARGS)
{
	char	   *old_id;
	char	   *new_id;
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	uint8		kek[VECPHI_KEY_LEN];
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	keysync_require_coordinator("vecphi.fork_keyring()");

	if (!keys_provider_is_embedded())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("vecphi.fork_keyring() needs the embedded key provider"),
				 errdetail("With vecphi.kek_command the key management system holds the keys; vecphi cannot copy them."),
				 errhint("Have the key management system serve the keys under a new keyring id (%%k), then see docs/keys.md.")));
	keys_directory_check();

	privsql_begin(&keys_sql, InvalidOid);
	spi_run("LOCK TABLE vecphi.tenants IN SHARE ROW EXCLUSIVE MODE",
			0, NULL, NULL, false, SPI_OK_UTILITY);
	old_id = admin_keyring_id(true);
	new_id = spi_outlive(keyring_id_generate());
	keys_owner_write(new_id);
	keys_pending_file_add(keys_owner_path(new_id), false);

	spi_run("SELECT t.tenant, t.kek_version FROM vecphi.tenants t "
			"WHERE NOT EXISTS (SELECT 1 FROM vecphi.shredded_tenants s "
			"WHERE s.tenant_id OPERATOR(pg_catalog.=) t.tenant_id) ORDER BY t.tenant_id",
			0, NULL, NULL, false, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	PG_TRY();
	{
		for (i = 0; i < nrows; i++)
		{
			bool		isnull;
			char	   *tenant = TextDatumGetCString(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
			int32		v = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull));

			keys_kek_read_file(tenant, keys_kek_file_path(old_id, tenant, v), kek);
			keys_kek_write_file(keys_kek_file_path(new_id, tenant, v), kek);
			crypto_wipe(kek, sizeof(kek));
		}
	}
	PG_FINALLY();
	{
		crypto_wipe(kek, sizeof(kek));
	}
	PG_END_TRY();

	values[0] = CStringGetTextDatum(new_id);
	values[1] = CStringGetTextDatum(old_id);
	spi_run("UPDATE vecphi.keyring_identity SET keyring_id = $1, forked_from = $2",
			2, types, values, false, SPI_OK_UPDATE);
	privsql_end(&keys_sql);
	keysync_tenant(0);
	keys_invalidate_all();

	report_key_event(REPORT_KEY_CREATE, (int64) nrows,
					 psprintf("keyring %s forked from keyring %s: %d tenants' key-encryption keys copied",
							  new_id, old_id, (int) nrows),
					 false);
	PG_RETURN_TEXT_P(cstring_to_text(new_id));
}

/*
 * Make this database the owner of its keyring's key files (after a move to
 * another database or cluster).  The previous owner can no longer use
 * them.  Superuser only: it takes the files away from another database.
 */
PG_FUNCTION_INFO_V1(vecphi_adopt_keyring);
Datum
vecphi_adopt_keyring(PG_FUNCTION_ARGS)
{
	char	   *keyring_id;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may adopt a keyring"),
				 errdetail("Adopting a keyring takes its key files away from the database that owned them.")));
	if (!keys_provider_is_embedded())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("vecphi.adopt_keyring() needs the embedded key provider"),
				 errdetail("With vecphi.kek_command the key management system decides who may use the keys of a keyring id (%%k).")));
	keys_directory_check();
	privsql_begin(&keys_sql, InvalidOid);
	keyring_id = admin_keyring_id(false);
	privsql_end(&keys_sql);
	keys_owner_write(keyring_id);

	report_key_event(REPORT_KEY_CREATE, -1,
					 psprintf("keyring %s adopted by this database", keyring_id),
					 false);
	PG_RETURN_TEXT_P(cstring_to_text(keyring_id));
}
