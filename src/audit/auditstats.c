/*-------------------------------------------------------------------------
 *
 * auditstats.c
 *	  The monitoring functions behind the views vecphi.stat_tenants,
 *	  vecphi.stat_audit and vecphi.stat_keys, and vecphi.stat_reset().
 *
 * The counters are in common/stats.c; this file decides who sees what,
 * and reads the audit queue's live state under its lock.
 *
 * Who may read.  A tenant's activity is itself sensitive (how often a
 * hospital searches, how many denials it has), so the rule is in C, not
 * only in GRANTs that someone could widen: superusers, members of
 * pg_read_all_stats (pg_monitor is one) and of vecphi_security_officer
 * see every row of every database; any other role sees, in
 * vecphi.stat_tenants, only the rows of the current database whose tenant
 * is the tenant of its verified claims (no claims: no rows), and never the
 * overflow row.  vecphi.stat_audit and vecphi.stat_keys are refused to
 * them (a vecphi denial, recorded).
 *
 * Who may reset.  Resetting hides activity, so only a superuser or a
 * member of vecphi_security_officer may, and the reset is recorded first
 * (a stats_reset record, awaited: when the audit cannot write it, nothing
 * is reset).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid_d.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "auditint.h"
#include "auditqueue.h"
#include "claims.h"
#include "report.h"
#include "stats.h"

#define OFFICER_ROLE "vecphi_security_officer"

/* Superuser, pg_read_all_stats (and pg_monitor) or the security officer. */
static bool
stats_reader_sees_all(void)
{
	Oid			user = GetUserId();
	Oid			officer = get_role_oid(OFFICER_ROLE, true);

	return superuser() ||
		has_privs_of_role(user, ROLE_PG_READ_ALL_STATS) ||
		(OidIsValid(officer) && has_privs_of_role(user, officer));
}

static void
stats_require_reader(void)
{
	if (!stats_reader_sees_all())
		vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE,
					"permission denied to read vecphi statistics", NULL,
					errhint("Members of pg_read_all_stats, pg_monitor or vecphi_security_officer may read them."));
}

static Datum
timestamp_or_null(TimestampTz t, bool *isnull)
{
	*isnull = t == 0;
	return TimestampTzGetDatum(t);
}

