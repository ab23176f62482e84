/*
 * fuzz_claims.c
 *	  libFuzzer target: what the server makes of a verified token's
 *	  payload.  The input's first byte picks the token policy settings
 *	  (vecphi.jwt_require_exp, jwt_max_lifetime, jwt_audience, jwt_issuer);
 *	  the rest is the payload's JSON text.  It runs token_json_parse (the
 *	  JSON parser with the duplicate-member check, collecting the top-level
 *	  members) and claims_from_payload (exp, nbf, iat and lifetime, iss and
 *	  aud, tenant, role, sub, purpose, break_glass), exactly as jwt_verify
 *	  runs them once the signature has verified, at a fixed "now".
 *
 *	  A refusal (ereport ERROR) is expected.  Claims that come back must
 *	  satisfy what the rest of vecphi relies on; anything else aborts.
 */
#include "../../src/claims/jwt.c"

#include "fuzz_stubs.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

/* The fuzzer's "now": 2027-01-15, Unix seconds. */
#define FUZZ_NOW	INT64CONST(1800000000)

/* A refusal queues an audit record in the server; nothing to do here. */
void
report_denial_at(const char *message, const char *detail, const char *file)
{
}

/* A claim string as the server may use it: 1..256 bytes, no NUL. */
static void
check_claim_string(const char *s, bool required)
{
	size_t		len;

	if (s == NULL)
	{
		if (required)
			abort();
		return;
	}
	len = strlen(s);
	if (len == 0 || len > CLAIMS_VALUE_MAX_LEN)
		abort();
}

static void
extract_claims(const uint8 *data, size_t size)
{
	static const int lifetimes[] = {0, 60, 86400, 0x7fffffff};
	uint8		policy;
	char	   *raw;
	TokenObject *payload;
	VecphiClaims *claims;

	if (size < 1)
		return;
	policy = data[0];
	claims_require_exp = (policy & 1) != 0;
	claims_max_lifetime = lifetimes[(policy >> 1) & 3];
	claims_audience = (policy & 8) ? "vecphi-db" : NULL;
	claims_issuer = (policy & 16) ? "https://idp.example" : NULL;

	raw = fuzz_cstring(data + 1, size - 1);
	payload = token_json_parse(raw, (int) (size - 1), "payload");
	claims = claims_from_payload(payload, FUZZ_NOW);

	check_claim_string(claims->tenant, true);
	check_claim_string(claims->role, true);
	check_claim_string(claims->subject, true);
	check_claim_string(claims->purpose, false);
	check_claim_string(claims->break_glass, false);
	if (!vecphi_tenant_name_is_valid(claims->tenant))
		abort();
	if (claims->purpose != NULL &&
		strcmp(claims->purpose, "treatment") != 0 &&
		strcmp(claims->purpose, "payment") != 0 &&
		strcmp(claims->purpose, "operations") != 0)
		abort();
	if (claims->expires < 0 || claims->expires > INT64CONST(1000000000000))
		abort();
	/* An accepted expiry has not passed, and lies within the lifetime. */
	if (claims->expires != 0 &&
		claims->expires + CLAIMS_CLOCK_SKEW_SECS < FUZZ_NOW)
		abort();
	if (claims_require_exp && claims->expires == 0)
		abort();
	if (claims->expires != 0 && claims_max_lifetime > 0 &&
		claims->expires - FUZZ_NOW > (int64) claims_max_lifetime + CLAIMS_CLOCK_SKEW_SECS)
		abort();
	/* With an audience configured, a token naming none is refused. */
	if (claims_audience != NULL && token_member(payload, "aud") == NULL)
		abort();
	if (claims_issuer != NULL)
	{
		const TokenMember *iss = token_member(payload, "iss");

		if (iss == NULL || iss->type != TOKEN_VALUE_STRING ||
			strcmp(iss->text, claims_issuer) != 0)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	fuzz_run(extract_claims, data, size);
	return 0;
}
