-- distance: <->, <=>, <#> and l2_distance, cosine_distance, inner_product
-- on evector, with the results pgvector gives: sums accumulated in float
-- (single precision), returned as float8; cosine clamped to [0, 2], NaN
-- for a zero vector.  Both operands are decrypted, so both need the
-- claimant's tenant.

\pset null '<null>'

BEGIN;
SELECT as_tenant('hosp_a');
CREATE TEMP TABLE dv AS SELECT
	'[1,2,3]'::evector AS a, '[4,5,6]'::evector AS b, '[0,0,0]'::evector AS z,
	'[-1,-2,-3]'::evector AS neg, '[3,0,0]'::evector AS x3, '[0,4,0]'::evector AS y4;

-- [1,2,3] and [4,5,6]: l2 = sqrt(27), inner product 32, <#> -32,
-- cosine 1 - 32 / sqrt(14 * 77).
SELECT a <-> b AS l2, l2_distance(a, b) AS l2_fn, sqrt(27) AS l2_expected,
	inner_product(a, b) AS ip, a <#> b AS neg_ip,
	vecphi.negative_inner_product(a, b) AS neg_ip_fn
FROM dv;
SELECT round((a <=> b)::numeric, 12) AS cosine,
	round(cosine_distance(a, b)::numeric, 12) AS cosine_fn,
	round((1 - 32 / sqrt(14.0 * 77))::numeric, 12) AS cosine_expected,
	abs((a <=> b) - (1 - 32 / sqrt(14.0 * 77))) < 1e-7 AS close
FROM dv;
-- Symmetry (the operators are their own commutators).
SELECT a <-> b = b <-> a AS l2_sym, a <=> b = b <=> a AS cos_sym,
	a <#> b = b <#> a AS ip_sym FROM dv;
-- Exact values: a 3-4-5 triangle, orthogonal and opposite vectors, self.
SELECT x3 <-> y4 AS l2_5, x3 <=> y4 AS cos_orthogonal, x3 <#> y4 AS ip_0,
	a <=> neg AS cos_opposite, a <=> a AS cos_self, a <-> a AS l2_self,
	a <#> a AS neg_ip_self, inner_product(a, neg) AS ip_neg
FROM dv;
-- Zero vector: cosine is NaN (as pgvector); l2 and inner product are fine.
SELECT z <=> a AS cos_zero, a <=> z AS cos_zero_rhs, z <=> z AS cos_zero_zero,
	z <-> a AS l2_zero, z <#> a AS ip_zero FROM dv;
