/*-------------------------------------------------------------------------
 *
 * jwt.c
 *	  Verifying a claims token: its signature, its JSON, and its claims
 *	  against the token policy settings.  claims.c holds the verified
 *	  claims for the transaction.
 *
 * Tokens: HS256, keyed by the contents of vecphi.jwt_secret_file
 * (surrounding white space trimmed, at least 32 bytes), or ES256 / RS256,
 * verified with the PEM public key in vecphi.jwt_public_key_file.
 * "tenant", "role" and "sub" are required strings; "purpose" is one of
 * treatment, payment, operations; "break_glass" is a reason; "exp" and
 * "nbf" are enforced with a small allowance for clock skew.
 *
 * Every rejected token is logged (LOG, "vecphi: rejected claims token")
 * with the reason and the database user, never the token, for the audit
 * trail.
 *
 * The fuzz targets test/fuzz/fuzz_jwt.c and fuzz_claims.c include this
 * file to reach its static parsers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include "common/base64.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "claimsint.h"
#include "crypto.h"
#include "keyfile.h"
#include "report.h"
#include "vecphi.h"

/* Longer tokens are refused before any parsing. */
#define CLAIMS_TOKEN_MAX_LEN	8192
/* Longest role, subject or break-glass reason kept. */
#define CLAIMS_VALUE_MAX_LEN	256
/* Shortest accepted HMAC secret (RFC 7518 asks for the hash size). */
#define JWT_SECRET_MIN_LEN		32
#define JWT_SECRET_MAX_LEN		4096

/* Token policy settings (superuser-only; see docs/security.md). */
static bool claims_require_exp = true;
static int	claims_max_lifetime = 86400;
static char *claims_audience = NULL;
static char *claims_issuer = NULL;

/* Settings: where the token-verification keys are. */
static char *vecphi_jwt_secret_file = NULL;
static char *vecphi_jwt_public_key_file = NULL;

/* The token settings; called once from claims_init(). */
void
jwt_settings_init(void)
{
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
void
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
int64
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
VecphiClaims *
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
