/*
 * fuzz_envelope.c
 *	  libFuzzer target: envelope parsing in every form a value enters the
 *	  server: the "vecphi:<base64>" text form, binary input (a receive
 *	  buffer) and the header alone.  The first input byte picks the kind.
 *	  Whatever is accepted must be a consistent envelope (its size matches
 *	  its header) and must round-trip through its text form.
 */
#include "../../src/types/envelope.c"

#include "fuzz_stubs.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

static uint8 fuzz_kind;

/* Check an accepted envelope. */
static void
check_accepted(const struct varlena *env, uint8 kind)
{
	EnvelopeHeader hdr;
	Size		len = VARSIZE_ANY_EXHDR(env);
	char	   *str;
	struct varlena *again;

	envelope_read_header(env, kind, &hdr);
	if (len != ENVELOPE_OVERHEAD_OF(hdr.header_len) + plaintext_length(kind, hdr.count))
		abort();
	str = envelope_to_text(env);
	again = envelope_from_text(str, kind);
	if (VARSIZE_ANY_EXHDR(again) != len ||
		memcmp(VARDATA_ANY(again), VARDATA_ANY(env), len) != 0)
		abort();
}

/* Text form: "vecphi:" followed by the input. */
static void
parse_text(const uint8 *data, size_t size)
{
	char	   *str = palloc(ENVELOPE_TEXT_PREFIX_LEN + size + 1);

	memcpy(str, ENVELOPE_TEXT_PREFIX, ENVELOPE_TEXT_PREFIX_LEN);
	memcpy(str + ENVELOPE_TEXT_PREFIX_LEN, data, size);
	str[ENVELOPE_TEXT_PREFIX_LEN + size] = '\0';
	if (envelope_text_is_envelope(str))
		check_accepted(envelope_from_text(str, fuzz_kind), fuzz_kind);
}

/* Binary input: the input as a receive buffer. */
static void
parse_binary(const uint8 *data, size_t size)
{
	StringInfoData buf;

	buf.data = palloc(size + 1);
	memcpy(buf.data, data, size);
	buf.data[size] = '\0';
	buf.len = (int) size;
	buf.maxlen = (int) size + 1;
	buf.cursor = 0;
	check_accepted(envelope_recv(&buf, fuzz_kind), fuzz_kind);
}

/* The header decoder alone, on a slice of any length. */
static void
parse_header(const uint8 *data, size_t size)
{
	EnvelopeHeader hdr;
	uint8	   *copy = palloc(size + 1);

	memcpy(copy, data, size);
	envelope_parse_header(copy, size, fuzz_kind, &hdr);
	if (hdr.header_len > size)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	if (size < 1)
		return 0;
	fuzz_kind = (data[0] & 1) ? ENVELOPE_KIND_TEXT : ENVELOPE_KIND_VECTOR;
	fuzz_run(parse_text, data + 1, size - 1);
	fuzz_run(parse_binary, data + 1, size - 1);
	fuzz_run(parse_header, data + 1, size - 1);
	return 0;
}
