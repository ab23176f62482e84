-- ehnsw: the HNSW index over encrypted vectors, as SQL sees it.
--
-- Checks each operator class against an exact scan, the per-tenant graphs
-- (a scan never returns another tenant's row, RLS or not), NULLs, zero
-- vectors under cosine, dimension limits, option and setting ranges,
-- empty tables, TRUNCATE, REINDEX, VACUUM, the planner's choice, and the
-- structure checker.  Plans are forced with enable_seqscan so that the
-- small tables here still use the index.

\pset null '<null>'

CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector(3));

-- Rows of both tenants, on a small grid nudged so that no two rows are at
-- the same distance from the queries below (ties would make the order of
-- equal rows, not the index, decide the results).
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO docs
SELECT i, 'hosp_a', format('[%s,%s,%s]', i % 5 + i * 0.0011, (i / 5) % 5 + i * 0.0007, i % 3)::evector
FROM generate_series(1, 60) i;
INSERT INTO docs VALUES (61, 'hosp_a', NULL), (62, 'hosp_a', '[0,0,0]');
COMMIT;
BEGIN;
SELECT as_tenant('hosp_b');
INSERT INTO docs
SELECT i, 'hosp_b', format('[%s,%s,%s]', (i % 5) + 0.5 + i * 0.0011, (i / 5) % 5 + i * 0.0007, i % 3)::evector
FROM generate_series(101, 160) i;
COMMIT;

CREATE INDEX docs_l2 ON docs USING ehnsw (emb evector_l2_ops);
SELECT vecphi.index_check('docs_l2');

-- The index holds ciphertext only and pages of its own kind.
SELECT amname FROM pg_am WHERE amname = 'ehnsw';
SELECT opcname FROM pg_opclass
WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'ehnsw') ORDER BY 1;

-- The planner uses the index for ORDER BY ... LIMIT, never without ORDER BY.
-- (A generic plan shows $1 instead of the query's ciphertext, which differs
-- on every run.)
PREPARE nearest(evector) AS SELECT id FROM docs ORDER BY emb <-> $1 LIMIT 5;
PREPARE nearest_cos(evector) AS SELECT id FROM docs ORDER BY emb <=> $1 LIMIT 5;
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL enable_seqscan = off;
SET LOCAL plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE nearest('[1,1,1]');
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE emb IS NOT NULL;
COMMIT;

-- Same rows, same order as an exact scan, for the claimant's tenant only:
-- no WHERE clause, no row-level security, and hosp_b's rows never appear.
CREATE FUNCTION knn(q text, k int, op text DEFAULT '<->', use_index bool DEFAULT true)
RETURNS int[] LANGUAGE plpgsql AS $$
DECLARE
	result int[];
BEGIN
	IF use_index THEN
		SET LOCAL enable_seqscan = off;
		SET LOCAL enable_indexscan = on;
		EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM docs ORDER BY emb %s %L::evector LIMIT %s) s',
			op, q, k) INTO result;
	ELSE
		SET LOCAL enable_seqscan = on;
		SET LOCAL enable_indexscan = off;
		EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM docs WHERE tenant = vecphi.tenant() AND emb IS NOT NULL ORDER BY emb %s %L::evector, id LIMIT %s) s',
			op, q, k) INTO result;
	END IF;
	RETURN result;
END
$$;

BEGIN;
SELECT as_tenant('hosp_a');
SELECT knn('[1,1,1]', 5) AS index_scan, knn('[1,1,1]', 5, use_index => false) AS exact_scan;
SELECT knn('[4,4,0]', 3) AS index_scan, knn('[4,4,0]', 3, use_index => false) AS exact_scan;
SELECT bool_and(id <= 62) AS only_hosp_a FROM unnest(knn('[1,1,1]', 100)) id;
COMMIT;
BEGIN;
SELECT as_tenant('hosp_b');
SELECT knn('[1.5,1,1]', 5) AS index_scan, knn('[1.5,1,1]', 5, use_index => false) AS exact_scan;
SELECT bool_and(id > 100) AS only_hosp_b, count(*) FROM unnest(knn('[1,1,1]', 100)) id;
COMMIT;

