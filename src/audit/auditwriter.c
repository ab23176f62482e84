/*-------------------------------------------------------------------------
 *
 * auditwriter.c
 *	  The audit writer: the background worker of a database that drains
 *	  its channel into vecphi.audit_log (or, on a hot standby, a file) in
 *	  one transaction per batch, and releases the waiting backends.
 *
 * The design of the queue and its guarantees: the top of auditqueue.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/parallel.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "catalog/pg_type.h"
#include "common/string.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "auditint.h"
#include "auditqueue.h"
#include "crypto.h"
#include "privsql.h"
#include "stats.h"

/* ---------- the writer ---------- */

static AuditChannel *writer_channel = NULL;

/* Chain state of the writer. */
static uint8 writer_key[AUDIT_KEY_LEN];
static int64 writer_last_seq = 0;
static uint8 writer_last_hash[AUDIT_DIGEST_LEN];
static bool writer_chain_loaded = false;
static bool writer_standby_mode = false;
static SPIPlanPtr writer_insert_plan = NULL;
static MemoryContext writer_batch_cxt = NULL;

/* The batch being written was committed, and its backends released. */
static bool writer_batch_committed = false;

/* The head file to write (writer_write_head()), and when it last was. */
static bool writer_head_pending = false;
static AuditHead writer_pending_head;
static TimestampTz writer_head_written_at = 0;

static void
writer_detach(int code, Datum arg)
{
	if (writer_channel == NULL)
		return;
	/* A committed batch the head file does not name yet (shutdown). */
	if (writer_head_pending)
	{
		audit_head_file_write(&writer_pending_head);
		writer_head_pending = false;
	}
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	if (writer_channel->writer_pid == MyProcPid)
	{
		writer_channel->state = WRITER_STOPPED;
		writer_channel->writer_pid = 0;
		writer_channel->writer_latch = NULL;
		/* Nothing left in it: free it for other databases. */
		if (audit_channel_is_idle(writer_channel))
			audit_channel_release(writer_channel);
	}
	LWLockRelease(audit_shared->lock);
	ConditionVariableBroadcast(&audit_shared->changed);
	crypto_wipe(writer_key, sizeof(writer_key));
}

char *
audit_standby_file_path(void)
{
	return psprintf("%s/%s/standby-%u.log", DataDir, AUDIT_DIR, MyDatabaseId);
}

/*
 * The head file (audit.c) names the newest record this database's writers
 * committed.  When the table ends before it (its newest rows were deleted)
 * or its row there differs (rewritten), the chain continues after the head
 * file, so the loss stays visible as a gap instead of being papered over
 * by reused sequence numbers.
 */
static void
writer_continue_after_head_file(void)
{
	AuditHead	head;

	if (!audit_head_file_read(&head))
		return;
	if (head.seq > writer_last_seq ||
		(head.seq == writer_last_seq &&
		 memcmp(head.hash, writer_last_hash, AUDIT_DIGEST_LEN) != 0))
	{
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("vecphi.audit_log ends at seq " INT64_FORMAT " but its head file names seq " INT64_FORMAT,
						writer_last_seq, head.seq),
				 errdetail("Records were removed from the audit log; the chain continues after seq " INT64_FORMAT ", so vecphi.verify_audit() reports them.",
						   head.seq)));
		writer_last_seq = head.seq;
		memcpy(writer_last_hash, head.hash, AUDIT_DIGEST_LEN);
	}
}

/* Read the newest row of vecphi.audit_log to continue its chain. */
static void
writer_load_chain_from_table(void)
{
	int			ret;

	ret = SPI_execute("SELECT seq, row_hash FROM vecphi.audit_log ORDER BY seq DESC LIMIT 1",
					  true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the head of vecphi.audit_log");
	memset(writer_last_hash, 0, sizeof(writer_last_hash));
	writer_last_seq = 0;
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		seq = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		bytea	   *hash = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 2, &isnull));

		writer_last_seq = DatumGetInt64(seq);
		if (VARSIZE_ANY_EXHDR(hash) != AUDIT_DIGEST_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("newest row of vecphi.audit_log has a malformed hash")));
		memcpy(writer_last_hash, VARDATA_ANY(hash), AUDIT_DIGEST_LEN);
	}
	writer_continue_after_head_file();
}

