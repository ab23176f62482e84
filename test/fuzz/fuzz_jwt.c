/*
 * fuzz_jwt.c
 *	  libFuzzer target: the parts of claims-token parsing that read
 *	  untrusted bytes before any key is used: the three-part split,
 *	  base64url (header, payload, signature) and the JSON object parser
 *	  with its duplicate-member check (token_json_field_start and friends,
 *	  driven by PostgreSQL's own pg_parse_json).  The conversion to jsonb
 *	  that follows in token_json_object needs the backend and is not run.
 */
#include "../../src/claims/claims.c"

#include "fuzz_stubs.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

/* A refusal queues an audit record in the server; nothing to do here. */
void
report_denial_at(const char *message, const char *detail, const char *file)
{
}

/* The four List operations the duplicate-member check uses. */
static List *
list_with(List *list, int extra)
{
	int			len = list ? list->length : 0;
	List	   *n = palloc0(offsetof(List, initial_elements) +
							(len + extra) * sizeof(ListCell));

	n->type = T_List;
	n->length = len + extra;
	n->max_length = len + extra;
	n->elements = n->initial_elements;
	return n;
}

List *
lcons(void *datum, List *list)
{
	List	   *n = list_with(list, 1);

	if (list)
		memcpy(n->elements + 1, list->elements, list->length * sizeof(ListCell));
	n->elements[0].ptr_value = datum;
	return n;
}

List *
lappend(List *list, void *datum)
{
	List	   *n = list_with(list, 1);

	if (list)
		memcpy(n->elements, list->elements, list->length * sizeof(ListCell));
	n->elements[n->length - 1].ptr_value = datum;
	return n;
}

void
list_free(List *list)
{
}

List *
list_delete_first(List *list)
{
	List	   *n;

	if (list == NIL || list->length == 1)
		return NIL;
	n = list_with(list, -1);
	memcpy(n->elements, list->elements + 1, n->length * sizeof(ListCell));
	return n;
}

/* The JSON half of token_json_object, without the jsonb conversion. */
static void
fuzz_json_segment(const char *seg, int seglen, const char *what)
{
	char	   *raw;
	int			rawlen;
	JsonLexContext *lex;
	JsonSemAction sem;
	TokenJsonState state;

	if (!base64url_decode(seg, seglen, &raw, &rawlen))
		token_reject(psprintf("The token %s is not valid base64url.", what));
	if (rawlen < 0 || raw[rawlen] != '\0')
		abort();
	if (memchr(raw, '\0', rawlen) != NULL ||
		!pg_verifymbstr(raw, rawlen, true))
		token_reject(psprintf("The token %s is not valid text.", what));
	lex = makeJsonLexContextCstringLen(raw, rawlen, GetDatabaseEncoding(), true);
	memset(&sem, 0, sizeof(sem));
	memset(&state, 0, sizeof(state));
	state.what = what;
	sem.semstate = &state;
	sem.object_start = token_json_object_start;
	sem.object_end = token_json_object_end;
	sem.object_field_start = token_json_field_start;
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		token_reject(psprintf("The token %s is not valid JSON.", what));
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
