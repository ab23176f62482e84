/*-------------------------------------------------------------------------
 *
 * kernels.h
 *	  Distance kernels over plaintext float arrays.
 *
 * Plain loops that the compiler vectorises (distance.c is built with
 * -O3 and reassociation allowed, as pgvector's are), cloned for several
 * x86-64 instruction sets with the best one picked at load time, so one
 * binary runs everywhere and uses AVX-512 or FMA where the CPU has them.
 * Accumulation is in float, like pgvector, so results agree with its to
 * float rounding.
 *
 * Kept free of server headers so the benchmarks in test/bench can time
 * the very same code.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_KERNELS_H
#define VECPHI_KERNELS_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
	defined(__has_attribute)
#if __has_attribute(target_clones)
#define VECPHI_KERNEL_CLONES \
	__attribute__((target_clones("default", "fma", "avx512f")))
#endif
#endif
#ifndef VECPHI_KERNEL_CLONES
#define VECPHI_KERNEL_CLONES
#endif

/* Sum of squared differences. */
VECPHI_KERNEL_CLONES
static float
kernel_l2_squared(const float *a, const float *b, int n)
{
	float		sum = 0.0f;
	int			i;

	for (i = 0; i < n; i++)
	{
		float		diff = a[i] - b[i];

		sum += diff * diff;
	}
	return sum;
}

/* Dot product. */
VECPHI_KERNEL_CLONES
static float
kernel_inner_product(const float *a, const float *b, int n)
{
	float		sum = 0.0f;
	int			i;

	for (i = 0; i < n; i++)
		sum += a[i] * b[i];
	return sum;
}

/* Dot product and both squared norms in one pass. */
VECPHI_KERNEL_CLONES
static void
kernel_cosine_parts(const float *a, const float *b, int n,
					float *dot, float *norm_a, float *norm_b)
{
	float		d = 0.0f;
	float		na = 0.0f;
	float		nb = 0.0f;
	int			i;

	for (i = 0; i < n; i++)
	{
		d += a[i] * b[i];
		na += a[i] * a[i];
		nb += b[i] * b[i];
	}
	*dot = d;
	*norm_a = na;
	*norm_b = nb;
}

/* 1 - cosine similarity, clamped like pgvector; NaN for a zero vector. */
static inline double
kernel_cosine_distance(const float *a, const float *b, int n)
{
	float		dot;
	float		norm_a;
	float		norm_b;
	double		similarity;

	kernel_cosine_parts(a, b, n, &dot, &norm_a, &norm_b);
	similarity = (double) dot / sqrt((double) norm_a * (double) norm_b);
	if (similarity > 1.0)
		similarity = 1.0;
	else if (similarity < -1.0)
		similarity = -1.0;
	return 1.0 - similarity;
}

#endif							/* VECPHI_KERNELS_H */
