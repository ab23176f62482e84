/*-------------------------------------------------------------------------
 *
 * auditqueue.c
 *	  The road of an audit record: a shared-memory queue per database and
 *	  the background worker ("vecphi audit writer") that commits them.
 *
 * PostgreSQL has no autonomous transactions, so a backend cannot commit a
 * record independently of its own transaction.  Instead it copies the
 * serialized record into a ring buffer in shared memory and, in
 * synchronous mode, sleeps until the writer reports the record committed.
 * The writer of a database drains whatever has accumulated into one
 * transaction, so concurrent sessions share commits (group commit).
 *
 * Each database that produces records gets a channel: a ring, counters and
 * its writer's state.  Records are identified by tickets, their position
 * in the channel's sequence; everything below durable_ticket is committed.
 * The writer reads records in place and releases their space only after
 * its commit, so a writer that dies mid-batch loses nothing: the next one
 * starts from the same place.  Writers are dynamic background workers
 * started on demand by the first backend that queues a record, and they
 * exit after a few idle seconds (a connected worker would otherwise block
 * DROP DATABASE).
 *
 * Failure is closed: a backend that cannot queue (ring full too long, no
 * channel, no writer) or whose record is not committed within
 * vecphi.audit_timeout gets an error, so no result row leaves without its
 * record.  Records that must not raise (denials vecphi is about to raise,
 * after waiting as long for space; records queued while an error is
 * reported) are counted when they cannot be queued, and the writer puts
 * the count into the chain as an audit_dropped record: nothing is lost
 * silently.  After each committed batch the writer of a primary rewrites
 * the head file (audit.c), the chain's anchor outside the table.
 *
 * On a hot standby tables cannot be written; the writer appends the same
 * chained records to a file in the standby's data directory instead
 * (vecphi_audit/standby-<database oid>.log), fsynced before the waiting
 * backends are released.
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
#include "crypto.h"
#include "privsql.h"

/* Databases that can produce records at the same time. */
#define AUDIT_CHANNELS			8

/* A writer with nothing to do for this long exits. */
#define WRITER_IDLE_EXIT_MS		2000

/* At most this many records per writer transaction. */
#define WRITER_BATCH_RECORDS	4096


typedef enum WriterState
{
	WRITER_STOPPED,
	WRITER_STARTING,
	WRITER_RUNNING
} WriterState;

typedef struct AuditChannel
{
	Oid			dboid;			/* InvalidOid: channel free */
	WriterState state;
	pid_t		writer_pid;
	Latch	   *writer_latch;
	TimestampTz start_requested;
	uint64		head;			/* bytes ever written into the ring */
	uint64		tail;			/* bytes ever released (committed) */
	uint64		next_ticket;	/* ticket of the next record queued */
	uint64		durable_ticket; /* records below this are committed */
	uint64		dropped;		/* records lost, not yet counted in the log */
	Size		ring_offset;	/* ring's offset from the shared struct */
} AuditChannel;

typedef struct AuditShared
{
	LWLock	   *lock;
	ConditionVariable changed;	/* durable_ticket moved or writer state */
	Size		ring_size;
	uint64		dropped_unattributed;	/* lost without a channel to count in */
	uint64		ticket_floor;	/* tickets below this are committed */
	AuditChannel channels[AUDIT_CHANNELS];
} AuditShared;

static AuditShared *audit_shared = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

/* This backend's newest ticket, for audit_flush(). */
static uint64 my_last_ticket = 0;
static bool my_has_ticket = false;

bool		am_audit_writer = false;

PGDLLEXPORT void vecphi_audit_writer_main(Datum main_arg);

static Size
audit_ring_size(void)
{
	return (Size) vecphi_audit_queue_kb * 1024;
}

static Size
audit_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(AuditShared)),
					mul_size(AUDIT_CHANNELS, audit_ring_size()));
}

void
auditqueue_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(audit_shmem_size());
	RequestNamedLWLockTranche("vecphi_audit", 1);
}

