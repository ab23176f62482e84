/*-------------------------------------------------------------------------
 *
 * claims.c
 *	  Signed claims: vecphi.set_claims() verifies a JWT inside the server
 *	  and holds its claims until the end of the transaction.
 *
 * The claims live in this backend's private memory, not in a setting, so
 * nothing a client can SET, RESET or set_config() changes them.  They are
 * dropped when the top-level transaction ends (so a transaction-mode
 * pooler hands the next client a connection without them), when the
 * subtransaction that set them aborts, and when a token fails to verify.
 *
 * Tokens are verified in jwt.c (HS256, ES256 or RS256; the claims it
 * requires and the token policy settings are described there).
 *
 * Parallel workers: a worker cannot see the leader's private memory, but
 * it receives the leader's settings.  So the verified token travels in
 * vecphi.claims_token, a setting that only vecphi may set (its check hook
 * refuses anyone else, except the parallel worker machinery copying it),
 * and a worker verifies that token again on first use.  Settings roll
 * back on their own rules (a savepoint, a function's SET clause), so the
 * setting is not trusted to follow the claims: before every query the
 * executor hook makes it equal to the leader's current claims (the token,
 * or empty), and workers only ever start inside a query.
 *
 * The token itself is a bearer credential: set_claims() replaces it with
 * <token> in the statement text this backend reports to
 * pg_stat_activity, so other sessions of the same role cannot copy it
 * from there.  (Send it as a bind parameter all the same; see
 * docs/security.md.)
 *
 * On a Citus cluster (Citus loaded in this server) the claims must reach
 * the workers, whose backends run the shard queries of the transaction.
 * There the token itself travels: set_claims() runs SET LOCAL
 * vecphi.claims_token through ProcessUtility (a set_config_option() call
 * would bypass Citus), with citus.propagate_set_commands = 'local' for
 * that statement, so Citus sends it to every worker in the transaction and
 * with each remote BEGIN after it.  Each node verifies the token itself
 * and the claims are derived purely from the setting's current value:
 * when it changes (another set_claims(), clear_claims(), a savepoint
 * rolled back) the claims derived from the old value are dropped, and
 * SET LOCAL ends with the transaction on every node.  So on such a server
 * SET LOCAL vecphi.claims_token is accepted from anyone, but only inside a
 * transaction block and only with a token that verifies (it is exactly
 * set_claims()); SET without LOCAL, set_config() and a function's SET
 * clause stay refused.  Claims then follow the rules of SET LOCAL across
 * savepoints (ROLLBACK TO restores the claims that held at the savepoint),
 * and set_claims() outside a transaction block is an error, since no
 * worker would see those claims.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"


#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "tcop/dest.h"
#include "tcop/utility.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "claims.h"
#include "claimsint.h"
#include "hooks.h"
#include "keys.h"
#include "report.h"
#include "vecphi.h"


static MemoryContext ClaimsContext = NULL;
static VecphiClaims *current_claims = NULL;
static SubTransactionId claims_subxact = InvalidSubTransactionId;

/* vecphi.claims_token: the verified token, for parallel workers. */
static char *claims_token_setting = NULL;
static bool claims_token_setting_allowed = false;

/*
 * Citus is loaded: claims follow vecphi.claims_token on every node (see
 * the header comment).  Decided once, in claims_init().
 */
static bool claims_follow_token = false;

/* set_claims()/clear_claims() are running SET LOCAL vecphi.claims_token. */
static bool claims_internal_set = false;

/*
 * The token last offered to set_claims() in this transaction, kept so that
 * the log hook can take it out of messages even when it does not look like
 * a JWT.  In TopMemoryContext; dropped at the end of the transaction.
 */
static char *offered_token = NULL;

/* Copy of debug_query_string with tokens taken out, in TopMemoryContext. */
static char *redacted_query = NULL;

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static int	utility_slot;		/* of claims_ProcessUtility (hooks.h) */
static emit_log_hook_type prev_emit_log_hook = NULL;

