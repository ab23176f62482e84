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
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "claims.h"
#include "crypto.h"
#include "hooks.h"
#include "keyfile.h"
#include "keys.h"
#include "report.h"
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

/* Token policy settings (superuser-only; see docs/security.md). */
static bool claims_require_exp = true;
static int	claims_max_lifetime = 86400;
static char *claims_audience = NULL;
static char *claims_issuer = NULL;

/*
 * The token last offered to set_claims() in this transaction, kept so that
 * the log hook can take it out of messages even when it does not look like
 * a JWT.  In TopMemoryContext; dropped at the end of the transaction.
 */
static char *offered_token = NULL;

/* Copy of debug_query_string with tokens taken out, in TopMemoryContext. */
static char *redacted_query = NULL;

/* Settings: where the token-verification keys are (claims_init()). */
static char *vecphi_jwt_secret_file = NULL;
static char *vecphi_jwt_public_key_file = NULL;

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static int	utility_slot;		/* of claims_ProcessUtility (hooks.h) */
static emit_log_hook_type prev_emit_log_hook = NULL;

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
	vecphi_deny(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, "invalid claims token", detail,
				errdetail("%s", detail));
}

/* Refuse an expired or not yet valid token; never returns. */
static void
token_reject_time(const char *message)
{
	token_log_rejection(message);
	vecphi_deny(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, message, NULL);
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

/*
 * A token's JSON object as the claims read it: its top-level members, each
 * a string (de-escaped), a number (its text), an array of strings, or
 * anything else.  Built by one pass of PostgreSQL's JSON parser (the same
 * parser jsonb uses), so no backend state is needed: test/fuzz/fuzz_claims.c
 * runs this and claims_from_payload() as they are.
 */
typedef enum TokenValueType
{
	TOKEN_VALUE_STRING,
	TOKEN_VALUE_NUMBER,
	TOKEN_VALUE_STRINGS,		/* an array of strings only (maybe empty) */
	TOKEN_VALUE_OTHER			/* null, true, false, object, other array */
} TokenValueType;

typedef struct TokenMember
{
	const char *name;
	TokenValueType type;
	const char *text;			/* string or number text */
	List	   *strings;		/* TOKEN_VALUE_STRINGS: the elements */
} TokenMember;

typedef struct TokenObject
{
	List	   *members;		/* of TokenMember */
} TokenObject;

/* Parser state: the object being built, and duplicate member names. */
typedef struct TokenJsonState
{
	List	   *objects;		/* member names of each open object, inner
								 * first */
	const char *what;
	int			depth;			/* objects and arrays open */
	bool		root_is_object;
	TokenObject *result;
	TokenMember *member;		/* top-level member whose value is parsed */
} TokenJsonState;

/* Object or array opens: below the top level, a member is not scalar. */
static void
token_json_nest(TokenJsonState *st, bool is_array)
{
	if (st->depth == 0)
		st->root_is_object = !is_array;
	else if (st->depth == 1 && st->member != NULL)
		st->member->type = is_array ? TOKEN_VALUE_STRINGS : TOKEN_VALUE_OTHER;
	else if (st->depth == 2 && st->member != NULL)
		st->member->type = TOKEN_VALUE_OTHER;
	st->depth++;
}

/* An object opens: a new set of member names. */
static void
token_json_object_start(void *state)
{
	TokenJsonState *st = state;

	token_json_nest(st, false);
	st->objects = lcons(NIL, st->objects);
}

/* An object closes: forget its member names. */
static void
token_json_object_end(void *state)
{
	TokenJsonState *st = state;

	list_free(linitial(st->objects));
	st->objects = list_delete_first(st->objects);
	st->depth--;
}

/* An array opens. */
static void
token_json_array_start(void *state)
{
	token_json_nest(state, true);
}

/* An array closes. */
static void
token_json_array_end(void *state)
{
	TokenJsonState *st = state;

	st->depth--;
}

/*
 * A member name seen twice is refused: parsers disagree on which value
 * wins, so the issuer may have signed one meaning and we would read
 * another.  Names arrive de-escaped, so "exp" and "\u0065xp" are the same.
 */
static void
token_json_field_start(void *state, char *fname, bool isnull)
{
	TokenJsonState *st = state;
	List	   *names = linitial(st->objects);
	ListCell   *lc;

	foreach(lc, names)
	{
		if (strcmp((char *) lfirst(lc), fname) == 0)
			token_reject(psprintf("The token %s names a member twice.", st->what));
	}
	linitial(st->objects) = lappend(names, fname);
	if (st->depth == 1)
	{
		st->member = palloc0(sizeof(TokenMember));
		st->member->name = fname;
		st->member->type = TOKEN_VALUE_OTHER;
		st->result->members = lappend(st->result->members, st->member);
	}
}

/* A scalar: the value of a top-level member, or an element of one. */
static void
token_json_scalar(void *state, char *token, JsonTokenType tokentype)
{
	TokenJsonState *st = state;
	TokenMember *m = st->member;

	if (m == NULL)
		return;
	if (st->depth == 1)
	{
		if (tokentype == JSON_TOKEN_STRING)
			m->type = TOKEN_VALUE_STRING;
		else if (tokentype == JSON_TOKEN_NUMBER)
			m->type = TOKEN_VALUE_NUMBER;
		else
			m->type = TOKEN_VALUE_OTHER;
		m->text = token;
	}
	else if (st->depth == 2 && m->type == TOKEN_VALUE_STRINGS)
	{
		if (tokentype == JSON_TOKEN_STRING)
			m->strings = lappend(m->strings, token);
		else
			m->type = TOKEN_VALUE_OTHER;
	}
}

/* Parse a token's JSON object text (NUL-terminated, rawlen bytes). */
static TokenObject *
token_json_parse(char *raw, int rawlen, const char *what)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	TokenJsonState state;

	if (memchr(raw, '\0', rawlen) != NULL ||
		!pg_verifymbstr(raw, rawlen, true))
		token_reject(psprintf("The token %s is not valid text.", what));
	lex = makeJsonLexContextCstringLen(raw, rawlen, GetDatabaseEncoding(), true);
	memset(&sem, 0, sizeof(sem));
	memset(&state, 0, sizeof(state));
	state.what = what;
	state.result = palloc0(sizeof(TokenObject));
	sem.semstate = &state;
	sem.object_start = token_json_object_start;
	sem.object_end = token_json_object_end;
	sem.array_start = token_json_array_start;
	sem.array_end = token_json_array_end;
	sem.object_field_start = token_json_field_start;
	sem.scalar = token_json_scalar;
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		token_reject(psprintf("The token %s is not valid JSON.", what));
	if (!state.root_is_object)
		token_reject(psprintf("The token %s is not a JSON object.", what));
	return state.result;
}

