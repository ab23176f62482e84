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
 * Tokens: HS256, keyed by the contents of vecphi.jwt_secret_file
 * (surrounding white space trimmed, at least 32 bytes), or ES256 / RS256,
 * verified with the PEM public key in vecphi.jwt_public_key_file.  "tenant", "role" and "sub" are required strings; "purpose" is
 * one of treatment, payment, operations; "break_glass" is a reason;
 * "exp" and "nbf" are enforced with a small allowance for clock skew.
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
 * Every rejected token is logged (LOG, "vecphi: rejected claims token")
 * with the reason and the database user, never the token, for the audit
 * trail.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/parallel.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "common/base64.h"
#include "common/jsonapi.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "storage/fd.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "audit.h"
#include "claims.h"
#include "crypto.h"
#include "keys.h"
#include "vecphi.h"

/* Allowance for clocks of token issuer and server that disagree. */
#define CLAIMS_CLOCK_SKEW_SECS	30
/* Longer tokens are refused before any parsing. */
#define CLAIMS_TOKEN_MAX_LEN	8192
/* Longest role, subject or break-glass reason kept. */
#define CLAIMS_VALUE_MAX_LEN	256
/* Shortest accepted HMAC secret (RFC 7518 asks for the hash size). */
#define JWT_SECRET_MIN_LEN		32
#define JWT_SECRET_MAX_LEN		4096

static MemoryContext ClaimsContext = NULL;
static VecphiClaims *current_claims = NULL;
static SubTransactionId claims_subxact = InvalidSubTransactionId;

/* vecphi.claims_token: the verified token, for parallel workers. */
static char *claims_token_setting = NULL;
static bool claims_token_setting_allowed = false;

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* A WITH HOLD cursor was declared in this transaction. */
static bool holdable_cursor_declared = false;

/* Refuses a change of claims while it would open an audit hole. */
static ClaimsChangeCheck claims_change_check = NULL;

static VecphiClaims *jwt_verify(const char *token);

/* Forget the claims. */
static void
claims_clear(void)
{
	current_claims = NULL;
	claims_subxact = InvalidSubTransactionId;
	if (ClaimsContext != NULL)
		MemoryContextReset(ClaimsContext);
}

/* Log a refused token for the audit trail: the reason, never the token. */
static void
token_log_rejection(const char *reason)
{
	ereport(LOG,
			(errmsg("vecphi: rejected claims token for database user \"%s\": %s",
					GetUserNameFromId(GetUserId(), true) ? GetUserNameFromId(GetUserId(), true) : "?",
					reason)));
}

/* Refuse a token; never returns. */
static void
token_reject(const char *detail)
{
	token_log_rejection(detail);
	audit_denial("invalid claims token", detail);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid claims token"),
			 errdetail("%s", detail)));
}

/* Refuse an expired or not yet valid token; never returns. */
static void
token_reject_time(const char *message)
{
	token_log_rejection(message);
	audit_denial(message, NULL);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("%s", message)));
}

/* Decode base64url without padding; false on any other character. */
static bool
base64url_decode(const char *src, int len, char **out, int *outlen)
{
	char	   *std;
	int			padded = len + (4 - len % 4) % 4;
	int			i;

	if (len == 0 || len % 4 == 1)
		return false;
	std = palloc(padded + 1);
	for (i = 0; i < len; i++)
	{
		char		c = src[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
				   (c >= '0' && c <= '9')))
			return false;
		std[i] = c;
	}
	for (; i < padded; i++)
		std[i] = '=';
	std[padded] = '\0';
	*out = palloc(pg_b64_dec_len(padded) + 1);
	*outlen = pg_b64_decode(std, padded, *out, pg_b64_dec_len(padded) + 1);
	if (*outlen < 0)
		return false;
	(*out)[*outlen] = '\0';
	return true;
}

/* Parse one JSON object segment of a token into jsonb. */
static Jsonb *
token_json_object(const char *seg, int seglen, const char *what)
{
	char	   *raw;
	int			rawlen;
	JsonLexContext *lex;
	Jsonb	   *jb;

	if (!base64url_decode(seg, seglen, &raw, &rawlen))
		token_reject(psprintf("The token %s is not valid base64url.", what));
	if (memchr(raw, '\0', rawlen) != NULL ||
		!pg_verifymbstr(raw, rawlen, true))
		token_reject(psprintf("The token %s is not valid text.", what));
	lex = makeJsonLexContextCstringLen(raw, rawlen, GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		token_reject(psprintf("The token %s is not valid JSON.", what));
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(raw)));
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		token_reject(psprintf("The token %s is not a JSON object.", what));
	return jb;
}

