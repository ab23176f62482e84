/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Monitoring counters in shared memory (see stats.h).
 *
 * In the spirit of pg_stat_statements: a fixed-size shared hash of
 * activity counters keyed by (database, tenant, app role), vecphi.stat_max
 * entries (PGC_POSTMASTER); what does not fit any more is counted in one
 * overflow row, never dropped.  The hash's LWLock is taken shared to
 * count into an existing entry (each entry has a spinlock of its own) and
 * exclusively to add an entry or to reset.  The audit pipeline's and the
 * keys' totals sit under one spinlock.  No catalog write, no allocation,
 * no error on the counting paths: the audit counts while it reports an
 * error, the keys while a provider call fails.
 *
 * Data-key cache hits are the hottest counter (one per element an index
 * scan decrypts): each backend adds its hits in steps of
 * STATS_DEK_HIT_BATCH, so a reader sees them up to that many per backend
 * late (its own are added before it reads, the rest when it exits).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "stats.h"

#define STATS_DEK_HIT_BATCH 64

typedef struct StatsKey
{
	Oid			dboid;
	bool		has_tenant;
	bool		has_app_role;
	char		tenant[STATS_NAME_LEN];
	char		app_role[STATS_NAME_LEN];
} StatsKey;

typedef struct StatsCounters
{
	int64		index_scans;
	int64		exact_scans;
	int64		reads;
	int64		rows_returned;
	int64		decryptions;
	int64		denials;
	int64		permission_errors;
	int64		break_glass;
	TimestampTz last_activity;
} StatsCounters;

typedef struct StatsEntry
{
	StatsKey	key;			/* hash key: first */
	slock_t		mutex;
	StatsCounters c;
} StatsEntry;

typedef struct StatsShared
{
	LWLock	   *lock;			/* the hash */
	slock_t		mutex;			/* everything below */
	TimestampTz reset_time;
	StatsCounters overflow;
	StatsAuditTotals audit;
	StatsKeyTotals keys;
} StatsShared;

int			vecphi_stat_max = 1000;

static StatsShared *stats_shared = NULL;
static HTAB *stats_hash = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;
static int64 pending_dek_hits = 0;

static const char *const provider_names[STATS_KEK_PROVIDERS] = {
	"key_directory", "kek_command", "kek_destroy_command"
};


static Size
stats_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(StatsShared)),
					hash_estimate_size(vecphi_stat_max, sizeof(StatsEntry)));
}

static void
stats_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(stats_shmem_size());
	RequestNamedLWLockTranche("vecphi_stats", 1);
}