/* Parse one base64url JSON object segment of a token. */
static TokenObject *
token_json_object(const char *seg, int seglen, const char *what)
{
	char	   *raw;
	int			rawlen;

	if (!base64url_decode(seg, seglen, &raw, &rawlen))
		token_reject(psprintf("The token %s is not valid base64url.", what));
	return token_json_parse(raw, rawlen, what);
}

/* The top-level member named key, or NULL. */
static const TokenMember *
token_member(const TokenObject *obj, const char *key)
{
	ListCell   *lc;

	foreach(lc, obj->members)
	{
		const TokenMember *m = lfirst(lc);

		if (strcmp(m->name, key) == 0)
			return m;
	}
	return NULL;
}

/*
 * String member of a JSON object, or NULL when absent.  Present but not a
 * non-empty string of sane length is an error.
 */
static char *
json_string_member(const TokenObject *obj, const char *key)
{
	const TokenMember *m = token_member(obj, key);

	if (m == NULL)
		return NULL;
	if (m->type != TOKEN_VALUE_STRING || m->text[0] == '\0' ||
		strlen(m->text) > CLAIMS_VALUE_MAX_LEN)
		token_reject(psprintf("Claim \"%s\" must be a non-empty string of at most %d bytes.",
							  key, CLAIMS_VALUE_MAX_LEN));
	return pstrdup(m->text);
}

/*
 * NumericDate member (seconds since 1970), or false when absent.  The
 * number's text passed the JSON grammar, so strtod() reads all of it;
 * beyond double's range it is infinite or zero, and refused or taken as 0.
 */
static bool
json_time_member(const TokenObject *obj, const char *key, int64 *value)
{
	const TokenMember *m = token_member(obj, key);
	double		secs;

	if (m == NULL)
		return false;
	if (m->type != TOKEN_VALUE_NUMBER)
		token_reject(psprintf("Claim \"%s\" must be a number of seconds since 1970.", key));
	secs = strtod(m->text, NULL);
	if (isnan(secs) || secs < 0 || secs > 1.0e12)
		token_reject(psprintf("Claim \"%s\" is out of range.", key));
	*value = (int64) secs;
	return true;
}

