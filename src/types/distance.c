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

PG_FUNCTION_INFO_V1(evector_l2_distance_query);
Datum
evector_l2_distance_query(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	query_distance_operands(fcinfo, 0, &a, &b, &dim);
	PG_RETURN_FLOAT8(sqrt((double) kernel_l2_squared(a, b, (int) dim)));
}

PG_FUNCTION_INFO_V1(evector_l2_distance_query_rev);
Datum
evector_l2_distance_query_rev(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	query_distance_operands(fcinfo, 1, &a, &b, &dim);
	PG_RETURN_FLOAT8(sqrt((double) kernel_l2_squared(a, b, (int) dim)));
}

PG_FUNCTION_INFO_V1(evector_inner_product_query);
Datum
evector_inner_product_query(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	query_distance_operands(fcinfo, 0, &a, &b, &dim);
	PG_RETURN_FLOAT8((double) kernel_inner_product(a, b, (int) dim));
}

PG_FUNCTION_INFO_V1(evector_inner_product_query_rev);
Datum
evector_inner_product_query_rev(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	query_distance_operands(fcinfo, 1, &a, &b, &dim);
	PG_RETURN_FLOAT8((double) kernel_inner_product(a, b, (int) dim));
}

PG_FUNCTION_INFO_V1(evector_negative_inner_product_query);
Datum
evector_negative_inner_product_query(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	query_distance_operands(fcinfo, 0, &a, &b, &dim);
	PG_RETURN_FLOAT8(-(double) kernel_inner_product(a, b, (int) dim));
}

PG_FUNCTION_INFO_V1(evector_negative_inner_product_query_rev);
Datum
evector_negative_inner_product_query_rev(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	query_distance_operands(fcinfo, 1, &a, &b, &dim);
	PG_RETURN_FLOAT8(-(double) kernel_inner_product(a, b, (int) dim));
}

PG_FUNCTION_INFO_V1(evector_cosine_distance_query);
Datum
evector_cosine_distance_query(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	query_distance_operands(fcinfo, 0, &a, &b, &dim);
	PG_RETURN_FLOAT8(kernel_cosine_distance(a, b, (int) dim));
}

PG_FUNCTION_INFO_V1(evector_cosine_distance_query_rev);
Datum
evector_cosine_distance_query_rev(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	query_distance_operands(fcinfo, 1, &a, &b, &dim);
	PG_RETURN_FLOAT8(kernel_cosine_distance(a, b, (int) dim));
}

PG_FUNCTION_INFO_V1(evector_l2_distance);
Datum
evector_l2_distance(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	distance_operands(fcinfo, &a, &b, &dim);
	PG_RETURN_FLOAT8(sqrt((double) kernel_l2_squared(a, b, (int) dim)));
}

PG_FUNCTION_INFO_V1(evector_inner_product);
Datum
evector_inner_product(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	distance_operands(fcinfo, &a, &b, &dim);
	PG_RETURN_FLOAT8((double) kernel_inner_product(a, b, (int) dim));
}

PG_FUNCTION_INFO_V1(evector_negative_inner_product);
Datum
evector_negative_inner_product(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	distance_operands(fcinfo, &a, &b, &dim);
	PG_RETURN_FLOAT8(-(double) kernel_inner_product(a, b, (int) dim));
}

PG_FUNCTION_INFO_V1(evector_cosine_distance);
Datum
evector_cosine_distance(PG_FUNCTION_ARGS)
{
	const float4 *a;
	const float4 *b;
	uint32		dim;

	distance_operands(fcinfo, &a, &b, &dim);
	PG_RETURN_FLOAT8(kernel_cosine_distance(a, b, (int) dim));
}