static void
stats_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	if (prev_shmem_startup)
		prev_shmem_startup();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	stats_shared = ShmemInitStruct("vecphi stats", sizeof(StatsShared), &found);
	if (!found)
	{
		memset(stats_shared, 0, sizeof(StatsShared));
		stats_shared->lock = &(GetNamedLWLockTranche("vecphi_stats"))->lock;
		SpinLockInit(&stats_shared->mutex);
		stats_shared->reset_time = GetCurrentTimestamp();
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(StatsKey);
	info.entrysize = sizeof(StatsEntry);
	stats_hash = ShmemInitHash("vecphi stats hash", vecphi_stat_max,
							   vecphi_stat_max, &info,
							   HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

/* The setting and the shared-memory hooks; called from _PG_init(). */
void
stats_init(void)
{
	DefineCustomIntVariable("vecphi.stat_max",
							"Most (database, tenant, app role) combinations vecphi's activity counters keep apart.",
							"Activity beyond it is counted in one overflow row of vecphi.stat_tenants.",
							&vecphi_stat_max,
							1000, 1, 1000000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

static void
counters_add(StatsCounters *c, StatsActivity kind, int64 rows,
			 bool break_glass, TimestampTz at)
{
	rows = Max(rows, 0);
	switch (kind)
	{
		case STATS_INDEX_SCAN:
			c->index_scans++;
			c->rows_returned += rows;
			break;
		case STATS_EXACT_SCAN:
			c->exact_scans++;
			c->rows_returned += rows;
			break;
		case STATS_READ:
			c->reads++;
			c->rows_returned += rows;
			break;
		case STATS_DECRYPT:
			c->decryptions += rows;
			break;
		case STATS_DENIAL:
			c->denials++;
			break;
		case STATS_PERMISSION_ERROR:
			c->permission_errors++;
			break;
	}
	if (break_glass && kind <= STATS_DECRYPT)
		c->break_glass++;
	if (at > c->last_activity)
		c->last_activity = at;
}

/*
 * Count one audit record of this database: a scan (rows returned), a
 * decryption (rows values), a denial, a permission error.  tenant and
 * app_role are the verified claims, NULL without.
 */
void
stats_count_activity(const char *tenant, const char *app_role,
					 StatsActivity kind, int64 rows, bool break_glass,
					 TimestampTz at)
{
	StatsKey	key;
	StatsEntry *entry;

	if (stats_shared == NULL)
		return;
	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.has_tenant = tenant != NULL;
	key.has_app_role = app_role != NULL;
	if (tenant != NULL)
		strlcpy(key.tenant, tenant, STATS_NAME_LEN);
	if (app_role != NULL)
		strlcpy(key.app_role, app_role, STATS_NAME_LEN);

	LWLockAcquire(stats_shared->lock, LW_SHARED);
	entry = hash_search(stats_hash, &key, HASH_FIND, NULL);
	if (entry == NULL)
	{
		LWLockRelease(stats_shared->lock);
		LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
		entry = hash_search(stats_hash, &key, HASH_FIND, NULL);
		if (entry == NULL &&
			hash_get_num_entries(stats_hash) < vecphi_stat_max)
		{
			bool		found;

			entry = hash_search(stats_hash, &key, HASH_ENTER_NULL, &found);
			if (entry != NULL && !found)
			{
				SpinLockInit(&entry->mutex);
				memset(&entry->c, 0, sizeof(entry->c));
			}
		}
	}
	if (entry != NULL)
	{
		SpinLockAcquire(&entry->mutex);
		counters_add(&entry->c, kind, rows, break_glass, at);
		SpinLockRelease(&entry->mutex);
	}
	else
	{
		SpinLockAcquire(&stats_shared->mutex);
		counters_add(&stats_shared->overflow, kind, rows, break_glass, at);
		SpinLockRelease(&stats_shared->mutex);
	}
	LWLockRelease(stats_shared->lock);
}

static void
flush_dek_hits(void)
{
	if (stats_shared == NULL || pending_dek_hits == 0)
		return;
	SpinLockAcquire(&stats_shared->mutex);
	stats_shared->keys.dek_cache_hits += pending_dek_hits;
	SpinLockRelease(&stats_shared->mutex);
	pending_dek_hits = 0;
}

static void
flush_dek_hits_at_exit(int code, Datum arg)
{
	flush_dek_hits();
}

/* A data key served from the backend's cache. */
void
stats_dek_hit(void)
{
	static bool exit_flush_registered = false;

	if (!exit_flush_registered && stats_shared != NULL)
	{
		/* A backend's last hits are added when it exits. */
		before_shmem_exit(flush_dek_hits_at_exit, (Datum) 0);
		exit_flush_registered = true;
	}
	if (++pending_dek_hits >= STATS_DEK_HIT_BATCH)
		flush_dek_hits();
}

/* A data key unwrapped (not in the cache). */
void
stats_dek_miss(void)
{
	if (stats_shared == NULL)
		return;
	flush_dek_hits();
	SpinLockAcquire(&stats_shared->mutex);
	stats_shared->keys.dek_cache_misses++;
	SpinLockRelease(&stats_shared->mutex);
}

/* A call of a KEK provider (a key file read, a command run). */
void
stats_kek_call(StatsKekProvider provider)
{
	if (stats_shared == NULL || provider >= STATS_KEK_PROVIDERS)
		return;
	SpinLockAcquire(&stats_shared->mutex);
	stats_shared->keys.calls[provider]++;
	SpinLockRelease(&stats_shared->mutex);
}

/* That call failed (it raises an error right after). */
void
stats_kek_failure(StatsKekProvider provider)
{
	TimestampTz now;

	if (stats_shared == NULL || provider >= STATS_KEK_PROVIDERS)
		return;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&stats_shared->mutex);
	stats_shared->keys.failures[provider]++;
	stats_shared->keys.last_failure = now;
	stats_shared->keys.last_failure_provider = provider;
	SpinLockRelease(&stats_shared->mutex);
}

/* The audit writer committed records (quarantined of them in the file). */
void
stats_audit_written(int64 records, int64 quarantined)
{
	TimestampTz now;

	if (stats_shared == NULL)
		return;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&stats_shared->mutex);
	stats_shared->audit.records_written += records;
	stats_shared->audit.records_quarantined += quarantined;
	stats_shared->audit.last_write = now;
	SpinLockRelease(&stats_shared->mutex);
}

/* A record could not be queued (counted for an audit_dropped record). */
void
stats_audit_lost(void)
{
	if (stats_shared == NULL)
		return;
	SpinLockAcquire(&stats_shared->mutex);
	stats_shared->audit.records_lost++;
	SpinLockRelease(&stats_shared->mutex);
}

/* Records discarded: their database's extension was dropped. */
void
stats_audit_discarded(int64 records)
{
	if (stats_shared == NULL)
		return;
	SpinLockAcquire(&stats_shared->mutex);
	stats_shared->audit.records_discarded += records;
	SpinLockRelease(&stats_shared->mutex);
}

static void
row_from(StatsTenantRow *row, const StatsCounters *c)
{
	row->index_scans = c->index_scans;
	row->exact_scans = c->exact_scans;
	row->reads = c->reads;
	row->rows_returned = c->rows_returned;
	row->decryptions = c->decryptions;
	row->denials = c->denials;
	row->permission_errors = c->permission_errors;
	row->break_glass = c->break_glass;
	row->last_activity = c->last_activity;
}

/*
 * A palloc'd copy of every activity row, the overflow row last (only when
 * something was counted in it); returns how many.
 */
int
stats_tenant_rows(StatsTenantRow **rows)
{
	HASH_SEQ_STATUS seq;
	StatsEntry *entry;
	StatsTenantRow *out;
	StatsCounters overflow;
	int			n = 0;
	int			max;

	*rows = NULL;
	if (stats_shared == NULL)
		return 0;
	LWLockAcquire(stats_shared->lock, LW_SHARED);
	max = (int) hash_get_num_entries(stats_hash) + 1;
	out = palloc0(sizeof(StatsTenantRow) * max);
	hash_seq_init(&seq, stats_hash);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		StatsTenantRow *row = &out[n++];

		row->dboid = entry->key.dboid;
		row->has_tenant = entry->key.has_tenant;
		row->has_app_role = entry->key.has_app_role;
		memcpy(row->tenant, entry->key.tenant, STATS_NAME_LEN);
		memcpy(row->app_role, entry->key.app_role, STATS_NAME_LEN);
		SpinLockAcquire(&entry->mutex);
		row_from(row, &entry->c);
		SpinLockRelease(&entry->mutex);
	}
	SpinLockAcquire(&stats_shared->mutex);
	overflow = stats_shared->overflow;
	SpinLockRelease(&stats_shared->mutex);
	LWLockRelease(stats_shared->lock);
	if (overflow.last_activity != 0)
	{
		out[n].overflow = true;
		row_from(&out[n], &overflow);
		n++;
	}
	*rows = out;
	return n;
}

void
stats_audit_totals(StatsAuditTotals *totals)
{
	memset(totals, 0, sizeof(*totals));
	if (stats_shared == NULL)
		return;
	SpinLockAcquire(&stats_shared->mutex);
	*totals = stats_shared->audit;
	SpinLockRelease(&stats_shared->mutex);
}

void
stats_key_totals(StatsKeyTotals *totals)
{
	memset(totals, 0, sizeof(*totals));
	if (stats_shared == NULL)
		return;
	flush_dek_hits();
	SpinLockAcquire(&stats_shared->mutex);
	*totals = stats_shared->keys;
	SpinLockRelease(&stats_shared->mutex);
}

TimestampTz
stats_reset_time(void)
{
	TimestampTz t = 0;

	if (stats_shared == NULL)
		return 0;
	SpinLockAcquire(&stats_shared->mutex);
	t = stats_shared->reset_time;
	SpinLockRelease(&stats_shared->mutex);
	return t;
}

/* Zero every counter and drop every activity entry. */
void
stats_reset_all(void)
{
	HASH_SEQ_STATUS seq;
	StatsEntry *entry;
	TimestampTz now = GetCurrentTimestamp();

	if (stats_shared == NULL)
		return;
	pending_dek_hits = 0;
	LWLockAcquire(stats_shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, stats_hash);
	while ((entry = hash_seq_search(&seq)) != NULL)
		hash_search(stats_hash, &entry->key, HASH_REMOVE, NULL);
	SpinLockAcquire(&stats_shared->mutex);
	memset(&stats_shared->overflow, 0, sizeof(StatsCounters));
	memset(&stats_shared->audit, 0, sizeof(StatsAuditTotals));
	memset(&stats_shared->keys, 0, sizeof(StatsKeyTotals));
	stats_shared->reset_time = now;
	SpinLockRelease(&stats_shared->mutex);
	LWLockRelease(stats_shared->lock);
}

/* "key_directory", "kek_command", "kek_destroy_command" */
const char *
stats_provider_name(int provider)
{
	if (provider < 0 || provider >= STATS_KEK_PROVIDERS)
		return NULL;
	return provider_names[provider];
}