/*
 * String member of a JSON object, or NULL when absent.  Present but not a
 * non-empty string of sane length is an error.
 */
static char *
json_string_member(Jsonb *jb, const char *key)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(&jb->root, key, strlen(key), &v) == NULL)
		return NULL;
	if (v.type != jbvString || v.val.string.len == 0 ||
		v.val.string.len > CLAIMS_VALUE_MAX_LEN)
		token_reject(psprintf("Claim \"%s\" must be a non-empty string of at most %d bytes.",
							  key, CLAIMS_VALUE_MAX_LEN));
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/* NumericDate member (seconds since 1970), or false when absent. */
static bool
json_time_member(Jsonb *jb, const char *key, int64 *value)
{
	JsonbValue	v;
	float8		secs;

	if (getKeyJsonValueFromContainer(&jb->root, key, strlen(key), &v) == NULL)
		return false;
	if (v.type != jbvNumeric)
		token_reject(psprintf("Claim \"%s\" must be a number of seconds since 1970.", key));
	secs = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  NumericGetDatum(v.val.numeric)));
	if (isnan(secs) || secs < 0 || secs > 1.0e12)
		token_reject(psprintf("Claim \"%s\" is out of range.", key));
	*value = (int64) secs;
	return true;
}

/* Current time as Unix seconds. */
static int64
unix_now(TimestampTz ts)
{
	return ts / USECS_PER_SEC +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

/*
 * Read a key file: the HS256 secret (secret: readable by the server's user
 * only, surrounding white space trimmed, at least 32 bytes) or a PEM public
 * key (writable by the server's user only, since whoever can replace it can
 * sign tokens).  palloc'd; the caller wipes a secret.
 */
static char *
read_key_file(const char *path, const char *what, bool secret, int *len)
{
	int			fd;
	struct stat st;
	char	   *buf;
	ssize_t		nread;
	int			start = 0;
	int			end;
	mode_t		forbidden = secret ? (S_IRWXG | S_IRWXO) : (S_IWGRP | S_IWOTH);

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open %s file \"%s\": %m", what, path)));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
		(st.st_mode & forbidden) != 0)
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s file \"%s\" has unsafe permissions", what, path),
				 errdetail(secret ?
						   "It must be a regular file readable only by the server's user (mode 0600)." :
						   "It must be a regular file that only the server's user can write (mode 0644 or stricter).")));
	}
	buf = palloc(JWT_SECRET_MAX_LEN + 1);
	nread = read(fd, buf, JWT_SECRET_MAX_LEN + 1);
	CloseTransientFile(fd);
	if (nread < 0 || nread > JWT_SECRET_MAX_LEN)
	{
		crypto_wipe(buf, JWT_SECRET_MAX_LEN + 1);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not read %s file \"%s\"", what, path),
				 errdetail("The file must hold at most %d bytes.", JWT_SECRET_MAX_LEN)));
	}
	end = (int) nread;
	while (start < end && isspace((unsigned char) buf[start]))
		start++;
	while (end > start && isspace((unsigned char) buf[end - 1]))
		end--;
	if (secret && end - start < JWT_SECRET_MIN_LEN)
	{
		crypto_wipe(buf, JWT_SECRET_MAX_LEN + 1);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("token secret in \"%s\" is too short", path),
				 errdetail("HS256 secrets must be at least %d bytes.", JWT_SECRET_MIN_LEN)));
	}
	memmove(buf, buf + start, end - start);
	buf[end - start] = '\0';
	*len = end - start;
	return buf;
}

