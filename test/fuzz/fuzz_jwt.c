/*
 * fuzz_jwt.c
 *	  libFuzzer target: the parts of claims-token parsing that read
 *	  untrusted bytes before any key is used: the three-part split,
 *	  base64url (header, payload, signature) and the JSON object parser
 *	  with its duplicate-member check (token_json_field_start and friends,
 *	  driven by PostgreSQL's own pg_parse_json), as token_json_object runs
 *	  them.  What the claims make of a payload is fuzz_claims.c's part.
 */
#include "../../src/claims/jwt.c"

#include "fuzz_stubs.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

/* A refusal queues an audit record in the server; nothing to do here. */
void
report_denial_at(const char *message, const char *detail, const char *file)
{
}

/* A base64url JSON object segment, as token_json_object parses it. */
static void
fuzz_json_segment(const char *seg, int seglen, const char *what)
{
	char	   *raw;
	int			rawlen;

	if (!base64url_decode(seg, seglen, &raw, &rawlen))
		token_reject(psprintf("The token %s is not valid base64url.", what));
	if (rawlen < 0 || raw[rawlen] != '\0')
		abort();
	(void) token_json_parse(raw, rawlen, what);
}

/* The whole input as a token, split as jwt_verify splits it. */
static void
parse_token(const uint8 *data, size_t size)
{
	char	   *token = fuzz_cstring(data, size);
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	char	   *sig;
	int			siglen;

	if (dot1 == NULL || dot2 == NULL)
		token_reject("A token has three dot-separated parts.");
	fuzz_json_segment(token, dot1 - token, "header");
	fuzz_json_segment(dot1 + 1, dot2 - dot1 - 1, "payload");
	if (base64url_decode(dot2 + 1, strlen(dot2 + 1), &sig, &siglen) &&
		siglen < 0)
		abort();
}

/* The input as the JSON itself (base64url-encoded here first). */
static void
parse_json(const uint8 *data, size_t size)
{
	int			enclen = pg_b64_enc_len((int) size);
	char	   *b64 = palloc(enclen + 1);
	int			n = pg_b64_encode((const char *) data, (int) size, b64, enclen);
	int			i;

	if (n < 0)
		abort();
	while (n > 0 && b64[n - 1] == '=')
		n--;
	for (i = 0; i < n; i++)
		b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	fuzz_json_segment(b64, n, "payload");
}

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	fuzz_run(parse_token, data, size);
	fuzz_run(parse_json, data, size);
	return 0;
}
