/*-------------------------------------------------------------------------
 *
 * evector.c
 *	  The evector type: input that encrypts, output that never shows
 *	  plaintext, typmod, binary I/O, explicit decryption, and the cached
 *	  plaintext that distance functions work on.
 *
 * Input and error messages never echo a vector literal: it is plaintext.
 * Plaintext floats are little-endian inside the envelope, so ciphertext
 * moves between machines of either byte order.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "claims.h"
#include "crypto.h"
#include "envelope.h"
#include "evector.h"
#include "vecphi.h"
#include "report.h"

#define DatumGetEvectorP(x) ((struct varlena *) PG_DETOAST_DATUM(x))
#define PG_GETARG_EVECTOR_P(n) DatumGetEvectorP(PG_GETARG_DATUM(n))

/* Plaintext of one evector argument, kept while it stays the same. */
typedef struct PlaintextSlot
{
	struct varlena *envelope;	/* copy of the value last decrypted */
	Size		envelope_cap;
	uint32		tenant_id;		/* claimant it was decrypted for */
	uint32		dim;
	float4	   *x;
	Size		x_cap;
} PlaintextSlot;

typedef struct PlaintextCache
{
	PlaintextSlot slot[2];
	MemoryContextCallback wipe;
} PlaintextCache;

/* Check a dimension count against a typmod. */
static inline void
check_typmod_dims(int32 typmod, uint32 dim)
{
	if (typmod != -1 && (uint32) typmod != dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions, not %u", typmod, dim)));
}

/*
 * Check the values and size of a plaintext vector of type typname (evector
 * before encrypting it, or evector_query).
 */
void
evector_check_values(const float4 *x, int dim, const char *typname)
{
	int			i;

	if (dim < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s must have at least 1 dimension", typname)));
	if (dim > VECPHI_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s cannot have more than %d dimensions", typname, VECPHI_MAX_DIM)));
	for (i = 0; i < dim; i++)
	{
		if (isnan(x[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("NaN not allowed in %s", typname),
					 errdetail("Element %d is NaN.", i + 1)));
		if (isinf(x[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("infinite value not allowed in %s", typname),
					 errdetail("Element %d is infinite.", i + 1)));
	}
}

/* Encrypt a checked plaintext vector; x is wiped afterwards. */
static struct varlena *
seal_vector(float4 *x, int dim)
{
	struct varlena *env;

	evector_check_values(x, dim, "evector");
	envelope_floats_to_le(x, dim);
	env = envelope_seal(ENVELOPE_KIND_VECTOR, dim, x, (Size) dim * sizeof(float4));
	crypto_wipe(x, (Size) dim * sizeof(float4));
	return env;
}

static void
syntax_error(const char *typname, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type %s", typname),
			 errdetail("%s", detail)));
}

/*
 * Parse pgvector's text form "[1.5, 2, 3]" as a value of type typname
 * (evector or evector_query).  Values are checked later
 * (evector_check_values); here only syntax, range and the dimension limit.
 */
float4 *
evector_parse_literal(const char *str, const char *typname, int *dim)
{
	const char *p = str;
	int			cap = 64;
	int			n = 0;
	float4	   *x = palloc(cap * sizeof(float4));

	while (isspace((unsigned char) *p))
		p++;
	if (*p != '[')
		syntax_error(typname, strcmp(typname, "evector") == 0 ?
					 "A vector starts with \"[\", an envelope with \"vecphi:\"." :
					 "A vector starts with \"[\".");
	p++;
	while (isspace((unsigned char) *p))
		p++;
	if (*p == ']')
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s must have at least 1 dimension", typname)));
	for (;;)
	{
		char	   *end;
		float4		val;

		if (n == VECPHI_MAX_DIM)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s cannot have more than %d dimensions", typname,
							VECPHI_MAX_DIM)));
		while (isspace((unsigned char) *p))
			p++;
		errno = 0;
		val = strtof(p, &end);
		if (end == p)
			syntax_error(typname, psprintf("Element %d is not a number.", n + 1));
		if (errno == ERANGE && isinf(val))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("%s element %d is out of range for type real", typname, n + 1)));
		if (n == cap)
		{
			cap *= 2;
			x = repalloc(x, cap * sizeof(float4));
		}
		x[n++] = val;
		p = end;
		while (isspace((unsigned char) *p))
			p++;
		if (*p == ',')
		{
			p++;
			continue;
		}
		if (*p == ']')
		{
			p++;
			break;
		}
		syntax_error(typname, psprintf("Expected \",\" or \"]\" after element %d.", n));
	}
	while (isspace((unsigned char) *p))
		p++;
	if (*p != '\0')
		syntax_error(typname, "Junk after closing \"]\".");
	*dim = n;
	return x;
}