/* Continue the chain of the standby file: its last line. */
static void
writer_load_chain_from_file(void)
{
	char	   *path = audit_standby_file_path();
	FILE	   *fh;
	StringInfoData line;
	StringInfoData last;

	memset(writer_last_hash, 0, sizeof(writer_last_hash));
	writer_last_seq = 0;
	fh = AllocateFile(path, "r");
	if (fh == NULL)
		return;
	initStringInfo(&line);
	initStringInfo(&last);
	while (pg_get_line_buf(fh, &line))
	{
		resetStringInfo(&last);
		appendBinaryStringInfo(&last, line.data, line.len);
	}
	FreeFile(fh);
	if (last.len > 0)
	{
		long long	seq;
		char		hex[AUDIT_DIGEST_LEN * 2 + 1];

		if (sscanf(last.data, "%lld\t%64s", &seq, hex) != 2 ||
			strlen(hex) != AUDIT_DIGEST_LEN * 2)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("last line of standby audit file \"%s\" is malformed", path)));
		writer_last_seq = seq;
		hex_decode(hex, AUDIT_DIGEST_LEN * 2, (char *) writer_last_hash);
	}
}

/* Values of the hashed columns for a record about to get seq. */
static void
writer_column_values(const AuditRecord *rec, int64 seq, const char **vals)
{
	vals[AC_SEQ] = psprintf(INT64_FORMAT, seq);
	vals[AC_AT] = psprintf(INT64_FORMAT, (int64) rec->at);
	vals[AC_DB_USER] = rec->db_user;
	vals[AC_BACKEND_PID] = psprintf("%d", rec->backend_pid);
	vals[AC_STATEMENT_ID] = rec->has_statement_id ? psprintf(INT64_FORMAT, rec->statement_id) : NULL;
	vals[AC_SUBJECT] = rec->subject;
	vals[AC_TENANT] = rec->tenant;
	vals[AC_APP_ROLE] = rec->app_role;
	vals[AC_PURPOSE] = rec->purpose;
	vals[AC_BREAK_GLASS] = rec->break_glass ? "t" : "f";
	vals[AC_BREAK_GLASS_REASON] = rec->break_glass_reason;
	vals[AC_ACTION] = rec->action;
	vals[AC_RELATION] = rec->relation;
	vals[AC_INDEX_NAME] = rec->index_name;
	vals[AC_ROWS_RETURNED] = rec->has_rows ? psprintf(INT64_FORMAT, rec->rows) : NULL;
	/* The canonical text of the array, as the column will print it. */
	vals[AC_ROW_IDS] = rec->row_ids == NULL ? NULL :
		OidOutputFunctionCall(F_ARRAY_OUT,
							  OidInputFunctionCall(F_ARRAY_IN, rec->row_ids,
												   TEXTOID, -1));
	vals[AC_QUERY_FINGERPRINT] = rec->has_digest ?
		audit_fingerprint_hex(writer_key, rec->digest) : NULL;
	vals[AC_OUTCOME] = rec->outcome;
	vals[AC_DETAIL] = rec->detail;
}

