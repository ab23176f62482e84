/*-------------------------------------------------------------------------
 *
 * evector_query.c
 *	  The evector_query type: a plaintext query vector, as drivers pass it.
 *
 * A search's query vector needs no encryption: the client sent it in the
 * clear and gets back nothing but rows.  evector_query carries it as
 * pgvector's vector does (int16 dim, int16 unused, dim float4), so that:
 *
 *	- its input is immutable (no key, no claims), and real[], float8[],
 *	  integer[] and numeric[] cast to it implicitly and immutably, so
 *	  "ORDER BY embedding <-> $1" with a driver's array parameter, a literal
 *	  or a prepared parameter is a stable argument the planner gives to an
 *	  ehnsw index, and it is converted once, not per row;
 *	- its binary form is pgvector's, so numpy float32 and Float32Array
 *	  buffers can be sent as they are;
 *	- its text OUTPUT never shows the values ("evector_query(3 dimensions)"):
 *	  EXPLAIN VERBOSE, auto_explain and error contexts print constants with
 *	  it.  Binary output (evector_query_send) is pgvector's layout, values
 *	  included: it goes to the client that sent them.
 *
 * On Citus the coordinator sends each worker its shard queries as SQL
 * text, with constants printed by their output function and parsed again
 * there: "evector_query(3 dimensions)" would not come back.  So where
 * citus is preloaded and the transaction has claims, the text output is
 * the vector sealed under the claimant's current data key (an evector
 * envelope, as evector prints) and the input takes such an envelope back,
 * decrypting it for the claimant: the worker, holding the same keys and
 * claims (docs/citus.md), gets the same vector, and EXPLAIN VERBOSE shows
 * ciphertext, never the values.  Without claims the output stays
 * "evector_query(N dimensions)".
 *
 * There is no cast from evector_query to evector: encrypting it would
 * choose a tenant's key for a value the caller means as a search term.
 * Distances between an evector and an evector_query still need the claims
 * of the evector's tenant (distance.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "citus.h"
#include "claims.h"
#include "crypto.h"
#include "envelope.h"
#include "evector.h"
#include "report.h"
#include "vecphi.h"

/* A new evector_query holding dim values of x (checked). */
static EvectorQuery *
evector_query_make(const float4 *x, int dim)
{
	EvectorQuery *q;

	evector_check_values(x, dim, "evector_query");
	q = palloc(EVECTOR_QUERY_SIZE(dim));
	SET_VARSIZE(q, EVECTOR_QUERY_SIZE(dim));
	q->dim = (int16) dim;
	q->unused = 0;
	memcpy(q->x, x, sizeof(float4) * dim);
	return q;
}

PG_FUNCTION_INFO_V1(evector_query_in);
Datum
evector_query_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	MemoryContext cxt = CurrentMemoryContext;
	EvectorQuery *q = NULL;

	/* A sealed query vector, as the output gives it on Citus (above). */
	if (envelope_text_is_envelope(str))
	{
		struct varlena *env = envelope_from_text(str, ENVELOPE_KIND_VECTOR);
		EnvelopeHeader hdr;
		Size		len;
		float4	   *x = envelope_open(env, ENVELOPE_KIND_VECTOR, &hdr, &len);

		report_decrypt(false);
		envelope_floats_from_le(x, hdr.count);
		q = evector_query_make(x, hdr.count);
		crypto_wipe(x, len);
		PG_RETURN_POINTER(q);
	}

	/* str is plaintext: no error may show it (COPY's context would). */
	PG_TRY();
	{
		int			dim;
		float4	   *x = evector_parse_literal(str, "evector_query", &dim);

		q = evector_query_make(x, dim);
		pfree(x);
	}
	PG_CATCH();
	{
		envelope_rethrow_input_error(cxt);
	}
	PG_END_TRY();
	PG_RETURN_POINTER(q);
}

/*
 * Text output: the dimensions only, never the values; on Citus with claims,
 * the values sealed under the claimant's key (see above).
 */
PG_FUNCTION_INFO_V1(evector_query_out);
Datum
evector_query_out(PG_FUNCTION_ARGS)
{
	EvectorQuery *q = PG_GETARG_EVECTOR_QUERY_P(0);

	if (vecphi_citus_preloaded() && claims_current() != NULL)
	{
		Size		len = sizeof(float4) * q->dim;
		float4	   *x = palloc(len);
		struct varlena *env;

		memcpy(x, q->x, len);
		envelope_floats_to_le(x, q->dim);
		env = envelope_seal(ENVELOPE_KIND_VECTOR, q->dim, x, len);
		crypto_wipe(x, len);
		PG_RETURN_CSTRING(envelope_to_text(env));
	}
	PG_RETURN_CSTRING(psprintf("evector_query(%d dimensions)", q->dim));
}

static void
binary_error(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid binary representation for type evector_query"),
			 errdetail("%s", detail),
			 errhint("Send pgvector's binary layout: int16 dimensions, int16 zero, then the float4 values, all in network byte order.")));
}