static char *redact_with(const char *str, const char *marker);
static void claims_redact_activity(void);
static void claims_follow_setting(bool verify);
static void claims_token_set_stmt(VariableSetStmt * stmt, PlannedStmt * pstmt,
								  const char *queryString, bool readOnlyTree,
								  ProcessUtilityContext context, ParamListInfo params,
								  QueryEnvironment * queryEnv, DestReceiver *dest,
								  QueryCompletion * qc);

/* A WITH HOLD cursor was declared in this transaction. */
static bool holdable_cursor_declared = false;

/* Refuses a change of claims while it would open an audit hole. */
static ClaimsChangeCheck claims_change_check = NULL;

/* Forget the claims. */
static void
claims_clear(void)
{
	current_claims = NULL;
	claims_subxact = InvalidSubTransactionId;
	if (ClaimsContext != NULL)
		MemoryContextReset(ClaimsContext);
}

/* Copy a string into the claims context. */
static char *
claims_strdup(const char *s)
{
	return s ? MemoryContextStrdup(ClaimsContext, s) : NULL;
}

/* Make verified claims the current ones, copied into the claims context. */
static void
claims_install(const VecphiClaims *verified)
{
	current_claims = MemoryContextAllocZero(ClaimsContext, sizeof(VecphiClaims));
	current_claims->tenant = claims_strdup(verified->tenant);
	current_claims->role = claims_strdup(verified->role);
	current_claims->subject = claims_strdup(verified->subject);
	current_claims->purpose = claims_strdup(verified->purpose);
	current_claims->break_glass = claims_strdup(verified->break_glass);
	current_claims->expires = verified->expires;
	current_claims->token = claims_strdup(verified->token);
	claims_subxact = GetCurrentSubTransactionId();
}

/* Check hook of vecphi.claims_token: only set_claims() may set it. */
static bool
claims_token_check(char **newval, void **extra, GucSource source)
{
	if (claims_token_setting_allowed || InitializingParallelWorker ||
		*newval == NULL || (*newval)[0] == '\0')
		return true;
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("vecphi.claims_token can only be set by vecphi.set_claims()");
	return false;
}

/* Set vecphi.claims_token for the rest of the transaction. */
static void
claims_token_set(const char *token)
{
	claims_token_setting_allowed = true;
	PG_TRY();
	{
		(void) set_config_option("vecphi.claims_token", token,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
	}
	PG_FINALLY();
	{
		claims_token_setting_allowed = false;
	}
	PG_END_TRY();
}

/*
 * Make the claims those of vecphi.claims_token's current value: drop claims
 * derived from another value, and (when verify) verify a token not yet
 * verified.  A token that fails to verify raises, leaving no claims.
 */
static void
claims_follow_setting(bool verify)
{
	const char *token = claims_token_setting != NULL ? claims_token_setting : "";

	if (current_claims != NULL &&
		(current_claims->token == NULL || strcmp(current_claims->token, token) != 0))
		claims_clear();
	if (verify && current_claims == NULL && token[0] != '\0')
		claims_install(jwt_verify(token));
}

/*
 * On a Citus node whose transaction carries a token: no
 * citus.log_remote_commands for the rest of the transaction.  Citus sends
 * the SET LOCAL carrying the token with each remote BEGIN and reports every
 * command it sends as a NOTICE; a NOTICE below log_min_messages goes to the
 * client without passing emit_log_hook, so it could not be redacted.
 */
static void
claims_quiet_remote_log(bool always)
{
	const char *log;

	if (!always && (!claims_follow_token || claims_token_setting == NULL ||
					claims_token_setting[0] == '\0'))
		return;
	log = GetConfigOption("citus.log_remote_commands", true, false);
	if (log != NULL && strcmp(log, "off") != 0)
		(void) set_config_option("citus.log_remote_commands", "off",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
}

/*
 * The claims of this transaction, or NULL.  Claims whose token expired
 * since they were set are refused, judged at the statement's start.
 */
const VecphiClaims *
claims_current(void)
{
	/*
	 * A parallel worker verifies the leader's token once; on a Citus node the
	 * claims are whatever the setting's current token says.
	 */
	if (claims_follow_token || IsParallelWorker())
		claims_follow_setting(true);

	if (current_claims != NULL && current_claims->expires != 0 &&
		unix_now(GetCurrentStatementStartTimestamp()) >
		current_claims->expires + CLAIMS_CLOCK_SKEW_SECS)
	{
		/* Recorded under the claims that expired, then dropped. */
		report_denial("claims token has expired", "The claims expired during the transaction.");
		claims_clear();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("claims token has expired")));
	}
	return current_claims;
}

