/*-------------------------------------------------------------------------
 *
 * keysync.c
 *	  Keys across a Citus cluster (issue #16): key administration on the
 *	  coordinator reaches every worker in the same distributed transaction.
 *
 * vecphi does not link against Citus.  When the citus extension exists in
 * this database and citus is in shared_preload_libraries, three of its
 * exported functions are looked up at run time (load_external_function()
 * finds the library Citus's own preload already loaded, never loads it):
 *
 *	- GetLocalGroupId(): 0 on the coordinator;
 *	- SendCommandToWorkersWithMetadataViaSuperUser(command): the command on
 *	  every worker with metadata, over connections as the citus extension's
 *	  owner that join the coordinated transaction; Citus marks them critical
 *	  and commits with two-phase commit (PREPARE on every worker, then
 *	  COMMIT PREPARED), so an error or abort on any node aborts all;
 *	- SendCommandToWorkerAsUser(node, port, user, command): the same for one
 *	  node (vecphi.sync_node()).
 *
 * The command is "SELECT vecphi.keysync_apply('<state>'::jsonb)", the state
 * made by vecphi.keysync_state(): the coordinator's rows of the tenants it
 * changed, wrapped data keys only (never an unwrapped key), the keyring
 * identity and the sequences' positions.  keysync_apply() (SQL, superuser
 * only, refused on the coordinator) writes them as they are, so ids and
 * versions are the coordinator's on every node.  KEKs are not sent: every
 * node reaches the same provider (a KMS through vecphi.kek_command; in
 * tests a shared key directory), and the coordinator alone creates and
 * destroys them.
 *
 * The erasure salt (vecphi.erasure_salt) travels in the same state: a
 * subject's erasure digest is then the same on every node, and a worker
 * never has to create a salt of its own during a DELETE (two multi-shard
 * deletes creating it on two workers at once waited on each other across
 * the cluster).
 *
 * Without Citus every function here returns at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "citus.h"
#include "keys.h"
#include "privsql.h"

typedef int32 (*CitusLocalGroupFn) (void);
typedef void (*CitusSendAllFn) (const char *command);
typedef void (*CitusSendOneFn) (const char *node, int32 port,
								const char *user, const char *command);

/*
 * Citus is active in this database: its extension exists, and its library
 * is preloaded (so looking up its symbols never loads it).
 */
static bool
citus_active(void)
{
	return vecphi_citus_active();
}

/* An exported Citus function (citus_active() must be true). */
static void *
citus_function(const char *name)
{
	void	   *fn = vecphi_citus_function(name);

	if (fn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the loaded Citus has no function %s", name),
				 errhint("vecphi's key synchronisation needs Citus 13.2.")));
	return fn;
}

/* Is this node a Citus worker (Citus active, group id not 0)? */
static bool
citus_is_worker(void)
{
	CitusLocalGroupFn fn;

	if (!citus_active())
		return false;
	fn = (CitusLocalGroupFn) citus_function("GetLocalGroupId");
	return fn() != 0;
}

/* The owner of an extension, by name. */
static Oid
extension_owner_by_name(const char *extname)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(extname));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"%s\" does not exist", extname)));
	return owner;
}

/*
 * The command that applies this node's key state on a worker: the tenants
 * named (tenant_ids NULL: all), with role_categories the role categories
 * too.  Read as the vecphi extension's owner, who owns the key tables.
 */
static char *
keysync_command(ArrayType *tenant_ids, bool role_categories)
{
	PrivSql		ps;
	Oid			types[2] = {INT4ARRAYOID, BOOLOID};
	Datum		values[2];
	char	   *state;
	char	   *command;
	bool		isnull;
	int			rc;
	MemoryContext caller = CurrentMemoryContext;

	values[0] = tenant_ids ? PointerGetDatum(tenant_ids) : (Datum) 0;
	values[1] = BoolGetDatum(role_categories);
	/* Not read-only: the state must include this statement's own writes. */
	privsql_begin(&ps, extension_owner_by_name("vecphi"));
	rc = privsql_execute(&ps, tenant_ids ?
						 "SELECT vecphi.keysync_state($1, $2)::pg_catalog.text" :
						 "SELECT vecphi.keysync_state(NULL, $2)::pg_catalog.text",
						 2, types, values, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "vecphi: could not read the key state (%s)",
			 SPI_result_code_string(rc));
	/* SPI's memory goes at privsql_end(): make the command in the caller's. */
	state = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	command = MemoryContextStrdup(caller,
								  psprintf("SELECT vecphi.keysync_apply(%s::jsonb)",
										   quote_literal_cstr(state)));
	privsql_end(&ps);
	return command;
}

/*
 * Key administration runs on the coordinator: on a worker it would give the
 * node tenants, ids or keys the others do not have.
 */
void
keysync_require_coordinator(const char *what)
{
	if (citus_is_worker())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s must run on the Citus coordinator", what),
				 errdetail("This node is a Citus worker; its key rows are copies of the coordinator's."),
				 errhint("Connect to the coordinator and run it there.")));
}

/*
 * After key administration on the coordinator: send the tenant's rows (and
 * the keyring identity; tenant_id 0: the identity only) to every worker
 * with metadata, in this transaction.
 */
