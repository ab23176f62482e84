/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The audit trail: the guards that keep vecphi.audit_log append-only,
 *	  denial and permission-error records, and start-up.
 *
 * The audit module's files: audit.c (this), auditsettings.c (the
 * settings, at the bottom of the module), auditchain.c (records, the
 * chain's key and head file), auditverify.c (verify_audit() and the other
 * SQL functions), auditexec.c and auditplan.c (capture in the planner and
 * executor), auditqueue.c (the shared queue) and auditwriter.c (the
 * writer worker).
 *
 * Every record is chained: row_hash = HMAC-SHA-256(key, prev_hash ||
 * canonical columns), where prev_hash is the row_hash of the row before.
 * The key is a file only the server's OS user can read, kept with the
 * other keys and never in the data directory (audit.key in
 * vecphi.key_directory, or vecphi.audit_key_file; created by the first
 * audit writer of a primary), so someone who can only edit the table, or
 * holds a base backup, cannot forge matching hashes.  A chain cannot know
 * its own end, so after its batches the writer also writes a head file next
 * to the key (seq and hash of the newest record): verify_audit() finds
 * deleted newest rows with it, and writers continue after it.  A superuser
 * can read and write any file the server can, so against a superuser the
 * chain proves edits made by hand; vecphi.audit_head() exports the newest
 * hash for anchoring outside the server, which also exposes a chain
 * recomputed with the key.
 *
 * Only vecphi's own refusals become `denial` records (report_denial());
 * other errors of class 28000/42501 are `permission_error` records naming
 * where the server raised them.
 *
 * The canonical form of a row is each hashed column, in table order, as
 * its text output (timestamps as microseconds, so DateStyle and TimeZone
 * do not matter), length-prefixed, NULL marked apart from the empty
 * string.  The writer and vecphi.verify_audit() both derive it from what
 * the column will print, so they agree by construction.
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

static emit_log_hook_type prev_emit_log_hook = NULL;
static int	utility_slot;		/* of audit_ProcessUtility (hooks.h) */

/* The retention purge may delete rows up to this seq (0: no purge running). */
int64		audit_purge_through_seq = 0;
TimestampTz audit_purge_cutoff = 0;

/* Set once vecphi is known to be installed in this database. */
static bool extension_seen = false;

/*
 * Guards against recursion when recording a permission error fails: the
 * transaction (local id) whose error the log hook is recording.  Tied to
 * the transaction rather than a flag to reset, so that even a path that
 * leaves the hook without reaching its end (an error while recording,
 * which aborts that transaction) cannot disable recording for the rest of
 * the session.
 */
static LocalTransactionId recording_denial_lxid = InvalidLocalTransactionId;

/*
 * The denial vecphi recorded itself just before raising it: its message,
 * statement and the source file of the ereport() that follows.
 */
static char *self_denial_message = NULL;
static char self_denial_file[MAXPGPATH];
static TimestampTz self_denial_statement = 0;



/* ---------- append-only guards ---------- */

static Oid
audit_log_relid(void)
{
	Oid			nsp = get_namespace_oid("vecphi", true);

	return OidIsValid(nsp) ? get_relname_relid("audit_log", nsp) : InvalidOid;
}

static void
refuse_audit_log_change(const char *what)
{
	char	   *message = psprintf("vecphi.audit_log is append-only: %s is not allowed", what);

	vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, message, NULL,
				errdetail("Only vecphi's audit writer adds rows, and only vecphi.purge_audit() removes rows past vecphi.audit_retention."));
}

PG_FUNCTION_INFO_V1(vecphi_audit_log_guard);
Datum
vecphi_audit_log_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "vecphi_audit_log_guard: not called as a trigger");

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		refuse_audit_log_change("TRUNCATE");
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		refuse_audit_log_change("UPDATE");
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		if (!am_audit_writer)
			refuse_audit_log_change("INSERT");
		return PointerGetDatum(trigdata->tg_trigtuple);
	}
	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		HeapTuple	old = trigdata->tg_trigtuple;
		TupleDesc	desc = trigdata->tg_relation->rd_att;
		bool		isnull;
		int64		seq = DatumGetInt64(heap_getattr(old, 1, desc, &isnull));
		TimestampTz at = DatumGetTimestampTz(heap_getattr(old, 2, desc, &isnull));

		if (audit_purge_through_seq == 0 || seq > audit_purge_through_seq || at >= audit_purge_cutoff)
			refuse_audit_log_change("DELETE");
		return PointerGetDatum(old);
	}
	return PointerGetDatum(NULL);
}

/* Does a RangeVar name vecphi.audit_log? */
static bool
rangevar_is_audit_log(RangeVar * rv, Oid audit_relid)
{
	return rv != NULL &&
		RangeVarGetRelid(rv, NoLock, true) == audit_relid;
}

/* Does a qualified name list (schema.table[.object]) name the audit log? */
static bool
names_are_audit_log(List *names, bool has_object, Oid audit_relid)
{
	List	   *relname = names;

	if (has_object)
		relname = list_truncate(list_copy(names), list_length(names) - 1);
	if (relname == NIL)
		return false;
	return rangevar_is_audit_log(makeRangeVarFromNameList(relname), audit_relid);
}