-- A tenant without rows in the index gets nothing; the query itself must
-- be the claimant's, and there must be claims.
SELECT vecphi.create_tenant('hosp_noidx') > 0 AS created;
BEGIN;
SELECT as_tenant('hosp_noidx');
SELECT knn('[1,1,1]', 5) AS hosp_noidx_sees;
COMMIT;
BEGIN;
SELECT as_tenant('hosp_b');
CREATE TEMP TABLE b_query AS SELECT '[1,1,1]'::evector AS q;
COMMIT;
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL enable_seqscan = off;
SELECT expect_error('SELECT id FROM docs ORDER BY emb <-> (SELECT q FROM b_query) LIMIT 1');
COMMIT;
BEGIN;
SET LOCAL enable_seqscan = off;
SELECT expect_error('SELECT id FROM docs ORDER BY emb <-> (SELECT q FROM b_query) LIMIT 1');
COMMIT;

-- LIMIT beyond ef_search, and a filter that discards most rows: the scan
-- goes on past ef_search and still fills the LIMIT.
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL vecphi.ef_search = 5;
SET LOCAL enable_seqscan = off;
SELECT count(*) AS rows_past_ef_search FROM (SELECT id FROM docs ORDER BY emb <-> '[1,1,1]' LIMIT 40) s;
SELECT array_agg(id) AS filtered FROM (SELECT id FROM docs WHERE id % 10 = 0 ORDER BY emb <-> '[0,0,0]' LIMIT 4) s;
SET LOCAL vecphi.scan_budget = 0;
SELECT count(*) AS no_budget FROM (SELECT id FROM docs ORDER BY emb <-> '[1,1,1]' LIMIT 40) s;
COMMIT;

-- Cosine: the zero vector has no direction, so it is not in the graph (as
-- in pgvector), and a zero query finds nothing.
CREATE INDEX docs_cos ON docs USING ehnsw (emb evector_cosine_ops);
SELECT vecphi.index_check('docs_cos');
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL enable_seqscan = off;
SET LOCAL plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE nearest_cos('[1,1,1]');
SELECT count(*) AS zero_vector_found FROM (SELECT id FROM docs ORDER BY emb <=> '[1,0,0]' LIMIT 100) s WHERE id = 62;
SELECT count(*) AS zero_query FROM (SELECT id FROM docs ORDER BY emb <=> '[0,0,0]' LIMIT 3) s;
SELECT round((emb <=> '[1,0,0]')::numeric, 6) AS nearest_cosine FROM docs ORDER BY emb <=> '[1,0,0]' LIMIT 1;
COMMIT;
DROP INDEX docs_cos;

-- Inner product.
CREATE INDEX docs_ip ON docs USING ehnsw (emb evector_ip_ops) WITH (m = 4, ef_construction = 16);
SELECT vecphi.index_check('docs_ip');
BEGIN;
SELECT as_tenant('hosp_a');
SELECT knn('[1,2,3]', 3, '<#>') AS index_scan, knn('[1,2,3]', 3, '<#>', false) AS exact_scan;
COMMIT;
DROP INDEX docs_ip;

-- New rows, deletes and VACUUM keep the index consistent.
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO docs VALUES (63, 'hosp_a', '[2.2,2.2,1]'), (64, 'hosp_a', '[2.3,2.2,1]');
SELECT knn('[2.2,2.2,1]', 2) AS new_rows_found;
COMMIT;
DELETE FROM docs WHERE id IN (63, 7, 12) OR id BETWEEN 120 AND 140;
VACUUM docs;
SELECT vecphi.index_check('docs_l2');
BEGIN;
SELECT as_tenant('hosp_a');
SELECT knn('[2.2,2.2,1]', 3) AS index_scan, knn('[2.2,2.2,1]', 3, use_index => false) AS exact_scan;
COMMIT;

-- VACUUM frees the space of deleted elements and new rows reuse it:
-- replacing hosp_b's 60 rows (about two pages of elements) by 45 new ones
-- does not grow the index (without reuse they would need more than a new
-- page).  Not 60: each element's level is random, and a few more upper
-- levels than before would need more room than the 60 freed.  hosp_b's
-- graph empties and starts again.
SELECT pg_relation_size('docs_l2') AS size_before \gset
DELETE FROM docs WHERE tenant = 'hosp_b';
-- VACUUM can only remove rows no snapshot still sees: wait until the audit
-- writer has committed this session's records and no other process holds
-- a snapshot (on a loaded machine the writer's transaction sometimes
-- overlapped the VACUUM, which then kept the rows and freed nothing).
DO $$
BEGIN
	PERFORM vecphi.audit_flush();
	FOR i IN 1..600 LOOP
		EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity
							  WHERE pid <> pg_catalog.pg_backend_pid()
							  AND backend_xmin IS NOT NULL);
		PERFORM pg_catalog.pg_sleep(0.05);
	END LOOP;
