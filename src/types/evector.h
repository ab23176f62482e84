/*-------------------------------------------------------------------------
 *
 * evector.h
 *	  Access to the plaintext of evector arguments for distance functions,
 *	  the vector text parser evector and evector_query share, and the
 *	  plaintext query vector type evector_query (evector_query.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_EVECTOR_H
#define VECPHI_EVECTOR_H

#include "fmgr.h"
#include "utils/array.h"

/*
 * evector_query: a plaintext query vector, laid out as pgvector's vector
 * (so its binary form is pgvector's too).  Never encrypted, never stored
 * as protected data: see evector_query.c.
 */
typedef struct EvectorQuery
{
	int32		vl_len_;		/* varlena header (do not touch directly) */
	int16		dim;			/* number of dimensions */
	int16		unused;			/* zero */
	float4		x[FLEXIBLE_ARRAY_MEMBER];
} EvectorQuery;

#define EVECTOR_QUERY_SIZE(dim) (offsetof(EvectorQuery, x) + sizeof(float4) * (dim))
#define DatumGetEvectorQueryP(x) ((EvectorQuery *) PG_DETOAST_DATUM(x))
#define PG_GETARG_EVECTOR_QUERY_P(n) DatumGetEvectorQueryP(PG_GETARG_DATUM(n))

extern const float4 *evector_plaintext_arg(FunctionCallInfo fcinfo, int argno,
										   uint32 *dim);
extern float4 *evector_parse_literal(const char *str, const char *typname,
									 int *dim);
extern void evector_check_values(const float4 *x, int dim, const char *typname);
extern float4 *evector_floats_from_array(ArrayType *a, int *n);

extern bool evector_query_is_type(Oid typid);
extern void evector_query_digest(Datum value, uint8 *digest);

#endif							/* VECPHI_EVECTOR_H */