/*
 * Refuse DDL on vecphi.audit_log to everyone but superusers (its owner
 * included): disabling or dropping the guard triggers, rules, policies,
 * renaming or dropping the table.  A superuser can still do all of it;
 * the hash chain exposes what follows.
 */
static void
audit_check_utility(Node * stmt)
{
	Oid			audit_relid;
	bool		hit = false;
	ListCell   *lc;

	/*
	 * The statement kind first: a ROLLBACK of an aborted transaction comes
	 * here too, and then no catalog may be read (superuser() may have to).
	 */
	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
		case T_RenameStmt:
		case T_CreateTrigStmt:
		case T_RuleStmt:
		case T_CreatePolicyStmt:
		case T_AlterPolicyStmt:
		case T_DropStmt:
		case T_TruncateStmt:
		case T_AlterObjectSchemaStmt:
		case T_GrantStmt:
			break;
		default:
			return;
	}
	if (!IsTransactionState() || superuser())
		return;
	audit_relid = audit_log_relid();
	if (!OidIsValid(audit_relid))
		return;

	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			hit = rangevar_is_audit_log(((AlterTableStmt *) stmt)->relation, audit_relid);
			break;
		case T_RenameStmt:
			hit = rangevar_is_audit_log(((RenameStmt *) stmt)->relation, audit_relid);
			break;
		case T_CreateTrigStmt:
			hit = rangevar_is_audit_log(((CreateTrigStmt *) stmt)->relation, audit_relid);
			break;
		case T_RuleStmt:
			hit = rangevar_is_audit_log(((RuleStmt *) stmt)->relation, audit_relid);
			break;
		case T_CreatePolicyStmt:
			hit = rangevar_is_audit_log(((CreatePolicyStmt *) stmt)->table, audit_relid);
			break;
		case T_AlterPolicyStmt:
			hit = rangevar_is_audit_log(((AlterPolicyStmt *) stmt)->table, audit_relid);
			break;
		case T_AlterObjectSchemaStmt:
			hit = rangevar_is_audit_log(((AlterObjectSchemaStmt *) stmt)->relation, audit_relid);
			break;
		case T_TruncateStmt:
			foreach(lc, ((TruncateStmt *) stmt)->relations)
				hit |= rangevar_is_audit_log(lfirst_node(RangeVar, lc), audit_relid);
			break;
		case T_GrantStmt:
			{
				GrantStmt  *g = (GrantStmt *) stmt;

				if (g->is_grant && g->objtype == OBJECT_TABLE &&
					g->targtype == ACL_TARGET_OBJECT)
					foreach(lc, g->objects)
						hit |= rangevar_is_audit_log(lfirst_node(RangeVar, lc), audit_relid);
				break;
			}
		case T_DropStmt:
			{
				DropStmt   *d = (DropStmt *) stmt;

				if (d->removeType == OBJECT_TABLE)
					foreach(lc, d->objects)
						hit |= names_are_audit_log(lfirst(lc), false, audit_relid);
				else if (d->removeType == OBJECT_TRIGGER ||
						 d->removeType == OBJECT_RULE ||
						 d->removeType == OBJECT_POLICY)
					foreach(lc, d->objects)
						hit |= names_are_audit_log(lfirst(lc), true, audit_relid);
				break;
			}
		default:
			break;
	}
	if (hit)
	{
		vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, "only a superuser may alter vecphi.audit_log or its triggers", NULL,
					errdetail("The audit log is append-only for every other role, its owner included."));
	}
}