void
auditqueue_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	audit_shared = ShmemInitStruct("vecphi audit queue", audit_shmem_size(), &found);
	if (!found)
	{
		int			i;

		memset(audit_shared, 0, sizeof(AuditShared));
		audit_shared->lock = &(GetNamedLWLockTranche("vecphi_audit"))->lock;
		ConditionVariableInit(&audit_shared->changed);
		audit_shared->ring_size = audit_ring_size();
		for (i = 0; i < AUDIT_CHANNELS; i++)
			audit_shared->channels[i].ring_offset =
				MAXALIGN(sizeof(AuditShared)) + (Size) i * audit_shared->ring_size;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Install the shared-memory hooks; called from audit_init(). */
void
auditqueue_install_hooks(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = auditqueue_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = auditqueue_shmem_startup;
}

static char *
channel_ring(AuditChannel *ch)
{
	return (char *) audit_shared + ch->ring_offset;
}

/* Copy len bytes into the ring at logical position pos (wrapping). */
static void
ring_write(AuditChannel *ch, uint64 pos, const char *src, Size len)
{
	Size		size = audit_shared->ring_size;
	Size		off = (Size) (pos % size);
	Size		first = Min(len, size - off);

	memcpy(channel_ring(ch) + off, src, first);
	if (first < len)
		memcpy(channel_ring(ch), src + first, len - first);
}

static void
ring_read(AuditChannel *ch, uint64 pos, char *dst, Size len)
{
	Size		size = audit_shared->ring_size;
	Size		off = (Size) (pos % size);
	Size		first = Min(len, size - off);

	memcpy(dst, channel_ring(ch) + off, first);
	if (first < len)
		memcpy(dst + first, channel_ring(ch), len - first);
}

/*
 * True when a channel holds nothing (every record committed, no count of
 * lost records to write) and no writer serves it: it may be released.
 */
static bool
channel_is_idle(AuditChannel *ch)
{
	if (ch->head != ch->tail || ch->dropped != 0)
		return false;
	if (ch->state == WRITER_STOPPED)
		return true;
	/* A start that never came up. */
	return ch->state == WRITER_STARTING &&
		TimestampDifferenceExceeds(ch->start_requested, GetCurrentTimestamp(),
								   10000);
}

/*
 * Release a channel; caller holds the lock exclusively and has checked it
 * holds nothing.  Tickets go on from where it stopped (ticket_floor), so a
 * backend that still holds a ticket of it sees that ticket committed, on
 * whichever channel its database gets next.
 */
static void
channel_release(AuditChannel *ch)
{
	audit_shared->ticket_floor = Max(audit_shared->ticket_floor,
									 ch->next_ticket);
	ch->dboid = InvalidOid;
	ch->state = WRITER_STOPPED;
	ch->writer_pid = 0;
	ch->writer_latch = NULL;
}

/*
 * The channel of this database, claiming a free one (or releasing an idle
 * one of another database to claim it); caller holds the lock.
 */
static AuditChannel *
channel_for_database(Oid dboid, bool claim)
{
	AuditChannel *free_ch = NULL;
	AuditChannel *idle_ch = NULL;
	int			i;

	for (i = 0; i < AUDIT_CHANNELS; i++)
	{
		AuditChannel *ch = &audit_shared->channels[i];

		if (ch->dboid == dboid)
			return ch;
		if (ch->dboid == InvalidOid && free_ch == NULL)
			free_ch = ch;
		else if (ch->dboid != InvalidOid && idle_ch == NULL &&
				 channel_is_idle(ch))
			idle_ch = ch;
	}
	if (!claim)
		return NULL;
	if (free_ch == NULL && idle_ch != NULL)
	{
		channel_release(idle_ch);
		free_ch = idle_ch;
	}
	if (free_ch != NULL)
	{
		free_ch->dboid = dboid;
		free_ch->state = WRITER_STOPPED;
		free_ch->head = free_ch->tail = 0;
		free_ch->next_ticket = free_ch->durable_ticket =
			audit_shared->ticket_floor;
		free_ch->dropped = 0;
		return free_ch;
	}
	return NULL;
}

/*
 * Start the channel's writer if none is running.  Returns false (nothrow)
 * or raises an error when no worker can be registered.
 */
static bool
writer_ensure_started(AuditChannel *ch, bool nothrow)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	int			chno = (int) (ch - audit_shared->channels);

	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	if (ch->dboid != MyDatabaseId)
	{
		/* Released meanwhile: everything it held was committed. */
		LWLockRelease(audit_shared->lock);
		return true;
	}
	if (ch->state != WRITER_STOPPED)
	{
		/* A start that never came up (e.g. the worker failed) is retried. */
		if (!(ch->state == WRITER_STARTING &&
			  TimestampDifferenceExceeds(ch->start_requested,
										 GetCurrentTimestamp(), 10000)))
		{
			LWLockRelease(audit_shared->lock);
			return true;
		}
	}
	ch->state = WRITER_STARTING;
	ch->start_requested = GetCurrentTimestamp();
	LWLockRelease(audit_shared->lock);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "vecphi");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "vecphi_audit_writer_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "vecphi audit writer");
	snprintf(worker.bgw_type, BGW_MAXLEN, "vecphi audit writer");
	worker.bgw_main_arg = Int32GetDatum(chno);
	memcpy(worker.bgw_extra, &MyDatabaseId, sizeof(Oid));
	worker.bgw_notify_pid = 0;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
		ch->state = WRITER_STOPPED;
		LWLockRelease(audit_shared->lock);
		if (nothrow)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the vecphi audit writer"),
				 errdetail("Audited statements fail while their records cannot be written."),
				 errhint("Raise max_worker_processes; the audit writer needs one background worker slot per database.")));
	}
	return true;
}