PG_FUNCTION_INFO_V1(evector_in);
Datum
evector_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	int32		typmod = PG_GETARG_INT32(2);
	MemoryContext cxt = CurrentMemoryContext;
	struct varlena *env = NULL;
	EnvelopeHeader hdr;

	/*
	 * str is plaintext, or an envelope, or plaintext that only looks like
	 * one: no error may show it (COPY's context would).
	 */
	PG_TRY();
	{
		if (envelope_text_is_envelope(str))
		{
			env = envelope_from_text(str, ENVELOPE_KIND_VECTOR);
			envelope_read_header(env, ENVELOPE_KIND_VECTOR, &hdr);
			check_typmod_dims(typmod, hdr.count);
		}
		else
		{
			int			dim;
			float4	   *x = evector_parse_literal(str, "evector", &dim);

			check_typmod_dims(typmod, dim);
			env = seal_vector(x, dim);
		}
	}
	PG_CATCH();
	{
		envelope_rethrow_input_error(cxt);
	}
	PG_END_TRY();
	PG_RETURN_POINTER(env);
}

PG_FUNCTION_INFO_V1(evector_out);
Datum
evector_out(PG_FUNCTION_ARGS)
{
	PG_RETURN_CSTRING(envelope_to_text(PG_GETARG_EVECTOR_P(0)));
}

PG_FUNCTION_INFO_V1(evector_typmod_in);
Datum
evector_typmod_in(PG_FUNCTION_ARGS)
{
	ArrayType  *ta = PG_GETARG_ARRAYTYPE_P(0);
	int32	   *tl;
	int			n;

	tl = ArrayGetIntegerTypmods(ta, &n);
	if (n != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid type modifier"),
				 errdetail("evector takes one modifier, the number of dimensions.")));
	if (*tl < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions for type evector must be at least 1")));
	if (*tl > VECPHI_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions for type evector cannot exceed %d", VECPHI_MAX_DIM)));
	PG_RETURN_INT32(*tl);
}

PG_FUNCTION_INFO_V1(evector_typmod_out);
Datum
evector_typmod_out(PG_FUNCTION_ARGS)
{
	int32		typmod = PG_GETARG_INT32(0);

	PG_RETURN_CSTRING(typmod < 0 ? pstrdup("") : psprintf("(%d)", typmod));
}

PG_FUNCTION_INFO_V1(evector_recv);
Datum
evector_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int32		typmod = PG_GETARG_INT32(2);
	struct varlena *env = envelope_recv(buf, ENVELOPE_KIND_VECTOR);
	EnvelopeHeader hdr;

	envelope_read_header(env, ENVELOPE_KIND_VECTOR, &hdr);
	check_typmod_dims(typmod, hdr.count);
	PG_RETURN_POINTER(env);
}

PG_FUNCTION_INFO_V1(evector_send);
Datum
evector_send(PG_FUNCTION_ARGS)
{
	struct varlena *env = PG_GETARG_EVECTOR_P(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(env), VARSIZE_ANY_EXHDR(env));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

PG_FUNCTION_INFO_V1(evector_typmod_cast);
Datum
evector_typmod_cast(PG_FUNCTION_ARGS)
{
	struct varlena *env = PG_GETARG_EVECTOR_P(0);
	int32		typmod = PG_GETARG_INT32(1);
	EnvelopeHeader hdr;

	envelope_read_header(env, ENVELOPE_KIND_VECTOR, &hdr);
	check_typmod_dims(typmod, hdr.count);
	PG_RETURN_POINTER(env);
}

PG_FUNCTION_INFO_V1(evector_dims);
Datum
evector_dims(PG_FUNCTION_ARGS)
{
	EnvelopeHeader hdr;

	envelope_read_header(PG_GETARG_EVECTOR_P(0), ENVELOPE_KIND_VECTOR, &hdr);
	PG_RETURN_INT32((int32) hdr.count);
}

PG_FUNCTION_INFO_V1(evector_key_id);
Datum
evector_key_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(envelope_key_id(PG_GETARG_EVECTOR_P(0),
													 ENVELOPE_KIND_VECTOR)));
}

PG_FUNCTION_INFO_V1(evector_owned_by_claimant);
Datum
evector_owned_by_claimant(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(envelope_owned_by_claimant(PG_GETARG_EVECTOR_P(0),
											  ENVELOPE_KIND_VECTOR));
}