/* Verify a compact-serialised JWT and return its claims. */
static VecphiClaims *
jwt_verify(const char *token)
{
	size_t		toklen = strlen(token);
	const char *dot1;
	const char *dot2;
	Jsonb	   *header;
	Jsonb	   *payload;
	char	   *alg;
	char	   *typ;
	char	   *sig;
	int			siglen;
	char	   *secret;
	int			secretlen;
	uint8		mac[VECPHI_HMAC_LEN];
	bool		valid;
	VecphiClaims *claims;
	int64		now = unix_now(GetCurrentTimestamp());
	int64		nbf;
	JsonbValue	v;

	if (toklen == 0 || toklen > CLAIMS_TOKEN_MAX_LEN)
		token_reject("The token is empty or longer than 8192 bytes.");
	dot1 = strchr(token, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
		token_reject("A token has three dot-separated parts.");

	/* The header decides how to verify: only HS256 is accepted. */
	header = token_json_object(token, dot1 - token, "header");
	alg = json_string_member(header, "alg");
	if (alg == NULL ||
		(strcmp(alg, "HS256") != 0 && strcmp(alg, "ES256") != 0 &&
		 strcmp(alg, "RS256") != 0))
		token_reject("Only tokens signed with HS256, ES256 or RS256 are accepted.");
	typ = json_string_member(header, "typ");
	if (typ != NULL && pg_strcasecmp(typ, "JWT") != 0)
		token_reject("The token type is not JWT.");
	if (getKeyJsonValueFromContainer(&header->root, "crit", 4, &v) != NULL)
		token_reject("The token requires extensions this server does not implement.");
	if (!base64url_decode(dot2 + 1, strlen(dot2 + 1), &sig, &siglen))
		token_reject("The token signature is malformed.");

	/*
	 * The algorithm picks the key, and each key serves one algorithm: an
	 * HS256 token is never checked with the public key as an HMAC secret.
	 */
	if (strcmp(alg, "HS256") == 0)
	{
		if (siglen != VECPHI_HMAC_LEN)
			token_reject("The token signature is malformed.");
		if (vecphi_jwt_secret_file == NULL || vecphi_jwt_secret_file[0] == '\0')
			token_reject("HS256 tokens are not accepted: vecphi.jwt_secret_file is not set.");
		secret = read_key_file(vecphi_jwt_secret_file, "token secret", true, &secretlen);
		crypto_hmac_sha256((uint8 *) secret, secretlen, (const uint8 *) token,
						   dot2 - token, mac);
		crypto_wipe(secret, secretlen);
		valid = crypto_equal(mac, sig, VECPHI_HMAC_LEN);
		crypto_wipe(mac, sizeof(mac));
	}
	else
	{
		char	   *pem;
		int			pemlen;
		CryptoSignatureResult result;

		if (vecphi_jwt_public_key_file == NULL || vecphi_jwt_public_key_file[0] == '\0')
			token_reject(psprintf("%s tokens are not accepted: vecphi.jwt_public_key_file is not set.", alg));
		pem = read_key_file(vecphi_jwt_public_key_file, "token public key", false, &pemlen);
		result = crypto_verify_signature(alg, pem, pemlen, (const uint8 *) token,
										 dot2 - token, (const uint8 *) sig, siglen);
		if (result == CRYPTO_SIG_WRONG_KEY)
			token_reject(psprintf("The configured public key is not a %s key.",
								  strcmp(alg, "ES256") == 0 ? "P-256 ECDSA" : "2048-bit or larger RSA"));
		valid = result == CRYPTO_SIG_OK;
	}
	if (!valid)
		token_reject("The token signature does not verify.");

	payload = token_json_object(dot1 + 1, dot2 - dot1 - 1, "payload");
	claims = palloc0(sizeof(VecphiClaims));
	if (json_time_member(payload, "exp", &claims->expires) &&
		now > claims->expires + CLAIMS_CLOCK_SKEW_SECS)
		token_reject_time("claims token has expired");
	if (json_time_member(payload, "nbf", &nbf) &&
		now + CLAIMS_CLOCK_SKEW_SECS < nbf)
		token_reject_time("claims token is not valid yet");

	claims->tenant = json_string_member(payload, "tenant");
	claims->role = json_string_member(payload, "role");
	claims->subject = json_string_member(payload, "sub");
	if (claims->tenant == NULL || claims->role == NULL || claims->subject == NULL)
		token_reject("Claims \"tenant\", \"role\" and \"sub\" are required.");
	if (!vecphi_tenant_name_is_valid(claims->tenant))
		token_reject("Claim \"tenant\" is not a valid tenant name.");
	claims->purpose = json_string_member(payload, "purpose");
	if (claims->purpose != NULL &&
		strcmp(claims->purpose, "treatment") != 0 &&
		strcmp(claims->purpose, "payment") != 0 &&
		strcmp(claims->purpose, "operations") != 0)
		token_reject("Claim \"purpose\" must be treatment, payment or operations.");
	claims->break_glass = json_string_member(payload, "break_glass");
	claims->token = pstrdup(token);
	return claims;
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
 * The claims of this transaction, or NULL.  Claims whose token expired
 * since they were set are refused, judged at the statement's start.
 */
const VecphiClaims *
claims_current(void)
{
	/* A parallel worker verifies the leader's token once. */
	if (current_claims == NULL && IsParallelWorker() &&
		claims_token_setting != NULL && claims_token_setting[0] != '\0')
		claims_install(jwt_verify(claims_token_setting));

	if (current_claims != NULL && current_claims->expires != 0 &&
		unix_now(GetCurrentStatementStartTimestamp()) >
		current_claims->expires + CLAIMS_CLOCK_SKEW_SECS)
	{
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
	return current_claims;
}

/* Tenant id of the claimant; 42501 without claims. */
uint32
claims_require_tenant_id(void)
{
	const VecphiClaims *claims = claims_current();

	if (claims == NULL)
	{
		audit_denial("no verified claims in this transaction", NULL);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("no verified claims in this transaction"),
				 errhint("Call vecphi.set_claims() with a signed token inside the transaction.")));
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
	if (!IsParallelWorker() && !IsInParallelMode() && IsTransactionState())
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
 * A WITH HOLD cursor is run to completion at commit and read afterwards,
 * when the claims that decrypted its rows are gone: the next transaction
 * on the connection (another user's, behind a pooler) would read them.
 * So no such cursor while claims are set, and no claims in a transaction
 * that declared one.
 */
static void
claims_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment * queryEnv,
					  DestReceiver *dest, QueryCompletion * qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

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
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * Take the token out of the statement text pg_stat_activity shows for this
 * backend.  If the text was cut short (track_activity_query_size), what is
 * left of the token goes too.
 */
static void
claims_redact_activity(const char *token)
{
	const char *query = debug_query_string;
	StringInfoData redacted;
	const char *p;
	size_t		toklen = strlen(token);
	size_t		prefix = Min(toklen, 32);
	bool		changed = false;

	if (query == NULL || toklen == 0)
		return;
	initStringInfo(&redacted);
	p = query;
	while (*p)
	{
		if (strncmp(p, token, prefix) == 0)
		{
			appendStringInfoString(&redacted, "<token>");
			/* Skip the token, or all of what is left of it. */
			p += strncmp(p, token, toklen) == 0 ? toklen : strlen(p);
			changed = true;
		}
		else
			appendStringInfoChar(&redacted, *p++);
	}
	if (changed)
		pgstat_report_activity(STATE_RUNNING, redacted.data);
	pfree(redacted.data);
}

/* Register the callbacks; called once from _PG_init. */
void
claims_init(void)
{
	ClaimsContext = AllocSetContextCreate(TopMemoryContext, "vecphi claims",
										  ALLOCSET_SMALL_SIZES);
	DefineCustomStringVariable("vecphi.claims_token",
							   "Verified claims token of the transaction, passed to parallel workers.",
							   "Set only by vecphi.set_claims(); internal.",
							   &claims_token_setting,
							   "",
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL |
							   GUC_SUPERUSER_ONLY | GUC_DISALLOW_IN_FILE,
							   claims_token_check, NULL, NULL);
	RegisterXactCallback(claims_xact_callback, NULL);
	RegisterSubXactCallback(claims_subxact_callback, NULL);
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = claims_ExecutorStart;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = claims_ProcessUtility;
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
	claims_token_set("");
	if (PG_ARGISNULL(0))
		token_reject("The token is NULL.");
	token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	claims_redact_activity(token);
	if (holdable_cursor_declared)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot set vecphi claims in a transaction that declared a WITH HOLD cursor"),
				 errdetail("The cursor's rows would be computed under these claims and outlive them.")));
	verified = jwt_verify(token);
	if (!IsTransactionBlock())
		ereport(WARNING,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("vecphi.set_claims() outside a transaction block lasts only for this statement"),
				 errhint("Claims end with the transaction; call it after BEGIN.")));

	claims_install(verified);
	claims_token_set(token);

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