/*
 * Count a record of this database that could not be queued.  The writer
 * of its channel (or, without a channel, the next writer of any database)
 * writes the count into the chain as an audit_dropped record, so that no
 * record is lost silently.  Safe inside error reporting: no allocation, no
 * error.
 */
static void
auditqueue_count_dropped(void)
{
	AuditChannel *ch;
	Latch	   *latch = NULL;
	int			i;

	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	ch = channel_for_database(MyDatabaseId, false);
	if (ch != NULL)
	{
		ch->dropped++;
		latch = ch->writer_latch;
	}
	else
	{
		audit_shared->dropped_unattributed++;
		for (i = 0; i < AUDIT_CHANNELS && latch == NULL; i++)
			latch = audit_shared->channels[i].writer_latch;
	}
	LWLockRelease(audit_shared->lock);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Wait for ring space (or a channel) until deadline; true when there is
 * room, with the lock held and *chp set.  With raise, running out of time
 * is an error; otherwise it returns false, lock released.
 */
static bool
auditqueue_wait_for_space(Size need, TimestampTz deadline, bool raise,
						  AuditChannel **chp)
{
	for (;;)
	{
		AuditChannel *ch;
		Latch	   *latch;
		bool		start;

		LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
		ch = channel_for_database(MyDatabaseId, true);
		*chp = ch;
		if (ch == NULL)
		{
			/*
			 * Every channel serves another database that has records in
			 * flight; one is released when its writer has committed them and
			 * gone idle.  Wait for that as for space.
			 */
			LWLockRelease(audit_shared->lock);
			if (GetCurrentTimestamp() >= deadline)
			{
				ConditionVariableCancelSleep();
				if (!raise)
					return false;
				ereport(ERROR,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("too many databases are writing vecphi audit records"),
						 errdetail("All %d audit channels of this server were busy with other databases for vecphi.audit_timeout; the statement is refused rather than left unaudited.",
								   AUDIT_CHANNELS),
						 errhint("A channel is released a few seconds after its database's audit writer has nothing left to write.")));
			}
			ConditionVariableTimedSleep(&audit_shared->changed, 100, PG_WAIT_EXTENSION);
			continue;
		}
		if (audit_shared->ring_size - (ch->head - ch->tail) >= need)
			return true;
		/* Ring full: make sure a writer drains it, then wait. */
		start = ch->state == WRITER_STOPPED;
		latch = ch->writer_latch;
		LWLockRelease(audit_shared->lock);
		if (start)
			writer_ensure_started(ch, !raise);
		else if (latch != NULL)
			SetLatch(latch);
		if (GetCurrentTimestamp() >= deadline)
		{
			ConditionVariableCancelSleep();
			if (!raise)
				return false;
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("vecphi audit queue is full"),
					 errdetail("The audit writer has not drained the queue within vecphi.audit_timeout; the statement is refused rather than left unaudited.")));
		}
		ConditionVariableTimedSleep(&audit_shared->changed, 100, PG_WAIT_EXTENSION);
	}
}

/*
 * Queue one serialized record for this database.  Returns its ticket.
 *
 * AUDIT_PUSH_RAISE waits for queue space up to vecphi.audit_timeout and
 * raises an error when there is none.  AUDIT_PUSH_WAIT (denials vecphi
 * records before raising them) waits the same way but never raises for a
 * full queue; AUDIT_PUSH_NOWAIT (used while reporting an error) does not
 * wait at all.  In both, a record that cannot be queued is counted as
 * dropped (see auditqueue_count_dropped) and 0 is returned.
 */
