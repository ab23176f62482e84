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

bool
vecphi_citus_active(void)
{
	return IsTransactionState() && vecphi_citus_preloaded() &&
		OidIsValid(get_extension_oid("citus", true));
}

bool
vecphi_citus_current_txn(CitusTxn * txn)
{
	GetTxnFn	get_txn;
	GetGpidFn	get_gpid;
	CitusDistributedTransactionId *id;

	if (!vecphi_citus_active())
		return false;
	get_txn = (GetTxnFn) vecphi_citus_function("GetCurrentDistributedTransactionId");
	get_gpid = (GetGpidFn) vecphi_citus_function("GetGlobalPID");
	if (get_txn == NULL || get_gpid == NULL)
		return false;
	id = get_txn();
	if (id == NULL || id->transactionNumber == 0)
		return false;
	txn->initiator_node = id->initiatorNodeIdentifier;
	txn->number = id->transactionNumber;
	txn->gpid = get_gpid();
	return true;
}

Oid
vecphi_citus_shard_table(Oid relid, uint64 *shardid)
{
	IsShardFn	is_shard;
	ShardIdFn	shard_id;
	ShardTableFn shard_table;
	char	   *name;

	if (!OidIsValid(relid) || !vecphi_citus_active())
		return InvalidOid;
	is_shard = (IsShardFn) vecphi_citus_function("RelationIsAKnownShard");
	shard_id = (ShardIdFn) vecphi_citus_function("ExtractShardIdFromTableName");
	shard_table = (ShardTableFn) vecphi_citus_function("LookupShardRelationFromCatalog");
	if (is_shard == NULL || shard_id == NULL || shard_table == NULL)
		return InvalidOid;
	if (!is_shard(relid))
		return InvalidOid;
	name = get_rel_name(relid);
	if (name == NULL)
		return InvalidOid;
	*shardid = shard_id(name, true);
	if (*shardid == 0)
		return InvalidOid;
	return shard_table((int64) *shardid, true);
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