/*
 * The claims as they stand, without the expiry check: for the audit trail,
 * which must describe even a statement that failed because of them.
 */
const VecphiClaims *
claims_peek(void)
{
	if (claims_follow_token)
		claims_follow_setting(false);
	return current_claims;
}

/* Tenant id of the claimant; 42501 without claims. */
uint32
claims_require_tenant_id(void)
{
	const VecphiClaims *claims = claims_current();

	if (claims == NULL)
	{
		vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, "no verified claims in this transaction", NULL,
					errhint("Call vecphi.set_claims() with a signed token inside the transaction."));
	}
	if (claims->tenant_id == 0)
		current_claims->tenant_id = keys_tenant_id(claims->tenant, false);
	return current_claims->tenant_id;
}

static void
claims_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			claims_clear();
			holdable_cursor_declared = false;
			if (offered_token != NULL)
			{
				crypto_wipe(offered_token, strlen(offered_token));
				pfree(offered_token);
				offered_token = NULL;
			}
			break;
		default:
			break;
	}
}

static void
claims_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && current_claims != NULL &&
		claims_subxact == mySubid)
		claims_clear();
	else if (event == SUBXACT_EVENT_COMMIT_SUB && current_claims != NULL &&
			 claims_subxact == mySubid)
		claims_subxact = parentSubid;
}

/*
 * Before every query of the leader, make vecphi.claims_token say what the
 * leader's claims are, so parallel workers get exactly those (or none).
 */
static void
claims_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (claims_follow_token && IsTransactionState())
		claims_quiet_remote_log(false);
	else if (!IsParallelWorker() && !IsInParallelMode() && IsTransactionState())
	{
		const char *want = current_claims != NULL ? current_claims->token : "";

		if (claims_token_setting == NULL || strcmp(claims_token_setting, want) != 0)
			claims_token_set(want);
	}
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/*
 * EXPLAIN prints constants, and a token passed to set_claims() (as a
 * literal, or as a parameter of EXPLAIN EXECUTE, whose custom plan holds it
 * as a constant) would come back in its output.  So EXPLAIN's output goes
 * through this receiver, which redacts every token from each line (text,
 * JSON, XML or YAML) before it reaches the client.  auto_explain writes to
 * the log, which claims_emit_log_hook() already redacts.
 */
typedef struct RedactingReceiver
{
	DestReceiver pub;
	DestReceiver *inner;
} RedactingReceiver;

static void
redacting_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	RedactingReceiver *r = (RedactingReceiver *) self;

	r->inner->rStartup(r->inner, operation, typeinfo);
}

static bool
redacting_receive(TupleTableSlot *slot, DestReceiver *self)
{
	RedactingReceiver *r = (RedactingReceiver *) self;
	TupleDesc	desc = slot->tts_tupleDescriptor;

	slot_getallattrs(slot);
	for (int i = 0; i < desc->natts; i++)
	{
		Oid			type = TupleDescAttr(desc, i)->atttypid;
		char	   *redacted;

		/* EXPLAIN's output types are all text underneath. */
		if (slot->tts_isnull[i] ||
			(type != TEXTOID && type != JSONOID && type != XMLOID))
			continue;
		/* The marker must not break an XML document. */
		redacted = redact_with(TextDatumGetCString(slot->tts_values[i]),
							   type == XMLOID ? "&lt;token&gt;" : "<token>");
		if (redacted != NULL)
			slot->tts_values[i] = CStringGetTextDatum(redacted);
	}
	return r->inner->receiveSlot(slot, r->inner);
}