/*
 * vecphi.jwt_max_lifetime bounds how long a token can be used: its expiry
 * may lie at most that far ahead of now (a token minted with a far expiry
 * is refused at once), and when it carries "iat", exp - iat may not exceed
 * it either.  A token without "exp" (allowed only with jwt_require_exp
 * off) is refused once now - iat exceeds it; without "iat" it is bounded
 * by nothing.  exp and iat are -1 when absent.
 */
static void
token_check_lifetime(int64 exp, int64 iat, int64 now)
{
	int64		max = claims_max_lifetime;

	if (max <= 0)
		return;
	if (exp >= 0 && exp - now > max + CLAIMS_CLOCK_SKEW_SECS)
		token_reject("The token expires later than vecphi.jwt_max_lifetime allows.");
	if (exp >= 0 && iat >= 0 && exp - iat > max)
		token_reject("The token's lifetime (exp - iat) is longer than vecphi.jwt_max_lifetime.");
	if (exp < 0 && iat >= 0 && now - iat > max + CLAIMS_CLOCK_SKEW_SECS)
		token_reject("The token was issued longer ago than vecphi.jwt_max_lifetime.");
}

/*
 * "iss" must equal vecphi.jwt_issuer when that is set.  "aud", a string or
 * an array of strings (RFC 7519, 4.1.3), must hold vecphi.jwt_audience
 * when that is set; a token that names an audience is refused when this
 * server has none, since it identifies with no audience (RFC 7519 again).
 */
static void
token_check_issuer_audience(const TokenObject *payload)
{
	const TokenMember *m;
	bool		have_aud = claims_audience != NULL && claims_audience[0] != '\0';
	bool		found = false;

	if (claims_issuer != NULL && claims_issuer[0] != '\0')
	{
		m = token_member(payload, "iss");
		if (m == NULL || m->type != TOKEN_VALUE_STRING ||
			strcmp(m->text, claims_issuer) != 0)
			token_reject("The token's issuer (\"iss\") is not the one vecphi.jwt_issuer names.");
	}

	m = token_member(payload, "aud");
	if (m == NULL)
	{
		if (have_aud)
			token_reject("The token names no audience (\"aud\"); vecphi.jwt_audience requires one.");
		return;
	}
	if (!have_aud)
		token_reject("The token is meant for an audience (\"aud\") and vecphi.jwt_audience is not set.");
	if (m->type == TOKEN_VALUE_STRING)
		found = strcmp(m->text, claims_audience) == 0;
	else if (m->type == TOKEN_VALUE_STRINGS)
	{
		ListCell   *lc;

		foreach(lc, m->strings)
		{
			if (strcmp((const char *) lfirst(lc), claims_audience) == 0)
				found = true;
		}
	}
	else
		token_reject("Claim \"aud\" must be a string or an array of strings.");
	if (!found)
		token_reject("The token's audience (\"aud\") does not include vecphi.jwt_audience.");
}

