/*
 * fuzz_evector_text.c
 *	  libFuzzer target: the vector literal parser ("[1.5, 2, 3]") of evector
 *	  and evector_query, and the value and typmod checks that run before
 *	  encryption.
 */
#include "../../src/types/evector.c"

#include "fuzz_stubs.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

/* Parse the input as a literal; what is accepted must be a sane vector. */
static void
parse_literal(const uint8 *data, size_t size)
{
	char	   *str = fuzz_cstring(data, size);
	int			dim;
	float4	   *x = evector_parse_literal(str, "evector", &dim);

	if (dim < 1 || dim > VECPHI_MAX_DIM)
		abort();
	evector_check_values(x, dim, "evector");
	check_typmod_dims(size % 7 == 0 ? -1 : (int32) (size % 5), (uint32) dim);
}

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	fuzz_run(parse_literal, data, size);
	return 0;
}
