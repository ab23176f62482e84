/*-------------------------------------------------------------------------
 *
 * distance.c
 *	  SQL distance functions over evector: <->, <=>, <#> and friends.
 *
 * Each operand is decrypted for the claimant (evector.c caches the
 * plaintext of an operand that stays the same, such as a query vector),
 * and the kernels in kernels.h do the arithmetic exactly as pgvector does.
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