/*
 * The values of a one-dimensional real[] without NULLs, palloc'd (room for
 * at least one), their count in *n; the deconstructed Datums are wiped.  The
 * values are not checked: see evector_check_values().
 */
float4 *
evector_floats_from_array(ArrayType *a, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	float4	   *x;
	int			i;

	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("array must be one-dimensional")));
	deconstruct_array(a, FLOAT4OID, sizeof(float4), true,
					  TYPALIGN_INT, &elems, &nulls, n);
	x = palloc(Max(*n, 1) * sizeof(float4));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("array must not contain nulls")));
		x[i] = DatumGetFloat4(elems[i]);
	}
	crypto_wipe(elems, *n * sizeof(Datum));
	return x;
}

PG_FUNCTION_INFO_V1(vecphi_encrypt_vector);
Datum
vecphi_encrypt_vector(PG_FUNCTION_ARGS)
{
	int			n;
	float4	   *x = evector_floats_from_array(PG_GETARG_ARRAYTYPE_P(0), &n);

	PG_RETURN_POINTER(seal_vector(x, n));
}

PG_FUNCTION_INFO_V1(vecphi_decrypt_vector);
Datum
vecphi_decrypt_vector(PG_FUNCTION_ARGS)
{
	EnvelopeHeader hdr;
	Size		len;
	float4	   *x;
	Datum	   *elems;
	ArrayType  *result;
	uint32		i;

	x = envelope_open(PG_GETARG_EVECTOR_P(0), ENVELOPE_KIND_VECTOR, &hdr, &len);
	report_decrypt(false);
	envelope_floats_from_le(x, hdr.count);
	elems = palloc(hdr.count * sizeof(Datum));
	for (i = 0; i < hdr.count; i++)
		elems[i] = Float4GetDatum(x[i]);
	result = construct_array(elems, hdr.count, FLOAT4OID, sizeof(float4),
							 true, TYPALIGN_INT);
	crypto_wipe(x, len);
	crypto_wipe(elems, hdr.count * sizeof(Datum));
	PG_RETURN_ARRAYTYPE_P(result);
}

/* Wipe cached plaintext when the function's memory goes away. */
static void
plaintext_cache_wipe(void *arg)
{
	PlaintextCache *cache = (PlaintextCache *) arg;
	int			i;

	for (i = 0; i < 2; i++)
		if (cache->slot[i].x != NULL)
			crypto_wipe(cache->slot[i].x, cache->slot[i].x_cap);
}

/*
 * Plaintext of evector argument argno of a distance function.  The value
 * last decrypted for each argument position is kept (in the function's
 * memory, wiped on release), so a query vector that stays the same for a
 * whole scan is decrypted once.  A cache hit needs the same bytes and the
 * same claimant.  The result is valid until the next call for argno.
 */
const float4 *
evector_plaintext_arg(FunctionCallInfo fcinfo, int argno, uint32 *dim)
{
	struct varlena *env = PG_GETARG_EVECTOR_P(argno);
	PlaintextCache *cache = (PlaintextCache *) fcinfo->flinfo->fn_extra;
	PlaintextSlot *slot;
	Size		size = VARSIZE_ANY(env);
	uint32		claimant = claims_require_tenant_id();
	EnvelopeHeader hdr;
	Size		len;
	float4	   *x;

	Assert(argno == 0 || argno == 1);
	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(PlaintextCache));
		cache->wipe.func = plaintext_cache_wipe;
		cache->wipe.arg = cache;
		MemoryContextRegisterResetCallback(fcinfo->flinfo->fn_mcxt, &cache->wipe);
		fcinfo->flinfo->fn_extra = cache;
	}
	slot = &cache->slot[argno];
	if (slot->envelope != NULL && slot->tenant_id == claimant &&
		VARSIZE_ANY(slot->envelope) == size &&
		memcmp(slot->envelope, env, size) == 0)
	{
		*dim = slot->dim;
		return slot->x;
	}

	x = envelope_open(env, ENVELOPE_KIND_VECTOR, &hdr, &len);
	envelope_floats_from_le(x, hdr.count);

	if (slot->envelope_cap < size)
	{
		slot->envelope = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, size);
		slot->envelope_cap = size;
	}
	if (slot->x_cap < len)
	{
		if (slot->x != NULL)
			crypto_wipe(slot->x, slot->x_cap);
		slot->x = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, len);
		slot->x_cap = len;
	}
	memcpy(slot->envelope, env, size);
	memcpy(slot->x, x, len);
	crypto_wipe(x, len);
	pfree(x);
	slot->tenant_id = claimant;
	slot->dim = hdr.count;
	*dim = slot->dim;
	return slot->x;
}