/* Current time as Unix seconds. */
static int64
unix_now(TimestampTz ts)
{
	return ts / USECS_PER_SEC +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

/*
 * The claims of a verified token's payload, checked against the token
 * policy settings at Unix time now; refuses the token when they do not
 * pass.  Pure: no catalog, file or clock (fuzz_claims.c runs it).
 */
static VecphiClaims *
claims_from_payload(const TokenObject *payload, int64 now)
{
	VecphiClaims *claims;
	int64		nbf;
	int64		iat = 0;
	bool		has_exp;
	bool		has_iat;

	claims = palloc0(sizeof(VecphiClaims));
	has_exp = json_time_member(payload, "exp", &claims->expires);
	has_iat = json_time_member(payload, "iat", &iat);
	if (!has_exp && claims_require_exp)
		token_reject("The token has no \"exp\" claim; vecphi.jwt_require_exp refuses tokens that never expire.");
	if (has_exp && now > claims->expires + CLAIMS_CLOCK_SKEW_SECS)
		token_reject_time("claims token has expired");
	if (json_time_member(payload, "nbf", &nbf) &&
		now + CLAIMS_CLOCK_SKEW_SECS < nbf)
		token_reject_time("claims token is not valid yet");
	if (has_iat && iat > now + CLAIMS_CLOCK_SKEW_SECS)
		token_reject("Claim \"iat\" lies in the future.");
	token_check_lifetime(has_exp ? claims->expires : -1, has_iat ? iat : -1, now);
	token_check_issuer_audience(payload);

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
	return claims;
}

/*
 * Read a key file: the HS256 secret (secret: owned by the server's user and
 * readable by it only, surrounding white space trimmed, at least 32 bytes)
 * or a PEM public key (owned by the server's user, writable by it only,
 * since whoever can replace it can sign tokens).  palloc'd; the caller
 * wipes a secret.
 */
static char *
read_key_file(const char *path, const char *what, bool secret, int *len)
{
	int			fd;
	char	   *buf;
	ssize_t		nread;
	int			start = 0;
	int			end;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open %s file \"%s\": %m", what, path)));
	/* On error the transaction's end closes fd. */
	keyfile_check_fd(fd, path,
					 secret ? VECPHI_KEYFILE_SECRET : VECPHI_KEYFILE_PUBLIC,
					 psprintf("%s file", what));
	/* Read one byte more than allowed, to tell a file that is too long. */
	buf = palloc(JWT_SECRET_MAX_LEN + 2);
	nread = keyfile_read_small(fd, path, buf, JWT_SECRET_MAX_LEN + 2);
	CloseTransientFile(fd);
	if (nread > JWT_SECRET_MAX_LEN)
	{
		crypto_wipe(buf, JWT_SECRET_MAX_LEN + 2);
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
		crypto_wipe(buf, JWT_SECRET_MAX_LEN + 2);
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
	TokenObject *header;
	TokenObject *payload;
	char	   *alg;
	char	   *typ;
	char	   *sig;
	int			siglen;
	char	   *secret;
	int			secretlen;
	uint8		mac[VECPHI_HMAC_LEN];
	bool		valid;
	VecphiClaims *claims;

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
	if (token_member(header, "crit") != NULL)
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
	claims = claims_from_payload(payload, unix_now(GetCurrentTimestamp()));
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
	utility_next(utility_slot, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
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
 * str with every claims token replaced by "<token>", or NULL when it holds
 * none.  A token is anything that looks like a JWT, or the exact token last
 * offered to set_claims() in this transaction (when at least 16 bytes long,
 * so that a junk "token" does not blank out ordinary words).
 */
char *
claims_redact_text(const char *str)
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
			appendStringInfoString(&out, "<token>");
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
	DefineCustomStringVariable("vecphi.jwt_secret_file",
							   "File holding the HS256 secret that signs claim tokens.",
							   "Surrounding white space is trimmed; at least 32 bytes.",
							   &vecphi_jwt_secret_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("vecphi.jwt_public_key_file",
							   "PEM public key that verifies ES256 or RS256 claim tokens.",
							   "Only the server's user may be able to write it.",
							   &vecphi_jwt_public_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("vecphi.claims_token",
							   "Verified claims token of the transaction, passed to parallel workers.",
							   "Set only by vecphi.set_claims(); internal.",
							   &claims_token_setting,
							   "",
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL |
							   GUC_SUPERUSER_ONLY | GUC_DISALLOW_IN_FILE,
							   claims_token_check, NULL, NULL);
	DefineCustomBoolVariable("vecphi.jwt_require_exp",
							 "Refuse claims tokens without an \"exp\" claim.",
							 "Turning it off accepts tokens that never expire; superuser-only.",
							 &claims_require_exp,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.jwt_max_lifetime",
							"Longest a claims token may be used: exp - now and exp - iat (0: no limit).",
							"A stolen token is useful at most this long.",
							&claims_max_lifetime,
							86400, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("vecphi.jwt_audience",
							   "Audience (\"aud\") claims tokens must name; empty: tokens must name none.",
							   NULL,
							   &claims_audience,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("vecphi.jwt_issuer",
							   "Issuer (\"iss\") claims tokens must name; empty: not checked.",
							   NULL,
							   &claims_issuer,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);
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
	claims_token_set("");
	if (PG_ARGISNULL(0))
		token_reject("The token is NULL.");
	token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (offered_token != NULL)
	{
		crypto_wipe(offered_token, strlen(offered_token));
		pfree(offered_token);
	}
	offered_token = MemoryContextStrdup(TopMemoryContext, token);
	claims_redact_activity();
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