static void
redacting_shutdown(DestReceiver *self)
{
	RedactingReceiver *r = (RedactingReceiver *) self;

	r->inner->rShutdown(r->inner);
}

static void
redacting_destroy(DestReceiver *self)
{
	pfree(self);
}

static DestReceiver *
redacting_receiver(DestReceiver *inner)
{
	RedactingReceiver *r = palloc0(sizeof(RedactingReceiver));

	r->pub.receiveSlot = redacting_receive;
	r->pub.rStartup = redacting_startup;
	r->pub.rShutdown = redacting_shutdown;
	r->pub.rDestroy = redacting_destroy;
	r->pub.mydest = inner->mydest;
	r->inner = inner;
	return &r->pub;
}

/*
 * A WITH HOLD cursor is run to completion at commit and read afterwards,
 * when the claims that decrypted its rows are gone: the next transaction
 * on the connection (another user's, behind a pooler) would read them.
 * So no such cursor while claims are set, and no claims in a transaction
 * that declared one.  EXPLAIN's output goes through redacting_receiver().
 */
static void
claims_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment * queryEnv,
					  DestReceiver *dest, QueryCompletion * qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (claims_follow_token && IsA(parsetree, VariableSetStmt) &&
		((VariableSetStmt *) parsetree)->name != NULL &&
		pg_strcasecmp(((VariableSetStmt *) parsetree)->name, "vecphi.claims_token") == 0)
	{
		claims_token_set_stmt((VariableSetStmt *) parsetree, pstmt, queryString,
							  readOnlyTree, context, params, queryEnv, dest, qc);
		return;
	}
	if (IsTransactionState())
		claims_quiet_remote_log(false);
	if (IsA(parsetree, DeclareCursorStmt) &&
		(((DeclareCursorStmt *) parsetree)->options & CURSOR_OPT_HOLD) != 0)
	{
		if (current_claims != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot declare a WITH HOLD cursor while vecphi claims are set"),
					 errdetail("Its rows would be computed under these claims and outlive them into the next transaction."),
					 errhint("Declare the cursor without WITH HOLD.")));
		holdable_cursor_declared = true;
	}
	if (IsA(parsetree, ExplainStmt) && dest != NULL)
		dest = redacting_receiver(dest);
	utility_next(utility_slot, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

/*
 * Raise unless a WITH HOLD cursor and the audit allow the claims to change
 * now.
 */
static void
claims_check_change(bool setting)
{
	if (claims_change_check != NULL)
		claims_change_check();
	if (setting && holdable_cursor_declared)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot set vecphi claims in a transaction that declared a WITH HOLD cursor"),
				 errdetail("The cursor's rows would be computed under these claims and outlive them.")));
}

/* Keep the token last offered, to redact it even when it is not JWT-like. */
static void
claims_remember_offered(const char *token)
{
	if (offered_token != NULL)
	{
		crypto_wipe(offered_token, strlen(offered_token));
		pfree(offered_token);
	}
	offered_token = MemoryContextStrdup(TopMemoryContext, token);
}

/*
 * SET LOCAL vecphi.claims_token (or RESET, SET ... TO DEFAULT) on a server
 * with Citus: from set_claims()/clear_claims() of this backend, from the
 * coordinator (Citus sends it with each remote BEGIN), or from a client.
 * A token is verified here, before the setting changes, so that a forged
 * or expired one is refused on every node; setting it is set_claims()
 * (same checks).  Citus propagates the statement to the workers of the
 * transaction when citus.propagate_set_commands is 'local': it is, for
 * this statement.
 */