END $$;
VACUUM docs;
SELECT vecphi.index_check('docs_l2');
BEGIN;
SELECT as_tenant('hosp_b');
SELECT knn('[1,1,1]', 5) AS hosp_b_after_delete;
INSERT INTO docs
SELECT i, 'hosp_b', format('[%s,%s,%s]', i % 5 + i * 0.0013, (i / 5) % 5 + i * 0.0005, i % 3)::evector
FROM generate_series(201, 245) i;
SELECT knn('[1,1,1]', 5) AS index_scan, knn('[1,1,1]', 5, use_index => false) AS exact_scan;
COMMIT;
SELECT pg_relation_size('docs_l2') <= :size_before AS space_reused;
SELECT vecphi.index_check('docs_l2');

-- Options and settings: ranges and clear errors.
SELECT expect_error('CREATE INDEX ON docs USING ehnsw (emb) WITH (m = 1)');
SELECT expect_error('CREATE INDEX ON docs USING ehnsw (emb) WITH (m = 101)');
SELECT expect_error('CREATE INDEX ON docs USING ehnsw (emb) WITH (ef_construction = 3)');
SELECT expect_error('CREATE INDEX ON docs USING ehnsw (emb) WITH (ef_construction = 1001)');
SELECT expect_error('CREATE INDEX ON docs USING ehnsw (emb) WITH (m = 40, ef_construction = 64)');
SELECT expect_error('CREATE INDEX ON docs USING ehnsw (emb) WITH (lists = 4)');
SELECT expect_error('SET vecphi.ef_search = 0');
SELECT expect_error('SET vecphi.ef_search = 1001');
SELECT expect_error('SET vecphi.scan_budget = -1');
SET vecphi.ef_search = 100;
SHOW vecphi.ef_search;
RESET vecphi.ef_search;

-- Columns the index cannot take.
CREATE TABLE nodims (emb evector);
SELECT expect_error('CREATE INDEX ON nodims USING ehnsw (emb)');
CREATE TABLE big (emb evector(2000));
SELECT expect_error('CREATE INDEX ON big USING ehnsw (emb)');
CREATE TABLE fits (emb evector(1900));
CREATE INDEX ON fits USING ehnsw (emb);
CREATE TABLE twocols (a evector(3), b evector(3));
SELECT expect_error('CREATE INDEX ON twocols USING ehnsw (a, b)');
CREATE TABLE plain (v real[]);
SELECT expect_error('CREATE INDEX ON plain USING ehnsw (v)');
DROP TABLE nodims, big, fits, twocols, plain;

-- Empty tables, TRUNCATE and REINDEX.
CREATE TABLE empty_docs (id int, emb evector(3));
CREATE INDEX empty_idx ON empty_docs USING ehnsw (emb);
SELECT vecphi.index_check('empty_idx');
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL enable_seqscan = off;
SELECT count(*) AS from_empty FROM (SELECT id FROM empty_docs ORDER BY emb <-> '[1,1,1]' LIMIT 5) s;
INSERT INTO empty_docs VALUES (1, '[1,1,1]'), (2, '[2,2,2]');
SELECT array_agg(id) AS after_insert FROM (SELECT id FROM empty_docs ORDER BY emb <-> '[2,2,2]' LIMIT 5) s;
COMMIT;
TRUNCATE empty_docs;
SELECT vecphi.index_check('empty_idx');
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL enable_seqscan = off;
SELECT count(*) AS after_truncate FROM (SELECT id FROM empty_docs ORDER BY emb <-> '[1,1,1]' LIMIT 5) s;
INSERT INTO empty_docs VALUES (3, '[3,3,3]');
SELECT array_agg(id) AS after_truncate_insert FROM (SELECT id FROM empty_docs ORDER BY emb <-> '[1,1,1]' LIMIT 5) s;
COMMIT;
REINDEX INDEX docs_l2;
SELECT vecphi.index_check('docs_l2');
BEGIN;
SELECT as_tenant('hosp_a');
SELECT knn('[1,1,1]', 5) AS after_reindex, knn('[1,1,1]', 5, use_index => false) AS exact_scan;
COMMIT;

-- index_check refuses what is not an ehnsw index.
SELECT expect_error('SELECT vecphi.index_check(''docs_pkey'')');
SELECT expect_error('SELECT vecphi.index_check(''docs'')');

DROP TABLE empty_docs, b_query;
DROP FUNCTION knn(text, int, text, bool);
DEALLOCATE nearest;
DEALLOCATE nearest_cos;
DROP TABLE docs;
