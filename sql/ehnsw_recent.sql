-- ehnsw_recent: element pages read through this backend's recent-buffer
-- hints (src/ehnsw/ehnswvisit.c) are always the pages ReadBuffer() would
-- return.  One session searches the same blocks of different index files:
-- before and after REINDEX (a new relation file), after DROP and CREATE
-- INDEX with other rows, after TRUNCATE, and in a temporary table's index
-- (local buffers, which never use the hints); each time the index scan
-- returns what an exact scan does.

CREATE TABLE rb (id int PRIMARY KEY, emb evector(3));
CREATE FUNCTION rb_knn(q text, use_index bool DEFAULT true, tab text DEFAULT 'rb')
RETURNS int[] LANGUAGE plpgsql AS $$
DECLARE
	result int[];
BEGIN
	IF use_index THEN
		SET LOCAL enable_seqscan = off;
		SET LOCAL enable_indexscan = on;
		EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM %I ORDER BY emb <-> %L::evector LIMIT 5) s',
			tab, q) INTO result;
	ELSE
		SET LOCAL enable_seqscan = on;
		SET LOCAL enable_indexscan = off;
		EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM %I WHERE emb IS NOT NULL ORDER BY emb <-> %L::evector, id LIMIT 5) s',
			tab, q) INTO result;
	END IF;
	RETURN result;
END
$$;

-- Rows on a nudged grid (no ties), one tenant.
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO rb
SELECT i, format('[%s,%s,%s]', i % 7 + i * 0.0011, (i / 7) % 7 + i * 0.0007, i % 3)::evector
FROM generate_series(1, 300) i;
COMMIT;
CREATE INDEX rb_idx ON rb USING ehnsw (emb) WITH (m = 8, ef_construction = 64);

BEGIN;
SELECT as_tenant('hosp_a');
SELECT rb_knn('[1,1,1]') = rb_knn('[1,1,1]', false) AS same_first,
	   rb_knn('[5,2,0]') = rb_knn('[5,2,0]', false) AS same_second;
COMMIT;

-- A new relation file: the blocks the hints name now belong to no index.
REINDEX INDEX rb_idx;
BEGIN;
SELECT as_tenant('hosp_a');
SELECT rb_knn('[1,1,1]') = rb_knn('[1,1,1]', false) AS same_after_reindex;
COMMIT;

-- Other rows in the same blocks of a new index.
DROP INDEX rb_idx;
DELETE FROM rb WHERE id % 2 = 0;
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO rb
SELECT i, format('[%s,%s,%s]', 6 - i % 7 + i * 0.0013, (i / 7) % 7 + i * 0.0005, i % 2)::evector
FROM generate_series(1001, 1150) i;
COMMIT;
CREATE INDEX rb_idx ON rb USING ehnsw (emb) WITH (m = 8, ef_construction = 64);
BEGIN;
SELECT as_tenant('hosp_a');
SELECT rb_knn('[1,1,1]') = rb_knn('[1,1,1]', false) AS same_after_recreate,
	   rb_knn('[5,2,0]') = rb_knn('[5,2,0]', false) AS same_second_after_recreate;
COMMIT;

-- TRUNCATE empties the index (a new relation file, again).
TRUNCATE rb;
BEGIN;
SELECT as_tenant('hosp_a');
SELECT rb_knn('[1,1,1]') IS NULL AS empty_after_truncate;
INSERT INTO rb VALUES (1, '[1,1,1]'), (2, '[2,2,2]'), (3, '[9,9,9]');
SELECT rb_knn('[1,1,1]') AS after_truncate;
COMMIT;

-- A temporary table's index lives in local buffers.
CREATE TEMP TABLE rb_temp (id int PRIMARY KEY, emb evector(3));
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO rb_temp
SELECT i, format('[%s,%s,%s]', i % 7 + i * 0.0011, (i / 7) % 7 + i * 0.0007, i % 3)::evector
FROM generate_series(1, 300) i;
COMMIT;
CREATE INDEX rb_temp_idx ON rb_temp USING ehnsw (emb) WITH (m = 8, ef_construction = 64);
BEGIN;
SELECT as_tenant('hosp_a');
SELECT rb_knn('[1,1,1]', true, 'rb_temp') = rb_knn('[1,1,1]', false, 'rb_temp') AS same_temp;
COMMIT;

DROP TABLE rb_temp;
DROP TABLE rb;
DROP FUNCTION rb_knn(text, bool, text);