static void
claims_token_set_stmt(VariableSetStmt * stmt, PlannedStmt * pstmt,
					  const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment * queryEnv, DestReceiver *dest,
					  QueryCompletion * qc)
{
	char	   *value = NULL;
	VecphiClaims *volatile verified = NULL;
	const char *propagate;

	switch (stmt->kind)
	{
		case VAR_SET_VALUE:
			if (stmt->is_local)
				value = ExtractSetVariableArgs(stmt);
			break;
		case VAR_SET_DEFAULT:
			if (stmt->is_local)
				value = "";
			break;
		case VAR_RESET:
			value = "";
			break;
		default:
			break;
	}
	if (value == NULL || (value[0] != '\0' && !IsTransactionBlock()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("vecphi.claims_token can only be set with SET LOCAL inside a transaction block"),
				 errhint("Call vecphi.set_claims() after BEGIN.")));

	if (!claims_internal_set)
	{
		claims_check_change(value[0] != '\0');
		if (value[0] != '\0')
		{
			claims_remember_offered(value);
			claims_redact_activity();
			verified = jwt_verify(value);
		}
	}

	propagate = GetConfigOption("citus.propagate_set_commands", true, false);
	if (propagate != NULL)
		propagate = pstrdup(propagate);
	/* Quiet before the setting changes: Citus sends it at once. */
	if (value[0] != '\0')
		claims_quiet_remote_log(true);
	claims_token_setting_allowed = true;
	PG_TRY();
	{
		if (propagate != NULL)
			(void) set_config_option("citus.propagate_set_commands", "local",
									 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
									 true, 0, false);
		utility_next(utility_slot, pstmt, queryString, readOnlyTree, context,
					 params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		claims_token_setting_allowed = false;
	}
	PG_END_TRY();
	if (propagate != NULL)
		(void) set_config_option("citus.propagate_set_commands", propagate,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);

	/* The claims are now the new token's (or none). */
	claims_clear();
	if (verified != NULL)
		claims_install(verified);
}

/*
 * On a Citus node: SET LOCAL vecphi.claims_token = token, through
 * ProcessUtility so that Citus sees and propagates it.
 */
static void
claims_token_publish(const char *token)
{
	StringInfoData sql;
	List	   *parsed;
	PlannedStmt *pstmt;
	QueryCompletion qc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SET LOCAL vecphi.claims_token = %s", quote_literal_cstr(token));
	parsed = raw_parser(sql.data, RAW_PARSE_DEFAULT);
	pstmt = makeNode(PlannedStmt);
	pstmt->commandType = CMD_UTILITY;
	pstmt->canSetTag = false;
	pstmt->utilityStmt = linitial_node(RawStmt, parsed)->stmt;
	pstmt->stmt_location = -1;
	pstmt->stmt_len = 0;
	InitializeQueryCompletion(&qc);

	claims_internal_set = true;
	PG_TRY();
	{
		ProcessUtility(pstmt, sql.data, false, PROCESS_UTILITY_QUERY, NULL, NULL,
					   None_Receiver, &qc);
	}
	PG_FINALLY();
	{
		claims_internal_set = false;
		crypto_wipe(sql.data, sql.len);
	}
	PG_END_TRY();
}

/* A character that may occur in a base64url segment. */
static inline bool
is_b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '_';
}

/*
 * Length of what looks like a JWT at p, or 0.  Its header is base64url
 * JSON, so it starts "ey" ('{' then '"' or ' ') or "ew" ('{' then a line
 * break).  "eyJ" ('{"', what every issuer writes) and at least 10 more
 * base64url characters count with whatever ".segment"s follow, so a token
 * cut short or missing its signature is caught too; the rarer starts count
 * only with two more segments, the first as long (not "db.schema.table").
 */
static size_t
jwt_like_length(const char *str, const char *p)
{
	const char *q;
	int			dots = 0;
	size_t		second = 0;		/* length of the segment after the first dot */

	if (p[0] != 'e' || (p[1] != 'y' && p[1] != 'w'))
		return 0;
	/* Not in the middle of a longer base64 string. */
	if (p > str && (is_b64url_char(p[-1]) || p[-1] == '+' || p[-1] == '/'))
		return 0;
	for (q = p + 2; is_b64url_char(*q); q++)
		;
	if (q - p < 13)
		return 0;
	while (*q == '.')
	{
		const char *seg = ++q;

		while (is_b64url_char(*q))
			q++;
		if (++dots == 1)
			second = q - seg;
	}
	if (p[1] == 'y' && p[2] == 'J')
		return q - p;
	return dots >= 2 && second >= 13 ? q - p : 0;
}

