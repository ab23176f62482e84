/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Monitoring counters in shared memory: activity per (database, tenant,
 *	  app role), the audit pipeline's totals, the keys' cache and providers.
 *
 * The counters live here, at the bottom, so that every layer can count
 * without calling upward: the audit counts each record it queues
 * (auditchain.c) and what its writer commits (auditwriter.c), the keys
 * count their cache and provider calls.  The SQL functions that read and
 * reset them, with the rules of who may, are in audit/auditstats.c.
 *
 * Counters are in memory only: a restart sets them to zero (stats_reset
 * then says when counting began).  docs/monitoring.md.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_STATS_H
#define VECPHI_STATS_H

#include "datatype/timestamp.h"

/* Longest tenant or app role kept (a claim value's limit, 256 bytes). */
#define STATS_NAME_LEN		257

/* What an audit record counts as in the activity counters. */
typedef enum StatsActivity
{
	STATS_INDEX_SCAN,
	STATS_EXACT_SCAN,
	STATS_READ,
	STATS_DECRYPT,
	STATS_DENIAL,
	STATS_PERMISSION_ERROR
} StatsActivity;

/* KEK providers, by kind. */
typedef enum StatsKekProvider
{
	STATS_KEY_DIRECTORY,
	STATS_KEK_COMMAND,
	STATS_KEK_DESTROY_COMMAND,
	STATS_KEK_PROVIDERS
} StatsKekProvider;

/* One row of the activity counters, as copied out for a reader. */
typedef struct StatsTenantRow
{
	bool		overflow;		/* the row of entries beyond vecphi.stat_max */
	Oid			dboid;
	bool		has_tenant;
	bool		has_app_role;
	char		tenant[STATS_NAME_LEN];
	char		app_role[STATS_NAME_LEN];
	int64		index_scans;
	int64		exact_scans;
	int64		reads;
	int64		rows_returned;
	int64		decryptions;
	int64		denials;
	int64		permission_errors;
	int64		break_glass;
	TimestampTz last_activity;
} StatsTenantRow;

typedef struct StatsAuditTotals
{
	int64		records_written;
	int64		records_lost;
	int64		records_quarantined;
	int64		records_discarded;
	TimestampTz last_write;		/* 0: none since the reset */
} StatsAuditTotals;

typedef struct StatsKeyTotals
{
	int64		dek_cache_hits;
	int64		dek_cache_misses;
	int64		calls[STATS_KEK_PROVIDERS];
	int64		failures[STATS_KEK_PROVIDERS];
	TimestampTz last_failure;	/* 0: none since the reset */
	int			last_failure_provider;
} StatsKeyTotals;

extern int	vecphi_stat_max;

extern void stats_init(void);

/* Counting (never raise, never allocate: safe in error paths). */
extern void stats_count_activity(const char *tenant, const char *app_role,
								 StatsActivity kind, int64 rows,
								 bool break_glass, TimestampTz at);
extern void stats_dek_hit(void);
extern void stats_dek_miss(void);
extern void stats_kek_call(StatsKekProvider provider);
extern void stats_kek_failure(StatsKekProvider provider);
extern void stats_audit_written(int64 records, int64 quarantined);
extern void stats_audit_lost(void);
extern void stats_audit_discarded(int64 records);

/* Reading and resetting (audit/auditstats.c checks who may). */
extern int	stats_tenant_rows(StatsTenantRow **rows);
extern void stats_audit_totals(StatsAuditTotals *totals);
extern void stats_key_totals(StatsKeyTotals *totals);
extern TimestampTz stats_reset_time(void);
extern void stats_reset_all(void);
extern const char *stats_provider_name(int provider);

#endif							/* VECPHI_STATS_H */