static void
writer_insert_row(int64 seq, const char **vals, const AuditRecord *rec,
				  const uint8 *prev_hash, const uint8 *hash)
{
	Datum		values[21];
	char		nulls[21];
	int			i;

	for (i = 0; i < 21; i++)
		nulls[i] = ' ';
	values[0] = Int64GetDatum(seq);
	values[1] = TimestampTzGetDatum(rec->at);
	for (i = AC_DB_USER; i < AUDIT_HASHED_COLUMNS; i++)
	{
		if (i == AC_BACKEND_PID || i == AC_STATEMENT_ID ||
			i == AC_BREAK_GLASS || i == AC_ROWS_RETURNED ||
			i == AC_ROW_IDS)
			continue;
		if (vals[i] == NULL)
			nulls[i] = 'n';
		else
			values[i] = CStringGetTextDatum(vals[i]);
	}
	values[AC_BACKEND_PID] = Int32GetDatum(rec->backend_pid);
	if (rec->has_statement_id)
		values[AC_STATEMENT_ID] = Int64GetDatum(rec->statement_id);
	else
		nulls[AC_STATEMENT_ID] = 'n';
	values[AC_BREAK_GLASS] = BoolGetDatum(rec->break_glass);
	if (rec->has_rows)
		values[AC_ROWS_RETURNED] = Int64GetDatum(rec->rows);
	else
		nulls[AC_ROWS_RETURNED] = 'n';
	if (vals[AC_ROW_IDS] != NULL)
		values[AC_ROW_IDS] = OidInputFunctionCall(F_ARRAY_IN, (char *) vals[AC_ROW_IDS],
												  TEXTOID, -1);
	else
		nulls[AC_ROW_IDS] = 'n';
	{
		bytea	   *p = palloc(VARHDRSZ + AUDIT_DIGEST_LEN);
		bytea	   *h = palloc(VARHDRSZ + AUDIT_DIGEST_LEN);

		SET_VARSIZE(p, VARHDRSZ + AUDIT_DIGEST_LEN);
		SET_VARSIZE(h, VARHDRSZ + AUDIT_DIGEST_LEN);
		memcpy(VARDATA(p), prev_hash, AUDIT_DIGEST_LEN);
		memcpy(VARDATA(h), hash, AUDIT_DIGEST_LEN);
		values[19] = PointerGetDatum(p);
		values[20] = PointerGetDatum(h);
	}
	if (SPI_execute_plan(writer_insert_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into vecphi.audit_log");
}

/* Escape a value for a line of the standby file (tab-separated). */
static void
append_escaped(StringInfo buf, const char *s)
{
	if (s == NULL)
	{
		appendStringInfoString(buf, "\\N");
		return;
	}
	for (; *s; s++)
	{
		switch (*s)
		{
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			default:
				appendStringInfoChar(buf, *s);
		}
	}
}

/* One line of the standby file: seq, hash, prev hash, the columns. */
static void
writer_standby_line(StringInfo out, const char **vals,
					const uint8 *prev_hash, const uint8 *hash)
{
	char		hex[AUDIT_DIGEST_LEN * 2 + 1];
	int			i;

	appendStringInfo(out, "%s\t", vals[AC_SEQ]);
	hex[hex_encode((const char *) hash, AUDIT_DIGEST_LEN, hex)] = '\0';
	appendStringInfo(out, "%s\t", hex);
	hex[hex_encode((const char *) prev_hash, AUDIT_DIGEST_LEN, hex)] = '\0';
	appendStringInfoString(out, hex);
	for (i = AC_AT; i < AUDIT_HASHED_COLUMNS; i++)
	{
		appendStringInfoChar(out, '\t');
		append_escaped(out, vals[i]);
	}
	appendStringInfoChar(out, '\n');
}

static void
writer_standby_append(StringInfo lines)
{
	char	   *dir = psprintf("%s/%s", DataDir, AUDIT_DIR);
	char	   *path = audit_standby_file_path();
	int			fd;

	if (mkdir(dir, S_IRWXU) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", dir)));
	fd = OpenTransientFile(path, O_WRONLY | O_APPEND | O_CREAT | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open standby audit file \"%s\": %m", path)));
	if (write(fd, lines->data, lines->len) != lines->len)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write standby audit file \"%s\": %m", path)));
	if (pg_fsync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync standby audit file \"%s\": %m", path)));
	CloseTransientFile(fd);
}

/*
 * An audit_dropped record: how many records could not be queued since the
 * last one (the queue was full, or no channel was free).
 */
static void
writer_dropped_record(AuditRecord *rec, uint64 dropped)
{
	char	   *user = GetUserNameFromId(GetUserId(), true);

	memset(rec, 0, sizeof(*rec));
	rec->at = GetCurrentTimestamp();
	rec->backend_pid = MyProcPid;
	rec->db_user = user ? user : "?";
	rec->action = AUDIT_ACTION_DROPPED;
	rec->outcome = AUDIT_OUTCOME_ERROR;
	rec->has_rows = true;
	rec->rows = (int64) dropped;
	rec->detail = psprintf(UINT64_FORMAT " audit record%s %s lost: the audit queue was full or unavailable when %s made (rows_returned is the count)",
						   dropped, dropped == 1 ? "" : "s",
						   dropped == 1 ? "was" : "were",
						   dropped == 1 ? "it was" : "they were");
}

