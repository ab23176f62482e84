/*-------------------------------------------------------------------------
 *
 * auditverify.c
 *	  The audit log's SQL functions: vecphi.verify_audit() (re-computing
 *	  the chain), vecphi.audit_head(), the retention purge, a standby's
 *	  records, and vecphi.audit_flush().
 *
 * The chain and the canonical form of a row they check: auditchain.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "common/string.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/fd.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "auditint.h"
#include "claims.h"
#include "crypto.h"
#include "hooks.h"
#include "keysettings.h"
#include "privsql.h"
#include "report.h"
#include "vecphi.h"

/* ---------- SQL functions ---------- */

static bool
parse_hex_hash(const char *hex, uint8 *out)
{
	if (hex == NULL || strlen(hex) != AUDIT_DIGEST_LEN * 2 ||
		strspn(hex, "0123456789abcdefABCDEF") != AUDIT_DIGEST_LEN * 2)
		return false;
	hex_decode(hex, AUDIT_DIGEST_LEN * 2, (char *) out);
	return true;
}

/*
 * Is a chain that starts at a row whose predecessor would be through_seq,
 * with prev_hash prev, covered by a retention purge's checkpoint record
 * ("purged through seq=N hash=H")?  Looked up for the first row only, so
 * that verify_audit() keeps nothing per purge.  Leaves SPI_tuptable
 * changed: the caller keeps its own pointer to the rows it is reading.
 */