/*
 * str with every claims token replaced by marker, or NULL when it holds
 * none.  A token is anything that looks like a JWT, or the exact token last
 * offered to set_claims() in this transaction (when at least 16 bytes long,
 * so that a junk "token" does not blank out ordinary words).
 */
static char *
redact_with(const char *str, const char *marker)
{
	StringInfoData out;
	const char *p;
	size_t		offered_len = offered_token != NULL ? strlen(offered_token) : 0;
	bool		changed = false;

	if (str == NULL)
		return NULL;
	if (offered_len < 16)
		offered_len = 0;
	if (strstr(str, "ey") == NULL && strstr(str, "ew") == NULL &&
		(offered_len == 0 || strstr(str, offered_token) == NULL))
		return NULL;

	initStringInfo(&out);
	p = str;
	while (*p)
	{
		size_t		n = jwt_like_length(str, p);

		if (n == 0 && offered_len > 0 && strncmp(p, offered_token, offered_len) == 0)
			n = offered_len;
		if (n > 0)
		{
			appendStringInfoString(&out, marker);
			p += n;
			changed = true;
		}
		else
			appendStringInfoChar(&out, *p++);
	}
	if (!changed)
	{
		pfree(out.data);
		return NULL;
	}
	return out.data;
}

/* str with every claims token replaced by "<token>", or NULL when none. */
char *
claims_redact_text(const char *str)
{
	return redact_with(str, "<token>");
}

/*
 * Take the token out of the statement text pg_stat_activity shows for this
 * backend.
 */
static void
claims_redact_activity(void)
{
	char	   *redacted = claims_redact_text(debug_query_string);

	if (redacted != NULL)
	{
		pgstat_report_activity(STATE_RUNNING, redacted);
		pfree(redacted);
	}
	else if (debug_query_string != NULL && debug_query_string == redacted_query)
	{
		/* The log hook got there first (log_statement): report its copy. */
		pgstat_report_activity(STATE_RUNNING, redacted_query);
	}
}

/* Replace *field by its redacted copy, if it holds a token. */
static void
redact_field(char **field)
{
	char	   *redacted = claims_redact_text(*field);

	if (redacted != NULL)
		*field = redacted;		/* in ErrorContext, freed with edata */
}

/*
 * emit_log_hook: no message, detail, context or statement that reaches the
 * server log (or the client) carries a token.  The statement text logged
 * after an error ("STATEMENT:", csvlog and jsonlog fields) is
 * debug_query_string, so that is pointed at a redacted copy for the rest
 * of the statement; log_statement and log_min_duration_statement put the
 * statement in the message, and bind parameters in the detail.
 */