/* Binary input: pgvector's vector layout, in network byte order. */
PG_FUNCTION_INFO_V1(evector_query_recv);
Datum
evector_query_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int			nbytes = buf->len - buf->cursor;
	int			dim;
	int			unused;
	float4	   *x;
	EvectorQuery *q;
	int			i;

	if (nbytes < 4)
		binary_error("The value is shorter than its 4-byte header.");
	dim = (int16) pq_getmsgint(buf, sizeof(int16));
	unused = (int16) pq_getmsgint(buf, sizeof(int16));
	if (unused != 0)
		binary_error("The second int16 of the header is not zero.");
	if (dim < 1 || dim > VECPHI_MAX_DIM)
		evector_check_values(NULL, dim, "evector_query");
	if (nbytes != 4 + (int) sizeof(float4) * dim)
		binary_error(psprintf("The header gives %d dimensions (%d bytes of values), but %d bytes follow it.",
							  dim, (int) sizeof(float4) * dim, nbytes - 4));
	x = palloc(sizeof(float4) * dim);
	for (i = 0; i < dim; i++)
		x[i] = pq_getmsgfloat4(buf);
	q = evector_query_make(x, dim);
	pfree(x);
	PG_RETURN_POINTER(q);
}

/* Binary output: pgvector's layout, values included (to the client only). */
PG_FUNCTION_INFO_V1(evector_query_send);
Datum
evector_query_send(PG_FUNCTION_ARGS)
{
	EvectorQuery *q = PG_GETARG_EVECTOR_QUERY_P(0);
	StringInfoData buf;
	int			i;

	pq_begintypsend(&buf);
	pq_sendint16(&buf, q->dim);
	pq_sendint16(&buf, 0);
	for (i = 0; i < q->dim; i++)
		pq_sendfloat4(&buf, q->x[i]);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* One array element as float4; float4's range is checked. */
static float4
element_to_float4(Datum d, Oid elemtype, int i)
{
	float8		v;

	switch (elemtype)
	{
		case FLOAT4OID:
			return DatumGetFloat4(d);
		case FLOAT8OID:
			v = DatumGetFloat8(d);
			break;
		case INT2OID:
			return (float4) DatumGetInt16(d);
		case INT4OID:
			return (float4) DatumGetInt32(d);
		case INT8OID:
			return (float4) DatumGetInt64(d);
		case NUMERICOID:
			v = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, d));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("cannot cast an array of type %s to evector_query",
							format_type_be(elemtype))));
			return 0;			/* keep compiler quiet */
	}
	if (!isnan(v) && !isinf(v) && (v > FLT_MAX || v < -FLT_MAX))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("evector_query element %d is out of range for type real", i + 1)));
	return (float4) v;
}

/*
 * The implicit casts real[], float8[], integer[], numeric[] ->
 * evector_query: one-dimensional, no NULL element, values as for the text
 * input.
 */
PG_FUNCTION_INFO_V1(evector_query_from_array);
Datum
evector_query_from_array(PG_FUNCTION_ARGS)
{
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(0);
	Oid			elemtype = ARR_ELEMTYPE(a);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	float4	   *x;
	EvectorQuery *q;

	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("array must be one-dimensional"),
				 errdetail("An evector_query is a flat list of numbers.")));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(a, elemtype, typlen, typbyval, typalign,
					  &elems, &nulls, &n);
	if (n > VECPHI_MAX_DIM || n < 1)
		evector_check_values(NULL, n, "evector_query");
	x = palloc(sizeof(float4) * n);
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("array must not contain nulls"),
					 errdetail("Element %d is NULL.", i + 1)));
		x[i] = element_to_float4(elems[i], elemtype, i);
	}
	q = evector_query_make(x, n);
	pfree(x);
	PG_RETURN_POINTER(q);
}

PG_FUNCTION_INFO_V1(evector_query_dims);
Datum
evector_query_dims(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(PG_GETARG_EVECTOR_QUERY_P(0)->dim);
}

/*
 * Is typid vecphi's evector_query, or a domain over it?  Asked of the
 * right-hand type of an ehnsw ordering key and of the audit's query
 * argument; recognised by its input function's link symbol and library,
 * as the audit recognises vecphi's functions, so the answer does not
 * depend on schemas.
 */
bool
evector_query_is_type(Oid typid)
{
	HeapTuple	tup;
	Oid			input;
	bool		result = false;

	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(getBaseType(typid)));
	if (!HeapTupleIsValid(tup))
		return false;
	input = ((Form_pg_type) GETSTRUCT(tup))->typinput;
	ReleaseSysCache(tup);

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(input));
	if (!HeapTupleIsValid(tup))
		return false;
	if (((Form_pg_proc) GETSTRUCT(tup))->prolang == ClanguageId)
	{
		bool		isnull;
		Datum		bin = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_probin, &isnull);

		if (!isnull && strstr(TextDatumGetCString(bin), "vecphi") != NULL)
		{
			Datum		src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);

			result = !isnull && strcmp(TextDatumGetCString(src), "evector_query_in") == 0;
		}
	}
	ReleaseSysCache(tup);
	return result;
}

/*
 * The audit's fingerprint input for an evector_query: SHA-256 of its
 * values as little-endian float4, the bytes an evector's envelope holds,
 * so the same query vector gets the same fingerprint whichever type
 * carried it.
 */
void
evector_query_digest(Datum value, uint8 *digest)
{
	EvectorQuery *q = DatumGetEvectorQueryP(value);
	Size		len = sizeof(float4) * q->dim;
	float4	   *x = palloc(len);

	memcpy(x, q->x, len);
	envelope_floats_to_le(x, q->dim);
	crypto_sha256((const uint8 *) x, len, digest);
	crypto_wipe(x, len);
	pfree(x);
}
