-- query_vector: evector_query, the plaintext query vector drivers pass.
--
-- Its input (text, arrays, pgvector's binary layout) and its checks, an
-- output that never shows the values, the distance operators with an
-- evector on the other side (which still need that evector's claims), the
-- ehnsw index taking it as the ORDER BY argument in every form a driver
-- sends (literal, real[], float8[], prepared, generic plans), the audit
-- fingerprint (the same for evector and evector_query), binary COPY of
-- evector/etext and the 22P03 error for bytes that are not an envelope.

\pset null '<null>'

---------------------------------------------------------------------------
-- The type, its input and output
---------------------------------------------------------------------------
SELECT t.typname, n.nspname, t.typcategory, t.typstorage
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typname IN ('evector', 'evector_query') ORDER BY 1;

-- Text output shows the dimensions, never the values.
SELECT '[1,2,3]'::evector_query AS q, vector_dims('[1.5, -2, 3e3]'::evector_query) AS dims;
SELECT '[1,2,3]'::evector_query::text AS as_text;
-- No claims needed: nothing is encrypted.
SELECT vecphi.tenant() AS no_claims, '[0.25]'::evector_query AS q;
-- Binary output is pgvector's layout (int16 dim, int16 0, float4 values).
SELECT evector_query_send('[1,2,3]') AS send;

-- Casts from the arrays drivers send: implicit and immutable.
SELECT c.castsource::regtype, c.casttarget::regtype, c.castcontext, p.provolatile
FROM pg_cast c JOIN pg_proc p ON p.oid = c.castfunc
WHERE c.casttarget = 'evector_query'::regtype OR c.castsource = 'evector_query'::regtype
ORDER BY 1::text;
SELECT ARRAY[1,2,3]::real[]::evector_query AS from_real,
	ARRAY[1.5,2,3]::float8[]::evector_query AS from_float8,
	ARRAY[1,2,3]::evector_query AS from_int,
	ARRAY[1.5,2.5]::numeric[]::evector_query AS from_numeric;
SELECT evector_query_send(ARRAY[1,2,3]::float8[]) = evector_query_send('[1,2,3]') AS same_bytes;
-- No cast to evector: a query vector is never encrypted by mistake.
SELECT count(*) AS casts_to_evector FROM pg_cast
WHERE castsource = 'evector_query'::regtype AND casttarget = 'evector'::regtype;
SELECT expect_error($$SELECT '[1,2,3]'::evector_query::evector$$) AS no_cast;

-- Bad input: clear 22xxx errors that never show the values.
SELECT expect_error_detail($$SELECT '[1,2'::evector_query$$) AS unterminated;
SELECT expect_error_detail($$SELECT '{1,2}'::evector_query$$) AS braces;
SELECT expect_error_detail($$SELECT '[]'::evector_query$$) AS empty;
SELECT expect_error_detail($$SELECT '[1,NaN]'::evector_query$$) AS nan;
SELECT expect_error_detail($$SELECT '[1,Infinity]'::evector_query$$) AS inf;
SELECT expect_error_detail($$SELECT '[1,1e39]'::evector_query$$) AS too_large;
SELECT expect_error_detail(format('SELECT %L::evector_query',
	'[' || repeat('1,', 16000) || '1]')) AS too_many;
SELECT expect_error_detail($$SELECT 'evector_query(3 dimensions)'::evector_query$$) AS output_is_not_input;
SELECT expect_error_detail($$SELECT ARRAY[1,NULL,3]::real[]::evector_query$$) AS null_element;
SELECT expect_error_detail($$SELECT ARRAY[[1,2],[3,4]]::real[]::evector_query$$) AS two_dims;
SELECT expect_error_detail($$SELECT '{}'::real[]::evector_query$$) AS empty_array;
SELECT expect_error_detail($$SELECT ARRAY[1,'NaN']::float8[]::evector_query$$) AS nan_array;
SELECT expect_error_detail($$SELECT ARRAY[1,'-Infinity']::float8[]::evector_query$$) AS inf_array;
SELECT expect_error_detail($$SELECT ARRAY[1,1e300]::float8[]::evector_query$$) AS float8_range;
SELECT expect_error_detail($$SELECT ARRAY[1,1e300]::numeric[]::evector_query$$) AS numeric_range;
SELECT expect_error_detail($$SELECT array_fill(1::real, ARRAY[16001])::evector_query$$) AS too_many_array;
SELECT expect_error($$SELECT ARRAY['a','b']::text[]::evector_query$$) AS wrong_type;
SELECT expect_error($$SELECT 42::evector_query$$) AS not_an_array;
-- COPY input is plaintext too: its context never shows the line.
CREATE TEMP TABLE qv_in (q evector_query);

COPY qv_in FROM stdin;
[1,2,secret]
\.


---------------------------------------------------------------------------
-- Distances against evector values: the evector side needs its claims
---------------------------------------------------------------------------
CREATE TABLE qv_docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector(3));
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO qv_docs
SELECT i, 'hosp_a', format('[%s,%s,%s]', i % 5 + i * 0.0011, (i / 5) % 5 + i * 0.0007, i % 3)::evector
FROM generate_series(1, 60) i;
COMMIT;
BEGIN;
SELECT as_tenant('hosp_b');
INSERT INTO qv_docs
SELECT i, 'hosp_b', format('[%s,%s,%s]', (i % 5) + 0.5 + i * 0.0011, (i / 5) % 5 + i * 0.0007, i % 3)::evector
FROM generate_series(101, 160) i;
COMMIT;

-- The same values as evector and as evector_query give the same distances,
-- either side, every operator and function.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT bool_and(emb <-> '[1,2,0.5]'::evector = emb <-> '[1,2,0.5]'::evector_query
		AND '[1,2,0.5]'::evector_query <-> emb = emb <-> '[1,2,0.5]'::evector
		AND emb <=> '[1,2,0.5]'::evector = emb <=> '[1,2,0.5]'::evector_query
		AND '[1,2,0.5]'::evector_query <=> emb = emb <=> '[1,2,0.5]'::evector
		AND emb <#> '[1,2,0.5]'::evector = emb <#> '[1,2,0.5]'::evector_query
		AND '[1,2,0.5]'::evector_query <#> emb = emb <#> '[1,2,0.5]'::evector
		AND l2_distance(emb, '[1,2,0.5]'::evector_query) = emb <-> '[1,2,0.5]'::evector
		AND l2_distance('[1,2,0.5]'::evector_query, emb) = emb <-> '[1,2,0.5]'::evector
		AND cosine_distance(emb, ARRAY[1,2,0.5]::real[]) = emb <=> '[1,2,0.5]'::evector
		AND cosine_distance('[1,2,0.5]'::evector_query, emb) = emb <=> '[1,2,0.5]'::evector
		AND inner_product(emb, ARRAY[1,2,0.5]::float8[]) = inner_product(emb, '[1,2,0.5]'::evector)
		AND inner_product('[1,2,0.5]'::evector_query, emb) = inner_product(emb, '[1,2,0.5]'::evector)
		AND vecphi.negative_inner_product(emb, '[1,2,0.5]'::evector_query) = emb <#> '[1,2,0.5]'::evector
		AND vecphi.negative_inner_product('[1,2,0.5]'::evector_query, emb) = emb <#> '[1,2,0.5]'::evector)
	AS same_distances
FROM qv_docs WHERE tenant = 'hosp_a';
-- The operators and functions are stable, cost as much as the evector ones.
SELECT DISTINCT p.provolatile, p.procost, p.proisstrict
FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode
WHERE 'evector_query'::regtype IN (o.oprleft, o.oprright);
SELECT o.oprname, o.oprleft::regtype, o.oprright::regtype, c.oprleft::regtype AS commutator_left
FROM pg_operator o JOIN pg_operator c ON c.oid = o.oprcom
WHERE 'evector_query'::regtype IN (o.oprleft, o.oprright) ORDER BY 1, 2;
-- Two untyped literals could be either: type one of them.
SELECT expect_error($$SELECT '[1,2]' <-> '[3,4]'$$) AS two_untyped;
SELECT '[1,2]'::evector_query <-> '[3,4]' IS NOT NULL AS one_typed;
-- Wrong dimension: 22000.
SELECT expect_error($$SELECT emb <-> '[1,2]'::evector_query FROM qv_docs WHERE id = 1$$) AS dim_mismatch;
SELECT expect_error($$SELECT '[1,2,3,4]'::evector_query <=> emb FROM qv_docs WHERE id = 1$$) AS dim_mismatch_rev;
COMMIT;

-- The attack: a plaintext query vector measures nothing without claims,
-- nor another tenant's values under one's own claims.
SELECT expect_error($$SELECT emb <-> '[1,2,0]'::evector_query FROM qv_docs WHERE id = 101$$) AS no_claims;
SELECT expect_error($$SELECT l2_distance('[1,2,0]'::evector_query, emb) FROM qv_docs WHERE id = 101$$) AS no_claims_fn;
BEGIN;
SELECT as_tenant('hosp_a');
SELECT expect_error($$SELECT emb <-> '[1,2,0]'::evector_query FROM qv_docs WHERE id = 101$$) AS other_tenant;
SELECT expect_error($$SELECT '[1,2,0]'::evector_query <#> emb FROM qv_docs WHERE id = 101$$) AS other_tenant_rev;
SELECT expect_error($$SELECT cosine_distance(emb, ARRAY[1,2,0]) FROM qv_docs WHERE id = 101$$) AS other_tenant_array;
COMMIT;

-- Not protected data: nothing casts it into an evector column.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT expect_error($$INSERT INTO qv_docs VALUES (999, 'hosp_a', '[1,2,3]'::evector_query)$$) AS insert_query;
SELECT expect_error($$UPDATE qv_docs SET emb = '[1,2,3]'::evector_query WHERE id = 1$$) AS update_query;
-- real[] still encrypts into an evector column, as before.
INSERT INTO qv_docs VALUES (998, 'hosp_a', ARRAY[9,9,9]::real[]);
SELECT vecphi.decrypt(emb) FROM qv_docs WHERE id = 998;
ROLLBACK;

---------------------------------------------------------------------------
-- The ehnsw index takes the query in every form a driver sends
---------------------------------------------------------------------------
CREATE INDEX qv_docs_l2 ON qv_docs USING ehnsw (emb evector_l2_ops);
CREATE INDEX qv_docs_cos ON qv_docs USING ehnsw (emb evector_cosine_ops);
CREATE INDEX qv_docs_ip ON qv_docs USING ehnsw (emb evector_ip_ops);
-- The cross-type members are in the families; the classes still validate.
SELECT f.opfname, o.amopopr::regoperator, o.amoppurpose, o.amopsortfamily::regclass IS NULL AS no_sort
FROM pg_amop o JOIN pg_opfamily f ON f.oid = o.amopfamily
WHERE f.opfmethod = (SELECT oid FROM pg_am WHERE amname = 'ehnsw')
ORDER BY 1, 2::text;
SELECT c.opcname, amvalidate(c.oid) FROM pg_opclass c
WHERE c.opcmethod = (SELECT oid FROM pg_am WHERE amname = 'ehnsw') ORDER BY 1;

-- Exact answer for comparison: the hosp_a rows by distance to [1,2,0.5].
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL enable_indexscan = off;
CREATE TEMP TABLE qv_exact AS SELECT array_agg(id) AS ids FROM (
	SELECT id FROM qv_docs WHERE tenant = 'hosp_a'
	ORDER BY l2_distance(emb, '[1,2,0.5]'::evector_query) LIMIT 5) s;
COMMIT;

BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL enable_seqscan = off;
-- A literal cast to evector_query: the plan shows no values.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM qv_docs ORDER BY emb <-> '[1,2,0.5]'::evector_query LIMIT 5;
-- real[] and float8[] constants fold into an evector_query constant.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM qv_docs ORDER BY emb <-> ARRAY[1,2,0.5]::real[] LIMIT 5;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM qv_docs ORDER BY emb <=> '{1,2,0.5}'::float8[] LIMIT 5;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM qv_docs ORDER BY emb <#> ARRAY[1,2,0.5] LIMIT 5;
SELECT array_agg(id) = (SELECT ids FROM qv_exact) AS literal_matches_exact FROM (
	SELECT id FROM qv_docs ORDER BY emb <-> '[1,2,0.5]'::evector_query LIMIT 5) s;
SELECT array_agg(id) = (SELECT ids FROM qv_exact) AS real_array_matches_exact FROM (
	SELECT id FROM qv_docs ORDER BY emb <-> ARRAY[1,2,0.5]::real[] LIMIT 5) s;
SELECT array_agg(id) = (SELECT ids FROM qv_exact) AS float8_array_matches_exact FROM (
	SELECT id FROM qv_docs ORDER BY emb <-> ARRAY[1,2,0.5]::float8[] LIMIT 5) s;
-- An untyped literal is still an evector (encrypted), and still works.
-- (Its plan shows ciphertext, different on every run: only its shape.)
CREATE FUNCTION qv_plan(stmt text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	line text;
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF, VERBOSE) ' || stmt LOOP
		RETURN NEXT regexp_replace(line, '''vecphi:[^'']*''', '<ciphertext>');
	END LOOP;
END
$$;
SELECT qv_plan($$SELECT id FROM qv_docs ORDER BY emb <-> '[1,2,0.5]' LIMIT 5$$);
SELECT array_agg(id) = (SELECT ids FROM qv_exact) AS untyped_matches_exact FROM (
	SELECT id FROM qv_docs ORDER BY emb <-> '[1,2,0.5]' LIMIT 5) s;
-- hosp_b's rows never come back, whatever the query's type.
SELECT count(*) FILTER (WHERE tenant <> 'hosp_a') AS other_tenant_rows FROM (
	SELECT tenant FROM qv_docs ORDER BY emb <-> '[1.5,2,0.5]'::evector_query LIMIT 20) s;
-- Wrong dimension against the index: 22000.
SELECT expect_error($$SELECT id FROM qv_docs ORDER BY emb <-> '[1,2]'::evector_query LIMIT 5$$) AS index_dim_mismatch;
-- A NULL query returns rows in no particular order, as for evector.
SELECT count(*) AS null_query_rows FROM (
	SELECT id FROM qv_docs ORDER BY emb <-> NULL::evector_query LIMIT 5) s;
COMMIT;

-- Without claims the index scan refuses, as for evector.
SET enable_seqscan = off;
SELECT expect_error($$SELECT id FROM qv_docs ORDER BY emb <-> '[1,2,0.5]'::evector_query LIMIT 5$$) AS scan_no_claims;
RESET enable_seqscan;

-- Prepared statements with the parameter types drivers send, custom and
-- generic plans (the extended protocol's Parse/Bind take the same path).
PREPARE qv_real(real[]) AS SELECT id FROM qv_docs ORDER BY emb <-> $1 LIMIT 5;
PREPARE qv_float8(float8[]) AS SELECT id FROM qv_docs ORDER BY emb <-> $1 LIMIT 5;
PREPARE qv_query(evector_query) AS SELECT id FROM qv_docs ORDER BY emb <-> $1 LIMIT 5;
PREPARE qv_unknown AS SELECT id FROM qv_docs ORDER BY emb <-> $1 LIMIT 5;
SELECT name, parameter_types FROM pg_prepared_statements WHERE name LIKE 'qv\_%' ORDER BY 1;
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL enable_seqscan = off;
SET LOCAL plan_cache_mode = force_generic_plan;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE qv_real('{1,2,0.5}');
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE qv_float8('{1,2,0.5}');
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE qv_query('[1,2,0.5]');
COMMIT;
-- The rows they return, through a function (EXECUTE is no subquery).
CREATE FUNCTION qv_run(stmt text) RETURNS int[] LANGUAGE plpgsql AS $$
DECLARE
	r int[];
	i int;
BEGIN
	r := '{}';
	FOR i IN EXECUTE stmt LOOP
		r := r || i;
	END LOOP;
	RETURN r;
END
$$;
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL enable_seqscan = off;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT qv_run($$EXECUTE qv_real('{1,2,0.5}')$$) = ids AS generic_real,
	qv_run($$EXECUTE qv_float8('{1,2,0.5}')$$) = ids AS generic_float8,
	qv_run($$EXECUTE qv_query('[1,2,0.5]')$$) = ids AS generic_query,
	qv_run($$EXECUTE qv_unknown('[1,2,0.5]')$$) = ids AS generic_unknown
FROM qv_exact;
SET LOCAL plan_cache_mode = force_custom_plan;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE qv_real('{1,2,0.5}');
SELECT qv_run($$EXECUTE qv_real('{1,2,0.5}')$$) = ids AS custom_real,
	qv_run($$EXECUTE qv_float8('{1,2,0.5}')$$) = ids AS custom_float8,
	qv_run($$EXECUTE qv_query('[1,2,0.5]')$$) = ids AS custom_query
FROM qv_exact;
-- Bad parameters: clear errors, nothing returned.
SELECT expect_error($$EXECUTE qv_real('{1,2}')$$) AS param_dim;
SELECT expect_error($$EXECUTE qv_real('{1,NULL,3}')$$) AS param_null;
SELECT expect_error($$EXECUTE qv_float8('{1,NaN,3}')$$) AS param_nan;
SELECT expect_error($$EXECUTE qv_real('{{1,2,3},{4,5,6}}')$$) AS param_2d;
COMMIT;
DEALLOCATE qv_real;
DEALLOCATE qv_float8;
DEALLOCATE qv_query;
DEALLOCATE qv_unknown;

---------------------------------------------------------------------------
-- The audit fingerprints the query the same way whichever type carried it
---------------------------------------------------------------------------
SELECT vecphi.audit_flush() >= 0 AS flushed;
CREATE TEMP TABLE qv_mark AS SELECT coalesce(max(seq), 0) AS seq FROM vecphi.audit_log;
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM qv_docs ORDER BY emb <-> '[1,2,0.5]'::evector LIMIT 3) s;
SELECT count(*) FROM (SELECT id FROM qv_docs ORDER BY emb <-> '[1,2,0.5]'::evector_query LIMIT 3) s;
SELECT count(*) FROM (SELECT id FROM qv_docs ORDER BY emb <-> ARRAY[1,2,0.5]::real[] LIMIT 3) s;
PREPARE qv_fp(float8[]) AS SELECT id FROM qv_docs ORDER BY emb <-> $1 LIMIT 3;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT cardinality(qv_run($$EXECUTE qv_fp('{1,2,0.5}')$$)) AS generic_rows;
-- A different query vector gets a different fingerprint.
SELECT count(*) FROM (SELECT id FROM qv_docs ORDER BY emb <-> '[2,2,0.5]'::evector_query LIMIT 3) s;
COMMIT;
DEALLOCATE qv_fp;
SELECT vecphi.audit_flush() >= 0 AS flushed;
-- Fingerprints as labels: 1 for the first seen, 2 for the next different one.
SELECT l.action, dense_rank() OVER (ORDER BY l.first_fp) AS fingerprint,
	l.query_fingerprint ~ '^[0-9a-f]{64}$' AS hex64, l.rows_returned
FROM (SELECT a.*, min(a.seq) OVER (PARTITION BY a.query_fingerprint) AS first_fp
	  FROM vecphi.audit_log a, qv_mark m
	  WHERE a.seq > m.seq AND a.backend_pid = pg_backend_pid()
		AND a.relation LIKE '%qv_docs') l
ORDER BY l.seq;

---------------------------------------------------------------------------
-- Binary input: pgvector's layout for evector_query, envelopes only for
-- evector and etext (22P03 otherwise), binary COPY round trips
---------------------------------------------------------------------------
-- A binary COPY of one bytea column carries its raw bytes, so these files
-- (in the data directory) hand crafted bytes to the receive functions.
CREATE FUNCTION qv_path(name text) RETURNS text LANGUAGE sql AS $$
	SELECT current_setting('data_directory') || '/' || name
$$;
CREATE FUNCTION qv_bytes_file(name text, hex text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('COPY (SELECT %L::bytea) TO %L (FORMAT binary)',
		decode(hex, 'hex'), qv_path(name));
	RETURN name;
END
$$;
CREATE FUNCTION qv_copy_in(tab text, name text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RETURN expect_error_detail(format('COPY %I FROM %L (FORMAT binary)', tab, qv_path(name)));
END
$$;
CREATE TEMP TABLE qv_q (q evector_query);
-- pgvector's binary vector [1,2,3]: int16 3, int16 0, big-endian float4s.
SELECT qv_bytes_file('qv_good.bin', '00030000' || '3f800000' || '40000000' || '40400000');
SELECT qv_copy_in('qv_q', 'qv_good.bin') AS good;
SELECT q, evector_query_send(q) FROM qv_q;
SELECT qv_bytes_file('qv_short.bin', '000300004000');
SELECT qv_copy_in('qv_q', 'qv_short.bin') AS short_values;
SELECT qv_bytes_file('qv_unused.bin', '00010001' || '3f800000');
SELECT qv_copy_in('qv_q', 'qv_unused.bin') AS unused_nonzero;
SELECT qv_bytes_file('qv_zero.bin', '00000000');
SELECT qv_copy_in('qv_q', 'qv_zero.bin') AS zero_dims;
SELECT qv_bytes_file('qv_big.bin', '7fff0000');
SELECT qv_copy_in('qv_q', 'qv_big.bin') AS too_many_dims;
SELECT qv_bytes_file('qv_nan.bin', '00010000' || '7fc00000');
SELECT qv_copy_in('qv_q', 'qv_nan.bin') AS nan_value;
SELECT qv_bytes_file('qv_hdr.bin', '0001');
SELECT qv_copy_in('qv_q', 'qv_hdr.bin') AS short_header;
SELECT count(*) AS rows_after_bad_input FROM qv_q;

-- A Float32Array or Buffer sent raw as an evector: 22P03, not "damaged".
CREATE TEMP TABLE qv_e (e evector);
SELECT qv_bytes_file('qv_f32.bin', '0000803f0000004000004040');
SELECT qv_copy_in('qv_e', 'qv_f32.bin') AS float32_as_evector;
SELECT qv_copy_in('qv_e', 'qv_good.bin') AS pgvector_as_evector;
CREATE TEMP TABLE qv_t (t etext);
SELECT qv_copy_in('qv_t', 'qv_f32.bin') AS float32_as_etext;
SELECT count(*) AS rows_after_bad_input FROM qv_e;
-- A real envelope whose tag is wrong reads in (it is well formed), and is
-- XX001 when decrypted: damaged or forged data, not bad input.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT qv_bytes_file('qv_forged.bin', encode(envelope_bytes(
	flip_byte(evector_out('[1,2,3]'::evector)::text, 40)), 'hex'));
SELECT qv_copy_in('qv_e', 'qv_forged.bin') AS forged_reads_in;
SELECT expect_error($$SELECT vecphi.decrypt(e) FROM qv_e$$) AS forged_envelope;
ROLLBACK;

-- Binary COPY out and back in of evector and etext columns round-trips.
CREATE TABLE qv_bin (id int, emb evector, body etext);
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO qv_bin VALUES (1, '[1,2,3]', 'first'), (2, '[4,5,6]', 'second'), (3, NULL, NULL);
COMMIT;
DO $$ BEGIN
	EXECUTE format('COPY qv_bin TO %L (FORMAT binary)', qv_path('qv_bin.copy'));
END $$;
CREATE TABLE qv_bin2 (LIKE qv_bin);
SELECT qv_copy_in('qv_bin2', 'qv_bin.copy') AS copy_in;
SELECT count(*) AS same_rows FROM qv_bin a JOIN qv_bin2 b ON a.id = b.id
WHERE a.emb::text IS NOT DISTINCT FROM b.emb::text AND a.body::text IS NOT DISTINCT FROM b.body::text;
BEGIN;
SELECT as_tenant('hosp_a');
SELECT id, vecphi.decrypt(emb), vecphi.decrypt(body) FROM qv_bin2 ORDER BY id;
COMMIT;

DROP TABLE qv_bin, qv_bin2, qv_docs;
DROP FUNCTION qv_run(text), qv_plan(text), qv_path(text), qv_bytes_file(text, text),
	qv_copy_in(text, text);