PG_FUNCTION_INFO_V1(vecphi_stat_tenants);
Datum
vecphi_stat_tenants(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StatsTenantRow *rows;
	int			n;
	int			i;
	bool		all = stats_reader_sees_all();
	const char *own_tenant = NULL;

	InitMaterializedSRF(fcinfo, 0);
	if (!all)
	{
		const VecphiClaims *claims = claims_current();

		if (claims == NULL || claims->tenant == NULL)
			PG_RETURN_VOID();
		own_tenant = claims->tenant;
	}
	n = stats_tenant_rows(&rows);
	for (i = 0; i < n; i++)
	{
		StatsTenantRow *r = &rows[i];
		Datum		values[13];
		bool		nulls[13];

		if (!all &&
			(r->overflow || r->dboid != MyDatabaseId || !r->has_tenant ||
			 strcmp(r->tenant, own_tenant) != 0))
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = ObjectIdGetDatum(r->dboid);
		nulls[0] = r->overflow;
		values[1] = r->has_tenant ? CStringGetTextDatum(r->tenant) : (Datum) 0;
		nulls[1] = !r->has_tenant;
		values[2] = r->has_app_role ? CStringGetTextDatum(r->app_role) : (Datum) 0;
		nulls[2] = !r->has_app_role;
		values[3] = Int64GetDatum(r->index_scans);
		values[4] = Int64GetDatum(r->exact_scans);
		values[5] = Int64GetDatum(r->reads);
		values[6] = Int64GetDatum(r->rows_returned);
		values[7] = Int64GetDatum(r->decryptions);
		values[8] = Int64GetDatum(r->denials);
		values[9] = Int64GetDatum(r->permission_errors);
		values[10] = Int64GetDatum(r->break_glass);
		values[11] = timestamp_or_null(r->last_activity, &nulls[11]);
		values[12] = BoolGetDatum(r->overflow);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(vecphi_stat_audit);
Datum
vecphi_stat_audit(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[13];
	bool		nulls[13];
	StatsAuditTotals totals;
	int			channels = 0;
	int			writers = 0;
	uint64		records = 0;
	uint64		bytes = 0;
	uint64		lost_pending = 0;
	TimestampTz oldest = 0;
	int			i;

	stats_require_reader();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* The queue as it stands, under its lock (auditqueue.c). */
	if (audit_shared != NULL)
	{
		LWLockAcquire(audit_shared->lock, LW_SHARED);
		for (i = 0; i < AUDIT_CHANNELS; i++)
		{
			AuditChannel *ch = &audit_shared->channels[i];

			if (ch->dboid == InvalidOid)
				continue;
			channels++;
			if (ch->state == WRITER_RUNNING)
				writers++;
			records += ch->next_ticket - ch->durable_ticket;
			bytes += ch->head - ch->tail;
			lost_pending += ch->dropped;
			if (ch->head != ch->tail)
			{
				TimestampTz at;

				/*
				 * The oldest record not yet committed: its time is the first
				 * field after the length word (auditchain.c, the record's
				 * fixed part).  [tail, head) cannot move under our lock.
				 */
				audit_ring_read(ch, ch->tail + sizeof(uint32), (char *) &at,
								sizeof(TimestampTz));
				if (oldest == 0 || at < oldest)
					oldest = at;
			}
		}
		lost_pending += audit_shared->dropped_unattributed;
		LWLockRelease(audit_shared->lock);
	}
	stats_audit_totals(&totals);

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(channels);
	values[1] = Int32GetDatum(writers);
	values[2] = Int64GetDatum((int64) records);
	values[3] = Int64GetDatum((int64) bytes);
	values[4] = Int64GetDatum((int64) lost_pending);
	values[5] = timestamp_or_null(oldest, &nulls[5]);
	if (oldest != 0)
		values[6] = DirectFunctionCall2(timestamp_mi,
										TimestampTzGetDatum(GetCurrentTimestamp()),
										TimestampTzGetDatum(oldest));
	else
		nulls[6] = true;
	values[7] = Int64GetDatum(totals.records_written);
	values[8] = Int64GetDatum(totals.records_lost);
	values[9] = Int64GetDatum(totals.records_quarantined);
	values[10] = Int64GetDatum(totals.records_discarded);
	values[11] = timestamp_or_null(totals.last_write, &nulls[11]);
	values[12] = timestamp_or_null(stats_reset_time(), &nulls[12]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(vecphi_stat_keys);
Datum
vecphi_stat_keys(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[11];
	bool		nulls[11];
	StatsKeyTotals totals;
	int			p;

	stats_require_reader();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	stats_key_totals(&totals);
	memset(nulls, 0, sizeof(nulls));
	values[0] = Int64GetDatum(totals.dek_cache_hits);
	values[1] = Int64GetDatum(totals.dek_cache_misses);
	for (p = 0; p < STATS_KEK_PROVIDERS; p++)
	{
		values[2 + 2 * p] = Int64GetDatum(totals.calls[p]);
		values[3 + 2 * p] = Int64GetDatum(totals.failures[p]);
	}
	values[8] = timestamp_or_null(totals.last_failure, &nulls[8]);
	if (totals.last_failure != 0)
		values[9] = CStringGetTextDatum(stats_provider_name(totals.last_failure_provider));
	else
		nulls[9] = true;
	values[10] = timestamp_or_null(stats_reset_time(), &nulls[10]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(vecphi_stat_reset);
Datum
vecphi_stat_reset(PG_FUNCTION_ARGS)
{
	Oid			officer = get_role_oid(OFFICER_ROLE, true);
	AuditEvent	ev;

	if (!superuser() &&
		!(OidIsValid(officer) && has_privs_of_role(GetUserId(), officer)))
		vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE,
					"permission denied to reset vecphi statistics", NULL,
					errhint("Only a superuser or a member of vecphi_security_officer may reset them."));

	/* Recorded first, and durably: a reset that is not recorded is none. */
	memset(&ev, 0, sizeof(ev));
	ev.action = AUDIT_ACTION_STATS_RESET;
	ev.outcome = AUDIT_OUTCOME_OK;
	ev.rows = -1;
	ev.detail = "vecphi monitoring counters reset (every database)";
	audit_emit(&ev, true);
	stats_reset_all();
	PG_RETURN_TIMESTAMPTZ(stats_reset_time());
}
