/*-------------------------------------------------------------------------
 *
 * distance.c
 *	  SQL distance functions over evector: <->, <=>, <#> and friends.
 *
 * Each operand is decrypted for the claimant (evector.c caches the
 * plaintext of an operand that stays the same, such as a query vector),
 * and the kernels in kernels.h do the arithmetic exactly as pgvector does.
 *
 * Each also has a form with a plaintext evector_query on either side (the
 * _query functions: evector on the left; _query_rev: on the right).  The
 * evector operand still needs its tenant's claims: a query vector lets no
 * one measure another tenant's values.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"

#include "evector.h"
#include "kernels.h"
#include "report.h"

/* Plaintext of both operands, checked to have the same dimensions. */
static void
distance_operands(FunctionCallInfo fcinfo, const float4 **a, const float4 **b,
				  uint32 *dim)
{
	uint32		dim_a;
	uint32		dim_b;

	*a = evector_plaintext_arg(fcinfo, 0, &dim_a);
	*b = evector_plaintext_arg(fcinfo, 1, &dim_b);
	if (dim_a != dim_b)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different evector dimensions %u and %u", dim_a, dim_b)));
	*dim = dim_a;
	report_distance();
}

/*
 * Plaintext of an evector operand (argument ev) and an evector_query one
 * (the other argument), checked to have the same dimensions.
 */
static void
query_distance_operands(FunctionCallInfo fcinfo, int ev, const float4 **a,
						const float4 **b, uint32 *dim)
{
	uint32		dim_a;
	EvectorQuery *q;

	*a = evector_plaintext_arg(fcinfo, ev, &dim_a);
	q = PG_GETARG_EVECTOR_QUERY_P(1 - ev);
	if (dim_a != (uint32) q->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different evector dimensions %u and %d", dim_a, q->dim)));
	*b = q->x;
	*dim = dim_a;
	report_distance();
}

/* The four metrics on two plaintext operands of dim values. */
static double
metric_l2(const float4 *a, const float4 *b, uint32 dim)
{
	return sqrt((double) kernel_l2_squared(a, b, (int) dim));
}

static double
metric_inner_product(const float4 *a, const float4 *b, uint32 dim)
{
	return (double) kernel_inner_product(a, b, (int) dim);
}

static double
metric_negative_inner_product(const float4 *a, const float4 *b, uint32 dim)
{
	return -(double) kernel_inner_product(a, b, (int) dim);
}

static double
metric_cosine(const float4 *a, const float4 *b, uint32 dim)
{
	return kernel_cosine_distance(a, b, (int) dim);
}

/*
 * Each metric has three SQL entry points that differ only in where the two
 * plaintext operands come from: NAME (evector, evector), NAME_query
 * (evector, evector_query) and NAME_query_rev (evector_query, evector).
 */
#define DISTANCE_ENTRY_POINTS(name, metric) \
PG_FUNCTION_INFO_V1(name); \
Datum \
name(PG_FUNCTION_ARGS) \
{ \
	const float4 *a; \
	const float4 *b; \
	uint32		dim; \
\
	distance_operands(fcinfo, &a, &b, &dim); \
	PG_RETURN_FLOAT8(metric(a, b, dim)); \
} \
PG_FUNCTION_INFO_V1(name##_query); \
Datum \
name##_query(PG_FUNCTION_ARGS) \
{ \
	const float4 *a; \
	const float4 *b; \
	uint32		dim; \
\
	query_distance_operands(fcinfo, 0, &a, &b, &dim); \
	PG_RETURN_FLOAT8(metric(a, b, dim)); \
} \
PG_FUNCTION_INFO_V1(name##_query_rev); \
Datum \
name##_query_rev(PG_FUNCTION_ARGS) \
{ \
	const float4 *a; \
	const float4 *b; \
	uint32		dim; \
\
	query_distance_operands(fcinfo, 1, &a, &b, &dim); \
	PG_RETURN_FLOAT8(metric(a, b, dim)); \
}

DISTANCE_ENTRY_POINTS(evector_l2_distance, metric_l2)
DISTANCE_ENTRY_POINTS(evector_inner_product, metric_inner_product)
DISTANCE_ENTRY_POINTS(evector_negative_inner_product, metric_negative_inner_product)
DISTANCE_ENTRY_POINTS(evector_cosine_distance, metric_cosine)