static void
audit_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment * queryEnv,
					 DestReceiver *dest, QueryCompletion * qc)
{
	if (!am_audit_writer)
		audit_check_utility(pstmt->utilityStmt);
	utility_next(utility_slot, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

/*
 * Record a denial vecphi is about to raise (a bad token, no claims, another
 * tenant's value, vecphi.max_scan_rows, a change to the audit log).  Only
 * these become `denial` records.  Recorded here, before the error, because
 * a PL/pgSQL EXCEPTION block that catches the error would keep it from
 * ever being reported to the log hook below - and probing tokens or
 * tenants inside such a block must leave a trace too.  The backend waits
 * for queue space as a scan does; a record that still finds none is
 * counted as lost (auditqueue.c).  file is the caller's __FILE__ (see the
 * report_denial() macro): the log hook skips the same error when it is
 * reported from that file.
 */
void
audit_denial_at(const char *message, const char *detail, const char *file)
{
	AuditRecord rec;
	const char *base = strrchr(file, '/');

	if (!vecphi_audit_enabled || am_audit_writer || IsParallelWorker() ||
		!OidIsValid(MyDatabaseId) || !IsTransactionState())
		return;
	memset(&rec, 0, sizeof(rec));
	audit_record_fill_context(&rec);
	rec.action = AUDIT_ACTION_DENIAL;
	rec.outcome = AUDIT_OUTCOME_DENIED;
	rec.detail = detail ? psprintf("%s: %s", message, detail) : (char *) message;
	(void) audit_enqueue_record_mode(&rec, AUDIT_PUSH_WAIT);

	if (self_denial_message != NULL)
		pfree(self_denial_message);
	self_denial_message = MemoryContextStrdup(TopMemoryContext, message);
	strlcpy(self_denial_file, base ? base + 1 : file, sizeof(self_denial_file));
	self_denial_statement = GetCurrentStatementStartTimestamp();
}

/*
 * Errors of class 28000 (invalid authorization) or 42501 (insufficient
 * privilege) that vecphi did not record through report_denial():
 * PostgreSQL's own refusals (permission denied, row-level security on a
 * write) and errors raised by SQL or PL code (RAISE ... USING ERRCODE).
 * They become `permission_error` records, never `denial`: anyone can raise
 * such an error with any text.  Where the error was raised (function and
 * source file) comes from the server's ErrorData, which no SQL can set,
 * and is appended to the message.  Queued without waiting and without ever
 * raising another error from inside error reporting; a record that does
 * not fit is counted as lost.
 */
static void
audit_emit_log_hook(ErrorData * edata)
{
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);

	if (edata->elevel < ERROR || !vecphi_audit_enabled || MyProc == NULL ||
		(recording_denial_lxid != InvalidLocalTransactionId &&
		 recording_denial_lxid == MyProc->lxid) ||
		am_audit_writer || IsParallelWorker() || !IsTransactionState() ||
		!OidIsValid(MyDatabaseId))
		return;
	if (edata->sqlerrcode != ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION &&
		edata->sqlerrcode != ERRCODE_INSUFFICIENT_PRIVILEGE)
		return;

	/* Already recorded by report_denial(), from the file that raised it? */
	if (self_denial_message != NULL &&
		self_denial_statement == GetCurrentStatementStartTimestamp() &&
		edata->message != NULL && strcmp(edata->message, self_denial_message) == 0 &&
		edata->filename != NULL && strcmp(edata->filename, self_denial_file) == 0)
	{
		pfree(self_denial_message);
		self_denial_message = NULL;
		return;
	}

	recording_denial_lxid = MyProc->lxid;
	if (!extension_seen)
		extension_seen = OidIsValid(get_extension_oid("vecphi", true));
	if (extension_seen)
	{
		AuditRecord rec;
		const char *msg = edata->message ? edata->message : "";

		memset(&rec, 0, sizeof(rec));
		audit_record_fill_context(&rec);
		rec.action = AUDIT_ACTION_PERMISSION_ERROR;
		rec.outcome = AUDIT_OUTCOME_ERROR;

		/*
		 * Bounded (whole characters), so that a huge message cannot make this
		 * allocation fail: an error raised here, inside error reporting,
		 * would free the error being reported.
		 */
		rec.detail = psprintf("%.*s [raised in %s, %s]",
							  pg_mbcliplen(msg, strlen(msg), 1024), msg,
							  edata->funcname ? edata->funcname : "?",
							  edata->filename ? edata->filename : "?");
		(void) audit_enqueue_record_mode(&rec, AUDIT_PUSH_NOWAIT);
	}
	recording_denial_lxid = InvalidLocalTransactionId;
}


/*
 * A key event reported by the keys layer (common/report.h): one record,
 * outcome ok, no relation.  Queued, or with wait_durable awaited.
 */
static void
audit_key_event(ReportKeyEvent event, int64 rows, const char *detail,
				bool wait_durable)
{
	AuditEvent	ev;

	memset(&ev, 0, sizeof(ev));
	switch (event)
	{
		case REPORT_KEY_CREATE:
			ev.action = AUDIT_ACTION_KEY_CREATE;
			break;
		case REPORT_KEY_ROTATE_KEK:
			ev.action = AUDIT_ACTION_KEY_ROTATE_KEK;
			break;
		case REPORT_KEY_ROTATE_DEK:
			ev.action = AUDIT_ACTION_KEY_ROTATE_DEK;
			break;
		case REPORT_KEY_SHRED:
			ev.action = AUDIT_ACTION_KEY_SHRED;
			break;
	}
	if (ev.action == NULL)
		elog(ERROR, "vecphi: unknown key event %d", (int) event);
	ev.outcome = AUDIT_OUTCOME_OK;
	ev.relid = InvalidOid;
	ev.indexid = InvalidOid;
	ev.rows = rows;
	ev.detail = detail;
	audit_emit(&ev, wait_durable);
}

/* The receivers of common/report.h's reports. */
static const ReportSink audit_report_sink = {
	.denial = audit_denial_at,
	.decrypt = audit_count_decrypt,
	.distance = audit_note_distance,
	.key_event = audit_key_event,
	.index_row = auditexec_index_row,
};

/* ---------- start-up ---------- */

void
audit_init(void)
{
	audit_settings_init();
	auditqueue_install_hooks();
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = audit_emit_log_hook;
	utility_slot = utility_register(audit_ProcessUtility);
	/* Before auditexec_init(): its transaction callback must run first. */
	auditcitus_init();
	auditexec_init();

	/* What the layers below report (common/report.h) comes here. */
	report_set_sink(&audit_report_sink);
}