void
keysync_tenant(uint32 tenant_id)
{
	CitusSendAllFn send;
	Datum		id = Int32GetDatum((int32) tenant_id);
	ArrayType  *ids;

	if (!citus_active() || citus_is_worker())
		return;
	ids = construct_array(&id, tenant_id > 0 ? 1 : 0, INT4OID, sizeof(int32),
						  true, TYPALIGN_INT);
	send = (CitusSendAllFn) citus_function("SendCommandToWorkersWithMetadataViaSuperUser");
	send(keysync_command(ids, false));
}

/*
 * vecphi.sync_node(nodename, nodeport): every tenant, wrapped data key,
 * shred record, the role categories and the sequences' positions to one
 * node of the cluster, in this transaction.  SECURITY DEFINER, granted to
 * vecphi_key_admin: it only copies the coordinator's rows.
 */
PG_FUNCTION_INFO_V1(vecphi_sync_node);
Datum
vecphi_sync_node(PG_FUNCTION_ARGS)
{
	char	   *node = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		port = PG_GETARG_INT32(1);
	CitusSendOneFn send;
	PrivSql		ps;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	bool		isnull;
	int			rc;
	int64		ntenants;

	if (!citus_active())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("vecphi.sync_node() needs Citus"),
				 errdetail("The citus extension does not exist in this database, or citus is not in shared_preload_libraries.")));
	keysync_require_coordinator("vecphi.sync_node()");

	values[0] = CStringGetTextDatum(node);
	values[1] = Int32GetDatum(port);
	privsql_begin(&ps, InvalidOid);
	rc = privsql_execute(&ps,
						 "SELECT (SELECT pg_catalog.count(*) FROM vecphi.tenants), "
						 "EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node n "
						 "WHERE n.nodename OPERATOR(pg_catalog.=) $1 "
						 "AND n.nodeport OPERATOR(pg_catalog.=) $2 "
						 "AND n.groupid OPERATOR(pg_catalog.<>) 0)",
						 2, types, values, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "vecphi: could not read pg_dist_node (%s)",
			 SPI_result_code_string(rc));
	ntenants = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									SPI_tuptable->tupdesc, 2, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s:%d is not a worker of this Citus cluster", node, port),
				 errhint("Add it with citus_add_node() first; see pg_dist_node.")));
	privsql_end(&ps);

	send = (CitusSendOneFn) citus_function("SendCommandToWorkerAsUser");
	send(node, port, GetUserNameFromId(extension_owner_by_name("citus"), false),
		 keysync_command(NULL, true));
	PG_RETURN_INT32((int32) ntenants);
}

/*
 * vecphi.role_categories_changed(): statement trigger on
 * vecphi.role_categories.  On the coordinator, sends the table to every
 * worker in this transaction; on a worker, refuses changes by anyone but a
 * superuser (the coordinator's vecphi.keysync_apply()): a worker's own
 * categories would differ from the coordinator's.
 */
PG_FUNCTION_INFO_V1(vecphi_role_categories_changed);
Datum
vecphi_role_categories_changed(PG_FUNCTION_ARGS)
{
	CitusSendAllFn send;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("vecphi.role_categories_changed() may only be called as a trigger")));
	if (!citus_active())
		return PointerGetDatum(NULL);
	if (citus_is_worker())
	{
		if (!superuser())
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("vecphi.role_categories must be changed on the Citus coordinator"),
					 errdetail("This node is a Citus worker; its role categories are copies of the coordinator's.")));
		return PointerGetDatum(NULL);
	}
	send = (CitusSendAllFn) citus_function("SendCommandToWorkersWithMetadataViaSuperUser");
	send(keysync_command(construct_empty_array(INT4OID), true));
	return PointerGetDatum(NULL);
}

/*
 * vecphi.erasure_salt_sync(): make sure the coordinator has an erasure salt
 * and send it to every worker with metadata, in this transaction.
 * vecphi.track_erasure() calls it before putting its trigger on a
 * distributed table, so every shard's deletions are digested under the one
 * salt from the first.  Without Citus, or on a worker, it does nothing.
 */
PG_FUNCTION_INFO_V1(vecphi_erasure_salt_sync);
Datum
vecphi_erasure_salt_sync(PG_FUNCTION_ARGS)
{
	PrivSql		ps;
	int			rc;

	if (!citus_active() || citus_is_worker())
		PG_RETURN_VOID();

	privsql_begin(&ps, extension_owner_by_name("vecphi"));
	rc = privsql_execute(&ps,
						 "INSERT INTO vecphi.erasure_salt (salt) "
						 "SELECT pg_catalog.decode(pg_catalog.replace("
						 "pg_catalog.gen_random_uuid()::pg_catalog.text OPERATOR(pg_catalog.||) "
						 "pg_catalog.gen_random_uuid()::pg_catalog.text, '-', ''), 'hex') "
						 "WHERE NOT EXISTS (SELECT 1 FROM vecphi.erasure_salt) "
						 "ON CONFLICT DO NOTHING",
						 0, NULL, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "vecphi: could not create the erasure salt (%s)",
			 SPI_result_code_string(rc));
	privsql_end(&ps);

	/* No tenant named: the keyring identity and the salt only. */
	keysync_tenant(0);
	PG_RETURN_VOID();
}