static bool
purge_checkpoint_covers(int64 through_seq, const uint8 *prev)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	bool		covered = false;
	uint64		i;

	args[0] = CStringGetTextDatum(psprintf("purged through seq=" INT64_FORMAT " ",
										   through_seq));
	if (SPI_execute_with_args("SELECT detail FROM vecphi.audit_log "
							  "WHERE action OPERATOR(pg_catalog.=) 'audit_purge' "
							  "AND pg_catalog.starts_with(detail, $1)",
							  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read audit checkpoints");
	for (i = 0; i < SPI_processed && !covered; i++)
	{
		char	   *detail = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		long long	seq;
		char		hex[AUDIT_DIGEST_LEN * 2 + 1];
		uint8		hash[AUDIT_DIGEST_LEN];

		if (sscanf(detail, "purged through seq=%lld hash=%64s", &seq, hex) == 2 &&
			seq == through_seq && parse_hex_hash(hex, hash) &&
			memcmp(hash, prev, AUDIT_DIGEST_LEN) == 0)
			covered = true;
	}
	SPI_freetuptable(SPI_tuptable);
	return covered;
}

#define VERIFY_COLUMNS \
	"seq, at, db_user, backend_pid, statement_id, subject, tenant, app_role, " \
	"purpose, break_glass, break_glass_reason, action, relation, index_name, " \
	"rows_returned, row_ids, query_fingerprint, outcome, detail, prev_hash, row_hash"

/*
 * Was the head file's batch committed before the snapshot verify_audit()
 * reads the table with?  If not, the table as seen may rightly end before
 * the head file (a batch committed meanwhile), and its end is not checked.
 */
static bool
audit_head_visible(const AuditHead *head, Snapshot snapshot)
{
	uint64		next = U64FromFullTransactionId(ReadNextFullTransactionId());

	if (head->fxid == 0 || snapshot == NULL)
		return true;
	if (head->fxid >= next)
		return false;			/* not even replayed here yet (standby) */
	if (next - head->fxid > (uint64) (MaxTransactionId >> 1))
		return true;			/* long ago: beyond the 32-bit comparison */
	return !XidInMVCCSnapshot(XidFromFullTransactionId(FullTransactionIdFromU64(head->fxid)),
							  snapshot);
}

PG_FUNCTION_INFO_V1(vecphi_verify_audit);
Datum
vecphi_verify_audit(PG_FUNCTION_ARGS)
{
	bool		have_anchor = !PG_ARGISNULL(0);
	int64		anchor_seq = have_anchor ? PG_GETARG_INT64(0) : 0;
	uint8		anchor_hash[AUDIT_DIGEST_LEN];
	bool		anchor_seen = false;
	uint8		key[AUDIT_KEY_LEN];
	uint8		prev[AUDIT_DIGEST_LEN];
	int64		last_seq = 0;
	int64		checked = 0;
	int64		bad_seq = 0;
	char	   *problem = NULL;
	Portal		portal;
	MemoryContext batch_cxt;
	TupleDesc	result_desc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	MemoryContext caller_cxt = CurrentMemoryContext;
	PrivSql		ps;
	AuditHead	head;
	bool		have_head;
	bool		head_row_seen = false;
	bool		head_row_matches = false;
	int64		records_lost = 0;
	Snapshot	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : NULL;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (have_anchor &&
		(PG_ARGISNULL(1) || !parse_hex_hash(text_to_cstring(PG_GETARG_TEXT_PP(1)), anchor_hash)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("anchor_hash must be the 64 hexadecimal digits vecphi.audit_head() returned")));

	audit_load_key(key, false);
	auditqueue_wait_anchored();
	have_head = audit_head_file_read(&head);
	privsql_begin(&ps, InvalidOid);

	/*
	 * Streamed: rows are fetched in batches of 1000 through a cursor, and
	 * everything made for a batch (its tuples, the columns' text) is freed
	 * before the next, so memory does not grow with the log.
	 */
	batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "vecphi verify_audit batch",
									  ALLOCSET_DEFAULT_SIZES);
	portal = SPI_cursor_open_with_args("vecphi_verify_audit",
									   "SELECT " VERIFY_COLUMNS " FROM vecphi.audit_log ORDER BY seq",
									   0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		uint64		i;
		uint64		nrows;
		SPITupleTable *batch;
		MemoryContext old;

		SPI_cursor_fetch(portal, true, 1000);
		batch = SPI_tuptable;
		nrows = SPI_processed;
		if (nrows == 0)
		{
			SPI_freetuptable(batch);
			break;
		}
		old = MemoryContextSwitchTo(batch_cxt);
		for (i = 0; i < nrows && problem == NULL; i++)
		{
			HeapTuple	tup = batch->vals[i];
			TupleDesc	desc = batch->tupdesc;
			const char *vals[AUDIT_HASHED_COLUMNS];
			bool		isnull;
			int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			bytea	   *stored_prev = DatumGetByteaPP(SPI_getbinval(tup, desc, 20, &isnull));
			bytea	   *stored_hash = DatumGetByteaPP(SPI_getbinval(tup, desc, 21, &isnull));
			uint8		hash[AUDIT_DIGEST_LEN];
			int			c;

			for (c = 0; c < AUDIT_HASHED_COLUMNS; c++)
				vals[c] = SPI_getvalue(tup, desc, c + 1);
			vals[AC_AT] = psprintf(INT64_FORMAT,
								   (int64) DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull)));

			if (VARSIZE_ANY_EXHDR(stored_prev) != AUDIT_DIGEST_LEN ||
				VARSIZE_ANY_EXHDR(stored_hash) != AUDIT_DIGEST_LEN)
				problem = "hash columns are malformed";
			else if (checked == 0)
			{
				bool		start_ok = false;

				if (seq == 1)
				{
					memset(prev, 0, AUDIT_DIGEST_LEN);
					start_ok = memcmp(VARDATA_ANY(stored_prev), prev, AUDIT_DIGEST_LEN) == 0;
				}
				else
					start_ok = purge_checkpoint_covers(seq - 1,
													   (const uint8 *) VARDATA_ANY(stored_prev));
				if (!start_ok)
					problem = "the first row is neither the start of the chain nor covered by a purge checkpoint";
			}
			else if (seq != last_seq + 1)
				problem = "rows are missing before this one (sequence gap)";
			else if (memcmp(VARDATA_ANY(stored_prev), prev, AUDIT_DIGEST_LEN) != 0)
				problem = "prev_hash does not match the row before";

			if (problem == NULL)
			{
				audit_chain_hash(key, (const uint8 *) VARDATA_ANY(stored_prev), vals, hash);
				if (!crypto_equal(hash, VARDATA_ANY(stored_hash), AUDIT_DIGEST_LEN))
					problem = "the row's contents do not match its hash (edited)";
			}
			if (problem == NULL && have_anchor && seq == anchor_seq)
			{
				anchor_seen = true;
				if (memcmp(anchor_hash, VARDATA_ANY(stored_hash), AUDIT_DIGEST_LEN) != 0)
					problem = "the row's hash differs from the exported anchor (chain rewritten)";
			}
			if (problem != NULL)
			{
				bad_seq = seq;
				break;
			}
			if (have_head && seq == head.seq)
			{
				head_row_seen = true;
				head_row_matches = memcmp(head.hash, VARDATA_ANY(stored_hash),
										  AUDIT_DIGEST_LEN) == 0;
			}
			if (vals[AC_ACTION] != NULL && vals[AC_ROWS_RETURNED] != NULL &&
				strcmp(vals[AC_ACTION], AUDIT_ACTION_DROPPED) == 0)
				records_lost += pg_strtoint64(vals[AC_ROWS_RETURNED]);
			memcpy(prev, VARDATA_ANY(stored_hash), AUDIT_DIGEST_LEN);
			last_seq = seq;
			checked++;
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(batch);
		MemoryContextReset(batch_cxt);
		if (problem != NULL)
			break;
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(batch_cxt);
	if (problem == NULL && have_anchor && !anchor_seen)
	{
		problem = "the anchored row is missing";
		bad_seq = anchor_seq;
	}

	/*
	 * The head file: the table must reach the newest record a writer
	 * committed (unless that commit is newer than this snapshot), with the
	 * same hash.  A standby checks against the primary's head file when it
	 * has a copy; it writes none itself, so a missing one is no finding.
	 */
	if (problem == NULL && !have_head && checked > 0 && !RecoveryInProgress())
	{
		problem = psprintf("the audit head file \"%s\" is missing: deleted newest records cannot be detected",
						   audit_head_file_path());
		bad_seq = last_seq;
	}
	else if (problem == NULL && have_head && audit_head_visible(&head, snapshot))
	{
		if (head.seq > last_seq)
		{
			problem = psprintf("newest records missing: seq " INT64_FORMAT ".." INT64_FORMAT,
							   last_seq + 1, head.seq);
			bad_seq = last_seq + 1;
		}
		else if (head_row_seen && !head_row_matches)
		{
			problem = "the row's hash differs from the audit head file (chain rewritten)";
			bad_seq = head.seq;
		}
	}
	if (problem != NULL)
		problem = MemoryContextStrdup(caller_cxt, problem);
	privsql_end(&ps);
	crypto_wipe(key, sizeof(key));

	values[0] = BoolGetDatum(problem == NULL);
	values[1] = Int64GetDatum(checked);
	values[4] = Int64GetDatum(records_lost);
	if (problem == NULL)
	{
		nulls[2] = true;
		nulls[3] = true;
	}
	else
	{
		values[2] = Int64GetDatum(bad_seq);
		values[3] = CStringGetTextDatum(problem);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc),
													  values, nulls)));
}