/*
 * The quarantine file of this database's records that the writer could not
 * write: vecphi_audit/quarantine-<database oid>.log in the data directory.
 */
static char *
writer_quarantine_file_path(void)
{
	return psprintf("%s/%s/quarantine-%u.log", DataDir, AUDIT_DIR, MyDatabaseId);
}

/*
 * Append one line to the quarantine file and fsync it: the time, the
 * SHA-256 of the queued record, the error's SQLSTATE and the record as it
 * was queued (hex of audit_record_serialize()'s bytes).  Mode 0600.
 */
static void
writer_quarantine_append(const char *payload, uint32 len, const char *digest_hex,
						 int sqlerrcode)
{
	char	   *dir = psprintf("%s/%s", DataDir, AUDIT_DIR);
	char	   *path = writer_quarantine_file_path();
	StringInfoData line;
	char	   *hex = palloc((Size) len * 2 + 1);
	int			fd;

	hex[hex_encode(payload, len, hex)] = '\0';
	initStringInfo(&line);
	appendStringInfo(&line, "%s\t%s\t%s\t%s\n",
					 timestamptz_to_str(GetCurrentTimestamp()), digest_hex,
					 unpack_sql_state(sqlerrcode), hex);
	if (mkdir(dir, S_IRWXU) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", dir)));
	fd = OpenTransientFilePerm(path, O_WRONLY | O_APPEND | O_CREAT | PG_BINARY,
							   S_IRUSR | S_IWUSR);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open audit quarantine file \"%s\": %m", path)));
	if (write(fd, line.data, line.len) != line.len || pg_fsync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write audit quarantine file \"%s\": %m", path)));
	CloseTransientFile(fd);
}

/*
 * The record in the chain that stands for a quarantined one: what failed
 * (SQLSTATE and message, at most 200 bytes of it), where the record went
 * and its SHA-256, which binds the quarantine file's line to the chain.
 */
static void
writer_quarantine_record(AuditRecord *rec, const char *digest_hex,
						 int sqlerrcode, const char *message)
{
	char	   *user = GetUserNameFromId(GetUserId(), true);
	char		msg[201];

	strlcpy(msg, message ? message : "", sizeof(msg));
	/* Do not cut a multibyte character in two. */
	msg[pg_mbcliplen(msg, strlen(msg), sizeof(msg) - 1)] = '\0';
	memset(rec, 0, sizeof(*rec));
	rec->at = GetCurrentTimestamp();
	rec->backend_pid = MyProcPid;
	rec->db_user = user ? user : "?";
	rec->action = AUDIT_ACTION_QUARANTINE;
	rec->outcome = AUDIT_OUTCOME_ERROR;
	rec->has_rows = true;
	rec->rows = 1;
	rec->detail = psprintf("an audit record the writer could not write was quarantined in %s/quarantine-%u.log (record sha256 %s): %s: %s",
						   AUDIT_DIR, MyDatabaseId, digest_hex,
						   unpack_sql_state(sqlerrcode), msg);
}

/*
 * Write one queued record in a subtransaction of its own; on failure the
 * subtransaction is rolled back and the error returned (copied into the
 * batch context), the chain unchanged.
 */
static ErrorData *
writer_try_record(const char *payload, uint32 len, int64 seq, uint8 *prev,
				  bool standby, StringInfo lines)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int			lines_len = lines->len;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		AuditRecord rec;
		const char *vals[AUDIT_HASHED_COLUMNS];
		uint8		hash[AUDIT_DIGEST_LEN];

		audit_record_deserialize(payload, len, &rec);
		writer_column_values(&rec, seq, vals);
		audit_chain_hash(writer_key, prev, vals, hash);
		if (standby)
			writer_standby_line(lines, vals, prev, hash);
		else
			writer_insert_row(seq, vals, &rec, prev, hash);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		memcpy(prev, hash, AUDIT_DIGEST_LEN);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		lines->len = lines_len;
		lines->data[lines_len] = '\0';
	}
	PG_END_TRY();
	return edata;
}

/*
 * A batch is committed: free its space in the ring and wake the backends
 * waiting for its records.  Counted losses are in the chain now; later
 * ones stay for the next batch.
 */