-- The result type is double precision.
SELECT pg_typeof(a <-> b), pg_typeof(a <=> b), pg_typeof(a <#> b),
	pg_typeof(inner_product(a, b)) FROM dv;

-- Accumulation in float, as pgvector.  The squared distance of
-- [1e8,1,1] from zero is 1e16 + 2; in float, 1e8 squared is already
-- 10000000272564224 (1e16 is not a float) and adding 1 twice changes
-- nothing, so l2 is sqrt(10000000272564224) = 100000001.36282112 (with a
-- double sum it would print 100000000).  The inner product
-- 16777216 + 1 stays 16777216 (2^24 + 1 is not a float; double: 16777217).
SELECT '[100000000,1,1]'::evector <-> '[0,0,0]'::evector AS l2_float_sum,
	inner_product('[16777216,1]'::evector, '[1,1]'::evector) AS ip_float_sum;
-- Elements are single precision: 0.1 is 0.100000001490116...
SELECT inner_product('[0.1]'::evector, '[1]'::evector) = 0.1::real::float8 AS ip_is_float4;

-- Long vectors (every code path of the vectorised kernels): 1000 and 16000
-- dimensions of small integers, where float sums are exact.
SELECT vecphi.encrypt(array_agg((i % 7)::real ORDER BY i)) AS p,
	vecphi.encrypt(array_agg((i % 5 - 2)::real ORDER BY i)) AS q
INTO TEMP long1000 FROM generate_series(1, 1000) AS i;
SELECT p <-> q AS l2,
	(SELECT sqrt(sum(((i % 7) - (i % 5 - 2))^2)) FROM generate_series(1, 1000) AS i) AS l2_expected,
	p <#> q AS neg_ip,
	(SELECT -sum((i % 7) * (i % 5 - 2)) FROM generate_series(1, 1000) AS i) AS neg_ip_expected
FROM long1000;
SELECT vecphi.encrypt(array_agg((i % 3)::real ORDER BY i)) AS p,
	vecphi.encrypt(array_agg((i % 2)::real ORDER BY i)) AS q
INTO TEMP long16000 FROM generate_series(1, 16000) AS i;
SELECT p <-> q AS l2, e.l2_expected, inner_product(p, q) AS ip, e.ip_expected,
	round((p <=> q)::numeric, 6) AS cosine, round(e.cosine_expected::numeric, 6) AS cosine_expected
FROM long16000, (SELECT sqrt(sum(((i % 3) - (i % 2))^2)) AS l2_expected,
		sum((i % 3) * (i % 2)) AS ip_expected,
		1 - sum((i % 3) * (i % 2)) / sqrt(sum((i % 3)^2) * sum((i % 2)^2)) AS cosine_expected
	FROM generate_series(1, 16000) AS i) AS e;
-- Odd lengths 1 to 33 (tails of the vector loops): l2 of [1..n] and 0 is
-- sqrt(n(n+1)(2n+1)/6), the inner product with itself n(n+1)(2n+1)/6.
SELECT n, (p <-> z) = sqrt((n * (n + 1) * (2 * n + 1) / 6)::float8) AS l2_ok,
	inner_product(p, p) = n * (n + 1) * (2 * n + 1) / 6 AS ip_ok,
	(p <=> p) = 0 AS cos_ok
FROM (SELECT n, vecphi.encrypt(array_agg(i::real ORDER BY i)) AS p,
		vecphi.encrypt(array_fill(0::real, ARRAY[n])) AS z
	FROM generate_series(1, 33) AS n, generate_series(1, n) AS i GROUP BY n) AS t
WHERE n IN (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33) ORDER BY n;

-- Dimension mismatch: 22000.
SELECT expect_error_detail($$SELECT '[1,2,3]'::evector <-> '[1,2]'::evector$$) AS l2_mismatch;
SELECT expect_error($$SELECT '[1,2]'::evector <=> '[1,2,3]'::evector$$) AS cos_mismatch;
SELECT expect_error($$SELECT '[1]'::evector <#> '[1,2]'::evector$$) AS ip_mismatch;
SELECT expect_error($$SELECT inner_product('[1]'::evector, '[1,2]'::evector)$$) AS ip_fn_mismatch;
-- NULL operands give NULL (strict).
SELECT a <-> NULL AS l2_null, NULL <=> a AS cos_null FROM dv;
-- A damaged operand is reported, not computed with.
SELECT expect_error(format('SELECT %L::evector <-> %L::evector', a, flip_byte(b::text, 30))) AS damaged_operand
FROM dv;
COMMIT;

-- Operands of two tenants: the claimant's own value decrypts, the other
-- tenant's does not, whichever side it is on.
BEGIN;
SELECT as_tenant('hosp_b');
SELECT '[1,2,3]'::evector::text AS b_value \gset
COMMIT;
BEGIN;
SELECT as_tenant('hosp_a');
SELECT '[4,5,6]'::evector::text AS a_value \gset
SELECT expect_error_detail(format('SELECT %L::evector <-> %L::evector', :'a_value', :'b_value')) AS other_rhs;
SELECT expect_error(format('SELECT %L::evector <=> %L::evector', :'b_value', :'a_value')) AS other_lhs;
SELECT expect_error(format('SELECT %L::evector <#> %L::evector', :'b_value', :'b_value')) AS both_other;
SELECT expect_error(format('SELECT inner_product(%L::evector, %L::evector)', :'a_value', :'b_value')) AS ip_fn_other;
SELECT :'a_value'::evector <-> :'a_value'::evector AS own_ok;
COMMIT;
-- And without claims nothing is computed.
SELECT expect_error(format('SELECT %L::evector <-> %L::evector', :'a_value', :'a_value')) AS no_claims;
-- The same values under hosp_b: now the other side fails.
BEGIN;
SELECT as_tenant('hosp_b');
SELECT expect_error(format('SELECT %L::evector <-> %L::evector', :'b_value', :'a_value')) AS other_rhs_b;
SELECT :'b_value'::evector <-> '[1,2,4]'::evector AS own_ok_b;
COMMIT;