static void
claims_emit_log_hook(ErrorData * edata)
{
	redact_field(&edata->message);
	redact_field(&edata->detail);
	redact_field(&edata->detail_log);
	redact_field(&edata->hint);
	redact_field(&edata->context);
	redact_field(&edata->internalquery);
	if (debug_query_string != NULL && debug_query_string != redacted_query)
	{
		char	   *redacted = claims_redact_text(debug_query_string);

		if (redacted != NULL)
		{
			char	   *old = redacted_query;

			redacted_query = MemoryContextStrdup(TopMemoryContext, redacted);
			debug_query_string = redacted_query;
			if (old != NULL)
				pfree(old);
		}
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* Register the callbacks; called once from _PG_init. */
void
claims_init(void)
{
	ClaimsContext = AllocSetContextCreate(TopMemoryContext, "vecphi claims",
										  ALLOCSET_SMALL_SIZES);
	jwt_settings_init();
	DefineCustomStringVariable("vecphi.claims_token",
							   "Verified claims token of the transaction, passed to parallel workers.",
							   "Set only by vecphi.set_claims(); internal.",
							   &claims_token_setting,
							   "",
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL |
							   GUC_SUPERUSER_ONLY | GUC_DISALLOW_IN_FILE,
							   claims_token_check, NULL, NULL);
	/* Citus, preloaded before vecphi, has defined its settings by now. */
	claims_follow_token =
		(GetConfigOption("citus.propagate_set_commands", true, false) != NULL &&
		 (GetConfigOptionFlags("citus.propagate_set_commands", true) & GUC_CUSTOM_PLACEHOLDER) == 0);
	RegisterXactCallback(claims_xact_callback, NULL);
	RegisterSubXactCallback(claims_subxact_callback, NULL);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = claims_emit_log_hook;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = claims_ExecutorStart;
	utility_slot = utility_register(claims_ProcessUtility);
}

/* Register the check that may refuse a change of claims (claims.h). */
void
claims_set_change_check(ClaimsChangeCheck check)
{
	claims_change_check = check;
}

PG_FUNCTION_INFO_V1(vecphi_set_claims);
Datum
vecphi_set_claims(PG_FUNCTION_ARGS)
{
	VecphiClaims *verified;
	char	   *token;

	if (claims_change_check != NULL)
		claims_change_check();
	/* A failed attempt leaves no claims at all, not the previous ones. */
	claims_clear();
	if (!claims_follow_token)
		claims_token_set("");
	if (PG_ARGISNULL(0))
		token_reject("The token is NULL.");
	token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	claims_remember_offered(token);
	claims_redact_activity();
	if (holdable_cursor_declared)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot set vecphi claims in a transaction that declared a WITH HOLD cursor"),
				 errdetail("The cursor's rows would be computed under these claims and outlive them.")));
	verified = jwt_verify(token);
	if (!IsTransactionBlock())
	{
		/* On Citus the workers would never see them: refused. */
		if (claims_follow_token)
			ereport(ERROR,
					(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
					 errmsg("vecphi.set_claims() must be called inside a transaction block on a Citus cluster"),
					 errdetail("Claims reach the worker nodes only with the transaction that carries them."),
					 errhint("Call it after BEGIN.")));
		ereport(WARNING,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("vecphi.set_claims() outside a transaction block lasts only for this statement"),
				 errhint("Claims end with the transaction; call it after BEGIN.")));
	}

	if (claims_follow_token)
		claims_token_publish(token);
	else
		claims_token_set(token);
	claims_clear();
	claims_install(verified);

	/*
	 * Break-glass access is flagged in the server log until the audit log
	 * records it with every access.
	 */
	if (verified->break_glass != NULL)
		ereport(LOG,
				(errmsg("vecphi: break-glass claims for tenant \"%s\", role \"%s\", subject \"%s\": %s",
						verified->tenant, verified->role, verified->subject,
						verified->break_glass)));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(vecphi_clear_claims);
Datum
vecphi_clear_claims(PG_FUNCTION_ARGS)
{
	if (claims_change_check != NULL)
		claims_change_check();
	claims_clear();
	if (claims_follow_token)
		claims_token_publish("");
	else
		claims_token_set("");
	PG_RETURN_VOID();
}

/* Return one claim as text, or NULL. */
#define CLAIM_ACCESSOR(fname, field) \
PG_FUNCTION_INFO_V1(fname); \
Datum \
fname(PG_FUNCTION_ARGS) \
{ \
	const VecphiClaims *claims = claims_current(); \
	if (claims == NULL || claims->field == NULL) \
		PG_RETURN_NULL(); \
	PG_RETURN_TEXT_P(cstring_to_text(claims->field)); \
}

CLAIM_ACCESSOR(vecphi_claim_tenant, tenant)
CLAIM_ACCESSOR(vecphi_claim_role, role)
CLAIM_ACCESSOR(vecphi_claim_subject, subject)
CLAIM_ACCESSOR(vecphi_claim_purpose, purpose)
CLAIM_ACCESSOR(vecphi_claim_break_glass, break_glass)