static void
writer_release(uint64 consumed, int n, uint64 dropped)
{
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	writer_channel->tail += consumed;
	writer_channel->durable_ticket += n;
	writer_channel->dropped -= dropped;
	LWLockRelease(audit_shared->lock);
	ConditionVariableBroadcast(&audit_shared->changed);
}

/* Write the pending head file, and tell verify_audit() it is there. */
static void
writer_write_head(void)
{
	if (!writer_head_pending)
		return;
	audit_head_file_write(&writer_pending_head);
	writer_head_pending = false;
	writer_head_written_at = GetCurrentTimestamp();
	audit_channel_anchored(writer_channel);
}

/*
 * Write the records in [tail, head) of the ring, after an audit_dropped
 * record when dropped > 0: one transaction (or one file append on a
 * standby), and release the backends waiting for them (writer_release())
 * as soon as it is committed.  On a primary the head file is rewritten
 * after that, and only when WRITER_HEAD_INTERVAL_MS have passed since the
 * last time; otherwise the main loop writes it once the queue stays empty
 * for WRITER_HEAD_DELAY_MS, or verify_audit() asks for it.  So its fsync
 * is not on the path of the searches waiting for the next batch.  A crash
 * before it leaves a head file naming an older record, which is never a
 * false alarm.  Returns the number of ring records written.
 */
