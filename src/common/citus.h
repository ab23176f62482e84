/*-------------------------------------------------------------------------
 *
 * citus.h
 *	  What vecphi asks of Citus, when Citus is loaded: the distributed
 *	  transaction a backend works for, its global process id, and the
 *	  distributed table a shard belongs to.
 *
 * vecphi never links against Citus: each function is looked up in the
 * already loaded citus library by name (load_external_function), and only
 * when "citus" is in shared_preload_libraries, so a server without Citus
 * neither loads nor needs it.  Every function answers "nothing" there.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_CITUS_H
#define VECPHI_CITUS_H

/* The Citus distributed transaction of this backend, if any. */
typedef struct CitusTxn
{
	int			initiator_node; /* node id (pg_dist_node) that started it */
	uint64		number;			/* its number on that node */
	uint64		gpid;			/* global PID of the backend that started it */
}			CitusTxn;

/* Is citus in shared_preload_libraries (so its symbols can be looked up)? */
extern bool vecphi_citus_preloaded(void);

/*
 * Is Citus active in this database: preloaded, and its extension created
 * (its catalogs there)?  In a transaction.
 */
extern bool vecphi_citus_active(void);

/* A function of the loaded citus library, or NULL without Citus. */
extern void *vecphi_citus_function(const char *name);

/*
 * Fill *txn and return true when this backend takes part in a Citus
 * distributed transaction (on the coordinator that started it, or on a
 * worker serving it).  In a transaction, with the citus extension created.
 */
extern bool vecphi_citus_current_txn(CitusTxn * txn);

/*
 * When relid is a shard of a Citus table (on a node that holds the Citus
 * metadata), its table's OID and *shardid; InvalidOid otherwise.
 */
extern Oid	vecphi_citus_shard_table(Oid relid, uint64 *shardid);

/*
 * Is relid a Citus table (distributed, reference or managed local: the
 * table Citus itself loads and queries, not one of its shards)?
 */
extern bool vecphi_citus_is_table(Oid relid);

/*
 * Has this transaction executed shard commands locally, so that Citus must
 * keep doing so (its LOCAL_EXECUTION_REQUIRED)?
 */
extern bool vecphi_citus_local_execution_required(void);

#endif							/* VECPHI_CITUS_H */