PG_FUNCTION_INFO_V1(vecphi_audit_head);
Datum
vecphi_audit_head(PG_FUNCTION_ARGS)
{
	TupleDesc	result_desc;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};
	MemoryContext caller_cxt = CurrentMemoryContext;
	PrivSql		ps;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	privsql_begin(&ps, InvalidOid);
	if (SPI_execute("SELECT seq, pg_catalog.encode(row_hash, 'hex'), at FROM vecphi.audit_log ORDER BY seq DESC LIMIT 1",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read vecphi.audit_log");
	if (SPI_processed == 1)
	{
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(caller_cxt);

		values[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		values[1] = CStringGetTextDatum(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
		values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
		MemoryContextSwitchTo(old);
		nulls[0] = nulls[1] = nulls[2] = false;
	}
	privsql_end(&ps);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc),
													  values, nulls)));
}

/*
 * Remove the rows older than vecphi.audit_retention.  The rows go in seq
 * order up to the first row still within retention, and a checkpoint row
 * naming the last removed seq and its hash is made durable first, so that
 * verify_audit() can start the chain from there.
 */
PG_FUNCTION_INFO_V1(vecphi_purge_audit);
Datum
vecphi_purge_audit(PG_FUNCTION_ARGS)
{
	TimestampTz cutoff;
	int64		through = 0;
	char	   *hash_hex = NULL;
	uint64		removed = 0;
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		args[1];
	PrivSql		ps;

	if (!vecphi_audit_enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot purge the audit log while vecphi.audit is off"),
				 errdetail("The purge writes a checkpoint record that keeps the chain verifiable.")));
	cutoff = GetCurrentTimestamp() - (TimestampTz) vecphi_audit_retention_min * USECS_PER_MINUTE;
	args[0] = TimestampTzGetDatum(cutoff);

	privsql_begin(&ps, InvalidOid);
	if (SPI_execute_with_args("SELECT seq, pg_catalog.encode(row_hash, 'hex') FROM vecphi.audit_log "
							  "WHERE seq OPERATOR(pg_catalog.<) coalesce("
							  "(SELECT pg_catalog.min(seq) FROM vecphi.audit_log WHERE at OPERATOR(pg_catalog.>=) $1), "
							  "(SELECT pg_catalog.max(seq) OPERATOR(pg_catalog.+) 1 FROM vecphi.audit_log)) "
							  "ORDER BY seq DESC LIMIT 1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read vecphi.audit_log");
	if (SPI_processed == 1)
	{
		bool		isnull;

		through = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		hash_hex = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	}
	if (through > 0)
	{
		AuditEvent	ev;
		char	   *detail = psprintf(CHECKPOINT_FORMAT, through, hash_hex);

		memset(&ev, 0, sizeof(ev));
		ev.action = AUDIT_ACTION_PURGE;
		ev.outcome = AUDIT_OUTCOME_OK;
		ev.rows = -1;
		ev.detail = detail;
		audit_emit(&ev, false);
		auditqueue_last_ticket_wait();

		audit_purge_through_seq = through;
		audit_purge_cutoff = cutoff;
		PG_TRY();
		{
			Oid			types[1] = {INT8OID};
			Datum		seqarg[1] = {Int64GetDatum(through)};

			if (SPI_execute_with_args("DELETE FROM vecphi.audit_log WHERE seq OPERATOR(pg_catalog.<=) $1",
									  1, types, seqarg, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not purge vecphi.audit_log");
			removed = SPI_processed;
		}
		PG_FINALLY();
		{
			audit_purge_through_seq = 0;
			audit_purge_cutoff = 0;
		}
		PG_END_TRY();
	}
	privsql_end(&ps);
	PG_RETURN_INT64((int64) removed);
}

/* Undo append_escaped() of the standby file, in place. */
static char *
unescape_field(char *s)
{
	char	   *in = s;
	char	   *out = s;

	if (strcmp(s, "\\N") == 0)
		return NULL;
	while (*in)
	{
		if (*in == '\\' && in[1] != '\0')
		{
			in++;
			*out++ = *in == 't' ? '\t' : *in == 'n' ? '\n' : *in == 'r' ? '\r' : *in;
			in++;
		}
		else
			*out++ = *in++;
	}
	*out = '\0';
	return s;
}

/*
 * The records a hot standby's writer appended to its local file, each
 * with its chain re-checked (chain_ok).  On a primary the file normally
 * does not exist (it may be left from before a promotion).
 */
PG_FUNCTION_INFO_V1(vecphi_standby_audit_log);
Datum
vecphi_standby_audit_log(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *path = audit_standby_file_path();
	FILE	   *fh;
	StringInfoData line;
	uint8		key[AUDIT_KEY_LEN];
	uint8		prev[AUDIT_DIGEST_LEN];
	bool		key_loaded = false;

	InitMaterializedSRF(fcinfo, 0);
	fh = AllocateFile(path, "r");
	if (fh == NULL)
	{
		if (errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not open standby audit file \"%s\": %m", path)));
		PG_RETURN_VOID();
	}
	memset(prev, 0, sizeof(prev));
	initStringInfo(&line);
	while (pg_get_line_buf(fh, &line))
	{
		char	   *fields[AUDIT_HASHED_COLUMNS + 2];
		char	   *record;
		const char *vals[AUDIT_HASHED_COLUMNS];
		char	   *p;
		int			n = 0;
		Datum		values[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};
		uint8		hash[AUDIT_DIGEST_LEN];
		uint8		stored_hash[AUDIT_DIGEST_LEN];
		uint8		stored_prev[AUDIT_DIGEST_LEN];
		bool		ok;
		int			i;

		if (line.len > 0 && line.data[line.len - 1] == '\n')
			line.data[--line.len] = '\0';
		record = pstrdup(line.data);
		/* seq, hash, prev hash, then the columns after seq. */
		for (p = line.data; n < AUDIT_HASHED_COLUMNS + 2;)
		{
			fields[n++] = p;
			p = strchr(p, '\t');
			if (p == NULL)
				break;
			*p++ = '\0';
		}
		if (n != AUDIT_HASHED_COLUMNS + 2 ||
			!parse_hex_hash(fields[1], stored_hash) ||
			!parse_hex_hash(fields[2], stored_prev))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("standby audit file \"%s\" has a malformed line", path)));
		vals[AC_SEQ] = fields[0];
		for (i = AC_AT; i < AUDIT_HASHED_COLUMNS; i++)
			vals[i] = unescape_field(fields[i + 2]);
		if (!key_loaded)
		{
			audit_load_key(key, false);
			key_loaded = true;
		}
		audit_chain_hash(key, stored_prev, vals, hash);
		ok = crypto_equal(hash, stored_hash, AUDIT_DIGEST_LEN) &&
			memcmp(prev, stored_prev, AUDIT_DIGEST_LEN) == 0;
		memcpy(prev, stored_hash, AUDIT_DIGEST_LEN);

		values[0] = Int64GetDatum(pg_strtoint64(vals[AC_SEQ]));
		values[1] = TimestampTzGetDatum((TimestampTz) pg_strtoint64(vals[AC_AT]));
		values[2] = CStringGetTextDatum(vals[AC_DB_USER] ? vals[AC_DB_USER] : "");
		values[3] = CStringGetTextDatum(vals[AC_ACTION] ? vals[AC_ACTION] : "");
		values[4] = CStringGetTextDatum(record);
		values[5] = CStringGetTextDatum(fields[1]);
		values[6] = BoolGetDatum(ok);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	FreeFile(fh);
	if (key_loaded)
		crypto_wipe(key, sizeof(key));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(vecphi_audit_flush);
Datum
vecphi_audit_flush(PG_FUNCTION_ARGS)
{
	auditqueue_last_ticket_wait();
	PG_RETURN_INT64((int64) auditqueue_pending());
}