static int
writer_write_batch(uint64 tail, uint64 head, uint64 dropped, bool careful)
{
	MemoryContext old;
	uint64		pos = tail;
	int			n = 0;
	bool		standby;
	StringInfoData lines;
	int64		seq;
	uint8		prev[AUDIT_DIGEST_LEN];
	FullTransactionId fxid;
	int			quarantined = 0;

	if (writer_batch_cxt == NULL)
		writer_batch_cxt = AllocSetContextCreate(TopMemoryContext, "vecphi audit batch",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(writer_batch_cxt);
	writer_batch_committed = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "writing audit records");

	standby = RecoveryInProgress();
	if (!standby && !OidIsValid(get_extension_oid("vecphi", true)))
	{
		/*
		 * DROP EXTENSION took the audit log with it: nothing can be written.
		 * Say so in the server log, free the channel.  First the head file
		 * for the last batch committed before, as it would have been written
		 * then.
		 */
		writer_write_head();
		while (pos < head)
		{
			uint32		len;

			audit_ring_read(writer_channel, pos, (char *) &len, sizeof(uint32));
			pos += sizeof(uint32) + len;
			n++;
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		ereport(WARNING,
				(errmsg("discarded %d queued audit records (and " UINT64_FORMAT " lost ones) of database %u: vecphi is not installed there any more",
						n, dropped, MyDatabaseId)));
		writer_chain_loaded = false;
		if (writer_insert_plan != NULL)
		{
			SPI_freeplan(writer_insert_plan);
			writer_insert_plan = NULL;
		}
		writer_release(head - tail, n, dropped);
		stats_audit_discarded(n);
		return n;
	}
	if (!writer_chain_loaded || standby != writer_standby_mode)
	{
		if (standby)
			writer_load_chain_from_file();
		else
			writer_load_chain_from_table();
		writer_standby_mode = standby;
		writer_chain_loaded = true;
	}
	if (!standby && writer_insert_plan == NULL)
	{
		Oid			types[21] = {INT8OID, TIMESTAMPTZOID, TEXTOID, INT4OID, INT8OID,
			TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID,
			TEXTOID, TEXTOID, INT8OID, TEXTARRAYOID, TEXTOID, TEXTOID, TEXTOID,
		BYTEAOID, BYTEAOID};

		writer_insert_plan = SPI_prepare("INSERT INTO vecphi.audit_log VALUES "
										 "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
										 "$12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
										 21, types);
		if (writer_insert_plan == NULL)
			elog(ERROR, "could not prepare the audit insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(writer_insert_plan);
	}

	old = MemoryContextSwitchTo(writer_batch_cxt);
	initStringInfo(&lines);
	seq = writer_last_seq;
	memcpy(prev, writer_last_hash, AUDIT_DIGEST_LEN);
	if (dropped > 0)
	{
		AuditRecord rec;
		const char *vals[AUDIT_HASHED_COLUMNS];
		uint8		hash[AUDIT_DIGEST_LEN];

		writer_dropped_record(&rec, dropped);
		writer_column_values(&rec, seq + 1, vals);
		audit_chain_hash(writer_key, prev, vals, hash);
		if (standby)
			writer_standby_line(&lines, vals, prev, hash);
		else
			writer_insert_row(seq + 1, vals, &rec, prev, hash);
		seq++;
		memcpy(prev, hash, AUDIT_DIGEST_LEN);
	}
	while (pos < head && n < WRITER_BATCH_RECORDS)
	{
		uint32		len;
		char	   *payload;
		AuditRecord rec;
		const char *vals[AUDIT_HASHED_COLUMNS];
		uint8		hash[AUDIT_DIGEST_LEN];

		audit_ring_read(writer_channel, pos, (char *) &len, sizeof(uint32));
		payload = palloc(len);
		audit_ring_read(writer_channel, pos + sizeof(uint32), payload, len);
		if (careful)
		{
			ErrorData  *edata;

			/*
			 * A batch failed: each record in a subtransaction of its own, and
			 * one that cannot be written is quarantined (a file line and a
			 * record in the chain that stands for it), so that one bad record
			 * does not stop the audit.  If even the quarantine record cannot
			 * be written the failure is not the record's: the error ends the
			 * writer, the records stay queued.
			 */
			edata = writer_try_record(payload, len, seq + 1, prev, standby, &lines);
			if (edata != NULL)
			{
				uint8		digest[AUDIT_DIGEST_LEN];
				char		digest_hex[AUDIT_DIGEST_LEN * 2 + 1];

				crypto_sha256((const uint8 *) payload, len, digest);
				digest_hex[hex_encode((const char *) digest, AUDIT_DIGEST_LEN, digest_hex)] = '\0';
				writer_quarantine_record(&rec, digest_hex, edata->sqlerrcode,
										 edata->message);
				writer_column_values(&rec, seq + 1, vals);
				audit_chain_hash(writer_key, prev, vals, hash);
				if (standby)
					writer_standby_line(&lines, vals, prev, hash);
				else
					writer_insert_row(seq + 1, vals, &rec, prev, hash);
				writer_quarantine_append(payload, len, digest_hex, edata->sqlerrcode);
				ereport(WARNING,
						(errcode(edata->sqlerrcode),
						 errmsg("vecphi audit writer quarantined an audit record it could not write: %s",
								rec.detail)));
				memcpy(prev, hash, AUDIT_DIGEST_LEN);
				FreeErrorData(edata);
				quarantined++;
			}
		}
		else
		{
			audit_record_deserialize(payload, len, &rec);
			writer_column_values(&rec, seq + 1, vals);
			audit_chain_hash(writer_key, prev, vals, hash);
			if (standby)
				writer_standby_line(&lines, vals, prev, hash);
			else
				writer_insert_row(seq + 1, vals, &rec, prev, hash);
			memcpy(prev, hash, AUDIT_DIGEST_LEN);
		}
		seq++;
		pos += sizeof(uint32) + len;
		n++;
	}
	if (standby && n > 0)
		writer_standby_append(&lines);
	MemoryContextSwitchTo(old);

	SPI_finish();
	PopActiveSnapshot();
	fxid = GetTopFullTransactionIdIfAny();
	CommitTransactionCommand();

	/* Only now, after the commit, does the chain advance. */
	writer_last_seq = seq;
	memcpy(writer_last_hash, prev, AUDIT_DIGEST_LEN);
	writer_batch_committed = true;
	/* Counted before the waiting backends are released (monitoring). */
	stats_audit_written(n, quarantined);
	writer_release(pos - tail, n, dropped);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextReset(writer_batch_cxt);
	if (!standby)
	{
		writer_pending_head.seq = seq;
		memcpy(writer_pending_head.hash, prev, AUDIT_DIGEST_LEN);
		writer_pending_head.fxid = U64FromFullTransactionId(fxid);
		writer_head_pending = true;
		if (TimestampDifferenceExceeds(writer_head_written_at, GetCurrentTimestamp(),
									   WRITER_HEAD_INTERVAL_MS))
			writer_write_head();
	}
	else
		audit_channel_anchored(writer_channel);
	return n;
}

/* True when this database's chain has no record yet (table and head file). */
static bool
writer_chain_is_empty(void)
{
	AuditHead	head;

	if (SPI_execute("SELECT seq FROM vecphi.audit_log LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read vecphi.audit_log");
	if (SPI_processed > 0)
		return false;
	return !audit_head_file_read(&head);
}

void
vecphi_audit_writer_main(Datum main_arg)
{
	int			chno = DatumGetInt32(main_arg);
	Oid			dboid;
	TimestampTz idle_since;
	bool		careful = false;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	am_audit_writer = true;
	writer_channel = &audit_shared->channels[chno];
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	if (writer_channel->dboid != dboid ||
		(writer_channel->state == WRITER_RUNNING &&
		 writer_channel->writer_pid != MyProcPid))
	{
		/* Someone else serves this channel already. */
		LWLockRelease(audit_shared->lock);
		writer_channel = NULL;
		proc_exit(0);
	}
	writer_channel->state = WRITER_RUNNING;
	writer_channel->writer_pid = MyProcPid;
	writer_channel->writer_latch = MyLatch;
	LWLockRelease(audit_shared->lock);
	before_shmem_exit(writer_detach, (Datum) 0);
	ConditionVariableBroadcast(&audit_shared->changed);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	/* Not the search_path the database's owner set: see privsql.c. */
	privsql_pin_worker();
	/* Records are durable when the writer's commit is, replicas included. */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * The key is created only for a chain that has not begun (no row, no head
	 * file) on a primary: a missing key is never silently replaced, and a
	 * standby uses its primary's (docs/audit.md).
	 */
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	audit_load_key(writer_key,
				   !RecoveryInProgress() && writer_chain_is_empty());
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	idle_since = GetCurrentTimestamp();
	for (;;)
	{
		uint64		tail;
		uint64		head;
		uint64		dropped;
		bool		anchor_requested;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
		tail = writer_channel->tail;
		head = writer_channel->head;
		anchor_requested = writer_channel->anchor_requested;
		/* Losses no channel could count become this channel's to write. */
		writer_channel->dropped += audit_shared->dropped_unattributed;
		audit_shared->dropped_unattributed = 0;
		dropped = writer_channel->dropped;
		if (head == tail && dropped == 0 && !writer_head_pending &&
			TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(),
									   WRITER_IDLE_EXIT_MS))
		{
			/*
			 * Idle: leave, under the lock, so no record is stranded, and
			 * release the channel for other databases (a dropped database or
			 * extension never holds one for long).
			 */
			audit_channel_release(writer_channel);
			LWLockRelease(audit_shared->lock);
			ConditionVariableBroadcast(&audit_shared->changed);
			writer_channel = NULL;
			proc_exit(0);
		}
		LWLockRelease(audit_shared->lock);

		/* verify_audit() waits for the head file: before anything else. */
		if (anchor_requested)
		{
			if (writer_head_pending)
				writer_write_head();
			else
				audit_channel_anchored(writer_channel);
		}

		if (head != tail || dropped > 0)
		{
			volatile bool failed = false;

			PG_TRY();
			{
				(void) writer_write_batch(tail, head, dropped, careful);
			}
			PG_CATCH();
			{
				/* Careful already: the failure is not one record's. */
				if (careful && !writer_batch_committed)
					PG_RE_THROW();
				MemoryContextSwitchTo(TopMemoryContext);
				EmitErrorReport();
				FlushErrorState();
				AbortCurrentTransaction();
				pgstat_report_activity(STATE_IDLE, NULL);
				/* After the commit the records are in and released. */
				failed = !writer_batch_committed;
			}
			PG_END_TRY();
			careful = failed;
			if (failed)
				continue;
			idle_since = GetCurrentTimestamp();
			continue;
		}

		/* Nothing queued: the head file once no record came for a moment. */
		rc = WaitLatch(MyLatch,
					   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   writer_head_pending ? WRITER_HEAD_DELAY_MS : 500,
					   PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if ((rc & WL_TIMEOUT) && writer_head_pending)
			writer_write_head();
	}
}
