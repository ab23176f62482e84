/*-------------------------------------------------------------------------
 *
 * auditint.h
 *	  Internals shared by the parts of the audit: the record that travels
 *	  from a backend to the audit writer, the hash chain, the queue.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_AUDITINT_H
#define VECPHI_AUDITINT_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

#include "audit.h"

#define AUDIT_DIGEST_LEN	32
#define AUDIT_KEY_LEN		32

/* Directory in the data directory: the standby file. */
#define AUDIT_DIR			"vecphi_audit"

/* Columns of vecphi.audit_log covered by the hash chain, in table order. */
typedef enum AuditColumn
{
	AC_SEQ,
	AC_AT,
	AC_DB_USER,
	AC_BACKEND_PID,
	AC_STATEMENT_ID,
	AC_SUBJECT,
	AC_TENANT,
	AC_APP_ROLE,
	AC_PURPOSE,
	AC_BREAK_GLASS,
	AC_BREAK_GLASS_REASON,
	AC_ACTION,
	AC_RELATION,
	AC_INDEX_NAME,
	AC_ROWS_RETURNED,
	AC_ROW_IDS,
	AC_QUERY_FINGERPRINT,
	AC_OUTCOME,
	AC_DETAIL,
	AUDIT_HASHED_COLUMNS
} AuditColumn;

/* An audit record as queued by a backend (before it has a seq). */
typedef struct AuditRecord
{
	TimestampTz at;
	int32		backend_pid;
	bool		break_glass;
	bool		has_statement_id;
	bool		has_rows;
	bool		has_digest;
	int64		statement_id;
	int64		rows;
	uint8		digest[AUDIT_DIGEST_LEN];	/* SHA-256 of the query vector */
	/* NULL when absent */
	char	   *db_user;
	char	   *subject;
	char	   *tenant;
	char	   *app_role;
	char	   *purpose;
	char	   *break_glass_reason;
	char	   *action;
	char	   *relation;
	char	   *index_name;
	char	   *row_ids;		/* text[] literal */
	char	   *outcome;
	char	   *detail;
} AuditRecord;

/*
 * The chain's anchor outside the table: the newest record a writer of this
 * database committed, and the transaction that committed it.
 */
typedef struct AuditHead
{
	int64		seq;
	uint8		hash[AUDIT_DIGEST_LEN];
	uint64		fxid;			/* FullTransactionId of the writer's commit */
} AuditHead;

/* How auditqueue_push_mode() treats a full queue. */
typedef enum AuditPushMode
{
	AUDIT_PUSH_RAISE,			/* wait up to vecphi.audit_timeout, then error */
	AUDIT_PUSH_WAIT,			/* wait as long, then count the record dropped */
	AUDIT_PUSH_NOWAIT			/* count it dropped at once (error reporting) */
} AuditPushMode;

/* Settings (auditsettings.c) */
extern bool vecphi_audit_enabled;
extern bool vecphi_audit_synchronous;
extern int	vecphi_audit_timeout_ms;
extern int	vecphi_audit_queue_kb;
extern int	vecphi_audit_retention_min;
extern char *vecphi_audit_key_file;
extern void audit_settings_init(void);

/* True in the audit writer process (its own statements are not audited). */
extern bool am_audit_writer;

/* audit.c */
extern void audit_record_serialize(const AuditRecord *rec, StringInfo buf);
extern void audit_record_deserialize(const char *data, Size len,
									 AuditRecord *rec);
extern void audit_load_key(uint8 *key, bool create_if_missing);
extern void audit_chain_hash(const uint8 *key, const uint8 *prev_hash,
							 const char *const *values, uint8 *hash);
extern char *audit_fingerprint_hex(const uint8 *key, const uint8 *digest);
extern uint64 audit_enqueue_record(const AuditRecord *rec, bool nothrow);
extern uint64 audit_enqueue_record_mode(const AuditRecord *rec,
										AuditPushMode mode);
extern bool audit_head_file_read(AuditHead *head);
extern void audit_head_file_write(const AuditHead *head);
extern char *audit_relation_name(Oid relid);
extern void audit_record_fill_context(AuditRecord *rec);

/* auditqueue.c */
extern void auditqueue_install_hooks(void);
extern void auditqueue_shmem_request(void);
extern void auditqueue_shmem_startup(void);
extern uint64 auditqueue_push(const char *payload, Size len, bool nothrow);
extern uint64 auditqueue_push_mode(const char *payload, Size len,
								   AuditPushMode mode);
extern void auditqueue_wait(uint64 ticket);
extern uint64 auditqueue_pending(void);
extern void auditqueue_last_ticket_wait(void);
extern void auditqueue_wait_anchored(void);
extern char *audit_standby_file_path(void);

/* auditexec.c */
extern void auditexec_init(void);
extern void audit_count_decrypt(bool is_text);
extern void audit_note_distance(void);
extern void auditexec_index_row(int64 *returned);

/*
 * auditchain.c: where audit_emit() hands an empty scan of a shard made in
 * a Citus distributed transaction; true when it took the record (set by
 * auditcitus.c, which sits above; NULL: every scan keeps its record).
 */
struct CitusTxn;
typedef bool (*AuditFoldHook) (const AuditRecord *rec, uint64 shardid,
							   const struct CitusTxn *txn);
extern AuditFoldHook audit_fold_hook;

/* auditcitus.c */
extern void auditcitus_init(void);

/* The chain key's file name in vecphi.key_directory; a purge checkpoint. */
#define AUDIT_KEY_FILE_DEFAULT "audit.key"
#define CHECKPOINT_FORMAT "purged through seq=" INT64_FORMAT " hash=%s"

/* audit.c: the purge in progress, read by the other files */
extern int64 audit_purge_through_seq;
extern TimestampTz audit_purge_cutoff;

/* auditchain.c */
extern char *audit_head_file_path(void);

#endif							/* VECPHI_AUDITINT_H */
