/*-------------------------------------------------------------------------
 *
 * auditqueue.c
 *	  The road of an audit record: a shared-memory queue per database and
 *	  the background worker ("vecphi audit writer", auditwriter.c) that
 *	  commits them.  This file: shared memory, channels, queuing, waiting.
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
 * silently.  After committed batches the writer of a primary rewrites the
 * head file (auditchain.c), the chain's anchor outside the table: after it
 * has released the backends, and not after every batch while records keep
 * coming (auditwriter.c, writer_write_batch()).  verify_audit() asks for
 * it and waits (auditqueue_wait_anchored()).
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
#include "auditqueue.h"
#include "crypto.h"
#include "privsql.h"
#include "stats.h"

AuditShared *audit_shared = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

/* This backend's newest ticket, for audit_flush(). */
static uint64 my_last_ticket = 0;
static bool my_has_ticket = false;

bool		am_audit_writer = false;


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

void
audit_ring_read(AuditChannel *ch, uint64 pos, char *dst, Size len)
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
bool
audit_channel_is_idle(AuditChannel *ch)
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
void
audit_channel_release(AuditChannel *ch)
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
				 audit_channel_is_idle(ch))
			idle_ch = ch;
	}
	if (!claim)
		return NULL;
	if (free_ch == NULL && idle_ch != NULL)
	{
		audit_channel_release(idle_ch);
		free_ch = idle_ch;
	}
	if (free_ch != NULL)
	{
		free_ch->dboid = dboid;
		free_ch->state = WRITER_STOPPED;
		free_ch->head = free_ch->tail = 0;
		free_ch->next_ticket = free_ch->durable_ticket =
			free_ch->anchored_ticket = audit_shared->ticket_floor;
		free_ch->anchor_requested = false;
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
	stats_audit_lost();
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

/*
 * The writer has brought the head file up to the records committed so far
 * (or tried to: a failed write is a WARNING of its own).
 */
void
audit_channel_anchored(AuditChannel *ch)
{
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	ch->anchored_ticket = ch->durable_ticket;
	ch->anchor_requested = false;
	LWLockRelease(audit_shared->lock);
	ConditionVariableBroadcast(&audit_shared->changed);
}

/*
 * Wait, at most vecphi.audit_timeout, until the head file names every
 * record committed when this is called.  The writer rewrites the head file
 * after the backends waiting for a batch are released, and under a steady
 * stream of records only every WRITER_HEAD_INTERVAL_MS; verify_audit()
 * asks it for the head file at once and waits, so that it never compares
 * the table with a head file that is behind (deleted newest rows would
 * pass).  Never raises: a writer that stopped has written its last head
 * file, or died and left an older one, which is never a false alarm.
 */
void
auditqueue_wait_anchored(void)
{
	AuditChannel *ch;
	uint64		target;
	TimestampTz deadline;
	Latch	   *writer_latch = NULL;

	/* Not preloaded: no queue and no writer, so no head file to wait for. */
	if (audit_shared == NULL)
		return;
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	ch = channel_for_database(MyDatabaseId, false);
	target = ch ? ch->durable_ticket : 0;
	if (ch != NULL && ch->anchored_ticket < target)
	{
		ch->anchor_requested = true;
		writer_latch = ch->writer_latch;
	}
	LWLockRelease(audit_shared->lock);
	if (ch == NULL)
		return;
	if (writer_latch != NULL)
		SetLatch(writer_latch);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   vecphi_audit_timeout_ms);
	for (;;)
	{
		bool		done;

		LWLockAcquire(audit_shared->lock, LW_SHARED);
		done = ch->dboid != MyDatabaseId || ch->state != WRITER_RUNNING ||
			ch->anchored_ticket >= target;
		LWLockRelease(audit_shared->lock);
		if (done || GetCurrentTimestamp() >= deadline)
			break;
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
