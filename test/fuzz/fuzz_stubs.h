/*
 * fuzz_stubs.h
 *	  The fuzzer side of fuzz_stubs.c: run one input under a fresh arena,
 *	  with ereport(ERROR) returning here.
 */
#ifndef VECPHI_FUZZ_STUBS_H
#define VECPHI_FUZZ_STUBS_H

#include <setjmp.h>

typedef void (*FuzzStep) (const uint8 *data, size_t size);

extern void fuzz_reset(void);
extern void fuzz_run(FuzzStep step, const uint8 *data, size_t size);

/* Copy size bytes into a NUL-terminated palloc'd string. */
static inline char *
fuzz_cstring(const uint8 *data, size_t size)
{
	char	   *s = palloc(size + 1);

	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

#endif
