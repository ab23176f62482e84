/*
 * fuzz_keyfile.c
 *	  libFuzzer target: key file contents.  A KEK file or kek_command's
 *	  output (64 hex digits, white space around them) goes through
 *	  kek_parse_hex; the token public key file through OpenSSL's PEM reader
 *	  in crypto_verify_signature, with a fuzzed signature.
 */
#include "../../src/keys/keyprovider.c"

#include "crypto.h"
#include "fuzz_stubs.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

/* The input as a KEK file. */
static void
parse_kek(const uint8 *data, size_t size)
{
	uint8		kek[VECPHI_KEY_LEN];
	char	   *buf = palloc(size + 1);

	memcpy(buf, data, size);
	(void) kek_parse_hex(buf, size, kek);
}

/* First byte picks the algorithm; then PEM, a zero byte, the signature. */
static void
parse_public_key(const uint8 *data, size_t size)
{
	const char *alg = (size > 0 && (data[0] & 1)) ? "ES256" : "RS256";
	const uint8 *rest = size > 0 ? data + 1 : data;
	size_t		restlen = size > 0 ? size - 1 : 0;
	const uint8 *nul = memchr(rest, 0, restlen);
	size_t		pemlen = nul ? (size_t) (nul - rest) : restlen;
	char	   *pem = fuzz_cstring(rest, pemlen);
	const uint8 *sig = nul ? nul + 1 : rest + restlen;
	size_t		siglen = nul ? restlen - pemlen - 1 : 0;

	(void) crypto_verify_signature(alg, pem, pemlen, (const uint8 *) "a.b", 3,
								   sig, siglen);
}

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	fuzz_run(parse_kek, data, size);
	fuzz_run(parse_public_key, data, size);
	return 0;
}