uint64
auditqueue_push_mode(const char *payload, Size len, AuditPushMode mode)
{
	AuditChannel *ch = NULL;
	uint32		len32 = (uint32) len;
	Size		need = sizeof(uint32) + len;
	TimestampTz deadline;
	uint64		ticket;
	Latch	   *latch;
	bool		start;
	bool		raise = mode == AUDIT_PUSH_RAISE;

	if (audit_shared == NULL)
		elog(ERROR, "vecphi audit queue is not initialised");
	if (need > audit_shared->ring_size / 2)
	{
		if (!raise)
		{
			auditqueue_count_dropped();
			return 0;
		}
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("audit record of %zu bytes exceeds half of vecphi.audit_queue_size", len)));
	}

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   mode == AUDIT_PUSH_NOWAIT ? 0 :
										   vecphi_audit_timeout_ms);
	if (mode == AUDIT_PUSH_WAIT)
	{
		bool		room = false;

		/* A cancel while waiting must not lose the record uncounted. */
		PG_TRY();
		{
			room = auditqueue_wait_for_space(need, deadline, false, &ch);
		}
		PG_CATCH();
		{
			auditqueue_count_dropped();
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (!room)
		{
			auditqueue_count_dropped();
			return 0;
		}
	}
	else if (!auditqueue_wait_for_space(need, deadline, raise, &ch))
	{
		auditqueue_count_dropped();
		return 0;
	}
	ConditionVariableCancelSleep();

	ring_write(ch, ch->head, (const char *) &len32, sizeof(uint32));
	ring_write(ch, ch->head + sizeof(uint32), payload, len);
	ch->head += need;
	ticket = ch->next_ticket++;
	start = ch->state == WRITER_STOPPED;
	latch = ch->writer_latch;
	LWLockRelease(audit_shared->lock);

	my_last_ticket = ticket;
	my_has_ticket = true;

	/* The record is queued: a writer that cannot start yet loses nothing. */
	if (start)
		(void) writer_ensure_started(ch, !raise);
	else if (latch != NULL)
		SetLatch(latch);
	return ticket;
}

/* Queue a record; nothrow: AUDIT_PUSH_NOWAIT, else AUDIT_PUSH_RAISE. */
uint64
auditqueue_push(const char *payload, Size len, bool nothrow)
{
	return auditqueue_push_mode(payload, len,
								nothrow ? AUDIT_PUSH_NOWAIT : AUDIT_PUSH_RAISE);
}

/* Sleep until the record with this ticket is committed (or fail). */
void
auditqueue_wait(uint64 ticket)
{
	AuditChannel *ch;
	TimestampTz deadline;

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   vecphi_audit_timeout_ms);
	for (;;)
	{
		uint64		durable;
		WriterState state;

		LWLockAcquire(audit_shared->lock, LW_SHARED);
		ch = channel_for_database(MyDatabaseId, false);
		durable = ch ? ch->durable_ticket : 0;
		state = ch ? ch->state : WRITER_STOPPED;
		LWLockRelease(audit_shared->lock);
		/* Released: only once everything it held was committed. */
		if (ch == NULL || durable > ticket)
			break;
		/* A writer that died with our record pending is replaced. */
		if (state == WRITER_STOPPED || state == WRITER_STARTING)
			writer_ensure_started(ch, false);
		if (GetCurrentTimestamp() >= deadline)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("vecphi audit record was not written within vecphi.audit_timeout"),
					 errdetail("Result rows are withheld until their audit record is durable; the audit writer did not confirm it."),
					 errhint("Check the server log for errors of the \"vecphi audit writer\" process.")));
		}
		ConditionVariableTimedSleep(&audit_shared->changed, 200, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
}

/* Wait until every record this backend queued is committed. */
void
auditqueue_last_ticket_wait(void)
{
	if (my_has_ticket)
		auditqueue_wait(my_last_ticket);
}

