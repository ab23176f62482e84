/*-------------------------------------------------------------------------
 *
 * fuzz_stubs.c
 *	  Just enough of the PostgreSQL backend for libFuzzer to drive vecphi's
 *	  input parsers outside a server: palloc in an arena that is freed
 *	  after every input, and ereport(ERROR) as a longjmp back to the
 *	  fuzzer loop (an expected rejection, not a finding).  Messages are
 *	  still formatted, so a bad format argument is caught by the
 *	  sanitizers.  Backend functions the parsers must never reach are left
 *	  unresolved by the link (see run_fuzz.sh): reaching one crashes the
 *	  target, which is a finding.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "fuzz_stubs.h"

static sigjmp_buf fuzz_error_jmp;
sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;
MemoryContext CurrentMemoryContext = NULL;
volatile sig_atomic_t InterruptPending = false;

static void **arena = NULL;
static size_t arena_len = 0;
static size_t arena_cap = 0;
static int	cur_elevel;
static char msgbuf[4096];

static void *
arena_add(void *p)
{
	if (p == NULL)
		abort();
	if (arena_len == arena_cap)
	{
		arena_cap = arena_cap ? arena_cap * 2 : 1024;
		arena = realloc(arena, arena_cap * sizeof(void *));
		if (arena == NULL)
			abort();
	}
	arena[arena_len++] = p;
	return p;
}

/* Free everything palloc'd since the last reset. */
void
fuzz_reset(void)
{
	size_t		i;

	for (i = 0; i < arena_len; i++)
		free(arena[i]);
	arena_len = 0;
	PG_exception_stack = NULL;
	error_context_stack = NULL;
}

/*
 * Run one step on one input: an ERROR it raises ends it quietly (an
 * expected rejection); the arena is reset afterwards.
 */
void
fuzz_run(FuzzStep step, const uint8 *data, size_t size)
{
	if (sigsetjmp(fuzz_error_jmp, 0) == 0)
		step(data, size);
	fuzz_reset();
}

static void
check_size(Size size)
{
	/* The backend refuses these; a parser asking for one is a finding. */
	if (!AllocSizeIsValid(size))
	{
		fprintf(stderr, "invalid memory alloc request size %zu\n", size);
		abort();
	}
}

void *
palloc(Size size)
{
	check_size(size);
	return arena_add(malloc(size ? size : 1));
}

void *
palloc0(Size size)
{
	check_size(size);
	return arena_add(calloc(1, size ? size : 1));
}

void *
palloc_extended(Size size, int flags)
{
	return (flags & MCXT_ALLOC_ZERO) ? palloc0(size) : palloc(size);
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return palloc(size);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return palloc0(size);
}

void *
MemoryContextAllocHuge(MemoryContext context, Size size)
{
	return arena_add(malloc(size ? size : 1));
}

void *
repalloc(void *pointer, Size size)
{
	size_t		i;
	void	   *p;

	check_size(size);
	p = realloc(pointer, size ? size : 1);
	if (p == NULL)
		abort();
	for (i = 0; i < arena_len; i++)
		if (arena[i] == pointer)
		{
			arena[i] = p;
			return p;
		}
	abort();					/* not ours: a finding */
}

void *
repalloc_huge(void *pointer, Size size)
{
	size_t		i;
	void	   *p = realloc(pointer, size ? size : 1);

	if (p == NULL)
		abort();
	for (i = 0; i < arena_len; i++)
		if (arena[i] == pointer)
		{
			arena[i] = p;
			return p;
		}
	abort();
}

void
pfree(void *pointer)
{
	size_t		i;

	for (i = 0; i < arena_len; i++)
		if (arena[i] == pointer)
		{
			free(pointer);
			arena[i] = arena[--arena_len];
			return;
		}
	abort();					/* double or foreign free: a finding */
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = palloc(len + 1);

	memcpy(out, in, len + 1);
	return out;
}

char *
pnstrdup(const char *in, Size size)
{
	size_t		len = strnlen(in, size);
	char	   *out = palloc(len + 1);

	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
psprintf(const char *fmt,...)
{
	va_list		ap;
	char	   *out = palloc(1024);

	va_start(ap, fmt);
	vsnprintf(out, 1024, fmt, ap);
	va_end(ap);
	return out;
}

size_t
pvsnprintf(char *buf, size_t len, const char *fmt, va_list args)
{
	int			n = vsnprintf(buf, len, fmt, args);

	return n < 0 ? len * 2 : (size_t) n + 1 <= len ? (size_t) n : (size_t) n + 1;
}

/* ereport: collect the message, and longjmp out on ERROR. */
bool
errstart(int elevel, const char *domain)
{
	cur_elevel = elevel;
	return elevel >= ERROR;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	if (cur_elevel >= ERROR)
		siglongjmp(fuzz_error_jmp, 1);
}

int
errcode(int sqlerrcode)
{
	return 0;
}

#define FORMAT_INTO_MSGBUF(fmt) \
	do { \
		va_list		ap; \
		va_start(ap, fmt); \
		vsnprintf(msgbuf, sizeof(msgbuf), fmt, ap); \
		va_end(ap); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	FORMAT_INTO_MSGBUF(fmt);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	FORMAT_INTO_MSGBUF(fmt);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	FORMAT_INTO_MSGBUF(fmt);
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	FORMAT_INTO_MSGBUF(fmt);
	return 0;
}

int
errhint(const char *fmt,...)
{
	FORMAT_INTO_MSGBUF(fmt);
	return 0;
}

void
pg_re_throw(void)
{
	siglongjmp(fuzz_error_jmp, 1);
}

void
ExceptionalCondition(const char *conditionName, const char *errorType,
					 const char *fileName, int lineNumber)
{
	fprintf(stderr, "TRAP: %s(\"%s\", File: \"%s\", Line: %d)\n",
			errorType, conditionName, fileName, lineNumber);
	abort();
}

/* The server verifies against the database encoding; the fuzzer's is UTF8. */
int
GetDatabaseEncoding(void)
{
	return PG_UTF8;
}

bool
pg_verifymbstr(const char *mbstr, int len, bool noError)
{
	if (pg_encoding_verifymbstr(PG_UTF8, mbstr, len) == len)
		return true;
	if (!noError)
		ereport(ERROR, (errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
						errmsg("invalid byte sequence")));
	return false;
}

/* The one pq function the binary input path uses. */
void
pq_copymsgbytes(StringInfo msg, char *buf, int datalen)
{
	if (datalen < 0 || datalen > (msg->len - msg->cursor))
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
						errmsg("insufficient data left in message")));
	memcpy(buf, &msg->data[msg->cursor], datalen);
	msg->cursor += datalen;
}

/* The four List operations the claims' JSON parser uses (claims/jwt.c). */
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
