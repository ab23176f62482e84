/*-------------------------------------------------------------------------
 *
 * auditqueue.h
 *	  What the audit queue (auditqueue.c) and its writer (auditwriter.c)
 *	  share: the channels in shared memory and the writer's states.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_AUDITQUEUE_H
#define VECPHI_AUDITQUEUE_H

#include "storage/condition_variable.h"
#include "storage/lwlock.h"

/* Databases that can produce records at the same time. */
#define AUDIT_CHANNELS			8

/* A writer with nothing to do for this long exits. */
#define WRITER_IDLE_EXIT_MS		2000

/* At most this many records per writer transaction. */
#define WRITER_BATCH_RECORDS	4096
/*
 * The head file is rewritten once the queue has been empty this long, or
 * while records keep coming, once this long after the last time: its
 * fsync stays off the path of the searches waiting for their records.
 */
#define WRITER_HEAD_DELAY_MS	10
#define WRITER_HEAD_INTERVAL_MS	200


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
	uint64		anchored_ticket;	/* the head file names the newest record
									 * below this (written after the backends
									 * waiting for a batch are released) */
	bool		anchor_requested;	/* verify_audit() waits for the head file */
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

/* auditwriter.c: the writer's entry point (bgw_function_name) */
PGDLLEXPORT void vecphi_audit_writer_main(Datum main_arg);

/* auditqueue.c, for the writer */
extern void audit_ring_read(AuditChannel *ch, uint64 pos, char *dst, Size len);
extern void audit_channel_anchored(AuditChannel *ch);
extern bool audit_channel_is_idle(AuditChannel *ch);
extern void audit_channel_release(AuditChannel *ch);
extern AuditShared *audit_shared;

#endif							/* VECPHI_AUDITQUEUE_H */