/* Records queued cluster-wide and not committed yet. */
uint64
auditqueue_pending(void)
{
	uint64		pending = 0;
	int			i;

	if (audit_shared == NULL)
		return 0;
	LWLockAcquire(audit_shared->lock, LW_SHARED);
	for (i = 0; i < AUDIT_CHANNELS; i++)
		pending += audit_shared->channels[i].next_ticket -
			audit_shared->channels[i].durable_ticket +
			audit_shared->channels[i].dropped;
	/* Counts of lost records not yet written count as pending too. */
	pending += audit_shared->dropped_unattributed;
	LWLockRelease(audit_shared->lock);
	return pending;
}


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

/* The batch being written was committed: records and bytes it took. */
static bool writer_batch_committed = false;
static int	writer_batch_records = 0;
static uint64 writer_batch_bytes = 0;

static void
writer_detach(int code, Datum arg)
{
	if (writer_channel == NULL)
		return;
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	if (writer_channel->writer_pid == MyProcPid)
	{
		writer_channel->state = WRITER_STOPPED;
		writer_channel->writer_pid = 0;
		writer_channel->writer_latch = NULL;
		/* Nothing left in it: free it for other databases. */
		if (channel_is_idle(writer_channel))
			channel_release(writer_channel);
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
 * Write the records in [tail, head) of the ring, after an audit_dropped
 * record when dropped > 0: one transaction (or one file append on a
 * standby).  Returns the number of ring records written and sets
 * *consumed to the bytes they occupied.  On a primary the head file is
 * rewritten after the commit.
 */
static int
writer_write_batch(uint64 tail, uint64 head, uint64 dropped, uint64 *consumed,
				   bool careful)
{
	MemoryContext old;
	uint64		pos = tail;
	int			n = 0;
	bool		standby;
	StringInfoData lines;
	int64		seq;
	uint8		prev[AUDIT_DIGEST_LEN];
	FullTransactionId fxid;

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
		 * Say so in the server log, free the channel.
		 */
		while (pos < head)
		{
			uint32		len;

			ring_read(writer_channel, pos, (char *) &len, sizeof(uint32));
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
		*consumed = head - tail;
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

		ring_read(writer_channel, pos, (char *) &len, sizeof(uint32));
		payload = palloc(len);
		ring_read(writer_channel, pos + sizeof(uint32), payload, len);
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
	writer_batch_records = n;
	writer_batch_bytes = pos - tail;
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextReset(writer_batch_cxt);
	if (!standby)
	{
		AuditHead	anchor;

		anchor.seq = seq;
		memcpy(anchor.hash, prev, AUDIT_DIGEST_LEN);
		anchor.fxid = U64FromFullTransactionId(fxid);
		audit_head_file_write(&anchor);
	}
	*consumed = pos - tail;
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

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
		tail = writer_channel->tail;
		head = writer_channel->head;
		/* Losses no channel could count become this channel's to write. */
		writer_channel->dropped += audit_shared->dropped_unattributed;
		audit_shared->dropped_unattributed = 0;
		dropped = writer_channel->dropped;
		if (head == tail && dropped == 0 &&
			TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(),
									   WRITER_IDLE_EXIT_MS))
		{
			/*
			 * Idle: leave, under the lock, so no record is stranded, and
			 * release the channel for other databases (a dropped database or
			 * extension never holds one for long).
			 */
			channel_release(writer_channel);
			LWLockRelease(audit_shared->lock);
			ConditionVariableBroadcast(&audit_shared->changed);
			writer_channel = NULL;
			proc_exit(0);
		}
		LWLockRelease(audit_shared->lock);

		if (head != tail || dropped > 0)
		{
			volatile uint64 consumed = 0;
			volatile int n = 0;
			volatile bool failed = false;

			PG_TRY();
			{
				uint64		used;

				n = writer_write_batch(tail, head, dropped, &used, careful);
				consumed = used;
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
				if (writer_batch_committed)
				{
					/* After the commit: the records are in, never again. */
					n = writer_batch_records;
					consumed = writer_batch_bytes;
				}
				else
					failed = true;
			}
			PG_END_TRY();
			careful = failed;
			if (failed)
				continue;
			LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
			writer_channel->tail += consumed;
			writer_channel->durable_ticket += n;
			/* Counted in the chain now; later losses stay for the next. */
			writer_channel->dropped -= dropped;
			LWLockRelease(audit_shared->lock);
			ConditionVariableBroadcast(&audit_shared->changed);
			idle_since = GetCurrentTimestamp();
			continue;
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 500, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
