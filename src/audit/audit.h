/*-------------------------------------------------------------------------
 *
 * audit.h
 *	  The audit trail: events every part of vecphi reports, and the hooks
 *	  that turn similarity scans and decryptions into audit records.
 *
 * audit_emit() queues one record for vecphi.audit_log.  The claims of the
 * current transaction (subject, tenant, role, purpose, break-glass) and
 * the database user are filled in here; callers say what happened.  With
 * wait_durable the call returns only once the record is committed by the
 * audit writer (or raises an error: the audit fails closed).
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_AUDIT_H
#define VECPHI_AUDIT_H

/* Actions (the audit_log.action column). */
#define AUDIT_ACTION_INDEX_SCAN		"index_scan"
#define AUDIT_ACTION_EXACT_SCAN		"exact_scan"
#define AUDIT_ACTION_READ			"read"
#define AUDIT_ACTION_DECRYPT		"decrypt"
#define AUDIT_ACTION_DENIAL			"denial"
#define AUDIT_ACTION_KEY_CREATE		"key_create"
#define AUDIT_ACTION_KEY_ROTATE_KEK	"key_rotate_kek"
#define AUDIT_ACTION_KEY_ROTATE_DEK	"key_rotate_dek"
#define AUDIT_ACTION_KEY_SHRED		"key_shred"
#define AUDIT_ACTION_ERASURE		"erasure"
#define AUDIT_ACTION_PURGE			"audit_purge"
#define AUDIT_ACTION_DROPPED		"audit_dropped"
#define AUDIT_ACTION_QUARANTINE		"audit_quarantine"
#define AUDIT_ACTION_PERMISSION_ERROR	"permission_error"
#define AUDIT_ACTION_BIND			"bind"
#define AUDIT_ACTION_STATS_RESET	"stats_reset"
#define AUDIT_ACTION_DISTRIBUTED_SCAN	"distributed_scan"	/* Citus coordinator */

/* Outcomes (the audit_log.outcome column). */
#define AUDIT_OUTCOME_OK			"ok"
#define AUDIT_OUTCOME_ERROR			"error"
#define AUDIT_OUTCOME_DENIED		"denied"

typedef struct AuditEvent
{
	const char *action;			/* one of AUDIT_ACTION_* */
	const char *outcome;		/* one of AUDIT_OUTCOME_* */
	Oid			relid;			/* relation concerned, or InvalidOid */
	Oid			indexid;		/* index used, or InvalidOid */
	int64		rows;			/* rows returned / erased, -1 if none */
	const char *row_ids;		/* text[] literal of row identities, or NULL */
	const char *detail;			/* free text for the auditor, or NULL */
	const uint8 *query_digest;	/* SHA-256 of the query vector, or NULL */
} AuditEvent;

extern void audit_emit(const AuditEvent *event, bool wait_durable);
extern void audit_denial_at(const char *message, const char *detail,
							const char *file);

extern void audit_init(void);

/*
 * vecphi.max_scan_rows (auditexec.c): enforced there, for exact scans in
 * the executor capture and for ehnsw scans through report_index_row().
 */
extern int	vecphi_max_scan_rows;

#endif							/* VECPHI_AUDIT_H */
