/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  Questions vecphi asks of Citus, answered by Citus's own functions
 *	  looked up at run time (see citus.h).
 *
 * The functions used and what they are in Citus 13.2: they are exported,
 * not a promised API, so vecphi_citus_function() returns NULL for any that
 * a future Citus no longer has, and every caller then does without:
 *
 *	GetCurrentDistributedTransactionId()  the backend's distributed
 *		transaction: {initiator node id, originator flag, number, stamp}
 *	GetGlobalPID()	global PID of the backend, or on a worker serving the
 *		coordinator, that of the coordinator's backend (Citus passes it in
 *		application_name)
 *	RelationIsAKnownShard(Oid), ExtractShardIdFromTableName(name, missing_ok),
 *	LookupShardRelationFromCatalog(shardid, missing_ok)  shard -> table
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/varlena.h"

#include "citus.h"

/* Citus 13's DistributedTransactionId (transaction_identifier.h). */
typedef bool (*IsCitusTableFn) (Oid relationId);
typedef int (*LocalExecStatusFn) (void);
typedef struct CitusDistributedTransactionId
{
	int			initiatorNodeIdentifier;
	bool		transactionOriginator;
	uint64		transactionNumber;
	TimestampTz timestamp;
}			CitusDistributedTransactionId;

typedef CitusDistributedTransactionId * (*GetTxnFn) (void);
typedef uint64 (*GetGpidFn) (void);
typedef bool (*IsShardFn) (Oid relid);
typedef uint64 (*ShardIdFn) (const char *name, bool missing_ok);
typedef Oid (*ShardTableFn) (int64 shardid, bool missing_ok);

bool
vecphi_citus_preloaded(void)
{
	static int	preloaded = -1;

	if (preloaded < 0)
	{
		const char *libs = GetConfigOption("shared_preload_libraries", true, false);
		char	   *copy = pstrdup(libs != NULL ? libs : "");
		List	   *names = NIL;
		ListCell   *lc;

		preloaded = 0;
		if (SplitDirectoriesString(copy, ',', &names))
		{
			foreach(lc, names)
			{
				const char *name = lfirst(lc);
				const char *base = strrchr(name, '/');

				base = base != NULL ? base + 1 : name;
				if (strcmp(base, "citus") == 0 || strcmp(base, "citus.so") == 0)
					preloaded = 1;
			}
		}
	}
	return preloaded == 1;
}

void *
vecphi_citus_function(const char *name)
{
	if (!vecphi_citus_preloaded())
		return NULL;
	/* The library is loaded already: this finds it, it loads nothing. */
	return (void *) load_external_function("citus", name, false, NULL);
}

/*
 * The functions every audit record asks for, looked up once per backend
 * (load_external_function() stats the library file each time): the
 * library never unloads, so the addresses stay valid.
 */
static GetTxnFn cached_get_txn;
static GetGpidFn cached_get_gpid;
static IsShardFn cached_is_shard;
static ShardIdFn cached_shard_id;
static ShardTableFn cached_shard_table;
static bool functions_looked_up = false;

static void
citus_lookup_functions(void)
{
	if (functions_looked_up)
		return;
	cached_get_txn = (GetTxnFn) vecphi_citus_function("GetCurrentDistributedTransactionId");
	cached_get_gpid = (GetGpidFn) vecphi_citus_function("GetGlobalPID");
	cached_is_shard = (IsShardFn) vecphi_citus_function("RelationIsAKnownShard");
	cached_shard_id = (ShardIdFn) vecphi_citus_function("ExtractShardIdFromTableName");
	cached_shard_table = (ShardTableFn) vecphi_citus_function("LookupShardRelationFromCatalog");
	functions_looked_up = true;
}

/*
 * get_extension_oid() scans pg_extension (no syscache): the answer is kept
 * while the local transaction and its command counter stay the same, as
 * every audited statement asks.  CREATE or DROP EXTENSION advances the
 * command counter, so the next call looks again; a read-only transaction
 * (a worker serving a search, one statement per shard) asks once.
 */
bool
vecphi_citus_active(void)
{
	static LocalTransactionId cached_lxid = InvalidLocalTransactionId;
	static CommandId cached_cid = InvalidCommandId;
	static bool cached_active = false;
	CommandId	cid;

	if (!IsTransactionState() || !vecphi_citus_preloaded())
		return false;
	cid = GetCurrentCommandId(false);
	if (MyProc == NULL || cached_lxid == InvalidLocalTransactionId ||
		MyProc->lxid != cached_lxid || cid != cached_cid)
	{
		cached_active = OidIsValid(get_extension_oid("citus", true));
		cached_lxid = MyProc != NULL ? MyProc->lxid : InvalidLocalTransactionId;
		cached_cid = cid;
	}
	return cached_active;
}

bool
vecphi_citus_current_txn(CitusTxn * txn)
{
	CitusDistributedTransactionId *id;

	if (!vecphi_citus_active())
		return false;
	citus_lookup_functions();
	if (cached_get_txn == NULL || cached_get_gpid == NULL)
		return false;
	id = cached_get_txn();
	if (id == NULL || id->transactionNumber == 0)
		return false;
	txn->initiator_node = id->initiatorNodeIdentifier;
	txn->number = id->transactionNumber;
	txn->gpid = cached_get_gpid();
	return true;
}

Oid
vecphi_citus_shard_table(Oid relid, uint64 *shardid)
{
	char	   *name;

	if (!OidIsValid(relid) || !vecphi_citus_active())
		return InvalidOid;
	citus_lookup_functions();
	if (cached_is_shard == NULL || cached_shard_id == NULL ||
		cached_shard_table == NULL)
		return InvalidOid;
	if (!cached_is_shard(relid))
		return InvalidOid;
	name = get_rel_name(relid);
	if (name == NULL)
		return InvalidOid;
	*shardid = cached_shard_id(name, true);
	if (*shardid == 0)
		return InvalidOid;
	return cached_shard_table((int64) *shardid, true);
}

bool
vecphi_citus_is_table(Oid relid)
{
	IsCitusTableFn is_table;

	if (!OidIsValid(relid) || !vecphi_citus_active())
		return false;
	is_table = (IsCitusTableFn) vecphi_citus_function("IsCitusTable");
	return is_table != NULL && is_table(relid);
}

bool
vecphi_citus_local_execution_required(void)
{
	LocalExecStatusFn status;

	if (!vecphi_citus_active())
		return false;
	status = (LocalExecStatusFn) vecphi_citus_function("GetCurrentLocalExecutionStatus");
	/* LOCAL_EXECUTION_REQUIRED is the first value of Citus's enum */
	return status != NULL && status() == 0;
}
