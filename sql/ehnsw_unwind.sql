-- ehnsw_unwind: an index build, insert or scan that fails part-way unwinds
-- cleanly (no crash, the server keeps running, the next statement works),
-- and wipes what it decrypted.  A build fails deterministically on a row
-- whose ciphertext was tampered with (XX001), in the middle of the table.
CREATE TABLE unw_docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector(4));
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO unw_docs
SELECT i, 'hosp_a', format('[%s,%s,0,1]', i, i % 5)::evector FROM generate_series(1, 300) i;
COMMIT;
-- Row 150: one bit of its ciphertext flipped (the last byte, in the tag).
UPDATE unw_docs SET emb = flip_byte(emb::text,
	length(envelope_bytes(emb::text)) - 1)::evector WHERE id = 150;

-- The build fails on that row, in memory and with a graph spilled to disk.
SELECT expect_error($$CREATE INDEX unw_emb ON unw_docs USING ehnsw (emb)$$) AS build_in_memory;
SET maintenance_work_mem = '1MB';
SELECT expect_error($$CREATE INDEX unw_emb ON unw_docs USING ehnsw (emb)$$) AS build_small_memory;
RESET maintenance_work_mem;
-- The same without a subtransaction around it: the error ends the statement.
CREATE INDEX unw_emb ON unw_docs USING ehnsw (emb);
SELECT 'still connected' AS after_failed_build;

-- A cancelled build, REINDEX and REINDEX CONCURRENTLY (statement_timeout
-- in the middle of the graph construction) unwind too.  20,000 rows take
-- far longer than the timeout to index.
BEGIN;
SELECT as_tenant('hosp_a');
UPDATE unw_docs SET emb = '[150,0,0,1]' WHERE id = 150;
INSERT INTO unw_docs
SELECT i, 'hosp_a', format('[%s,%s,0,1]', i, i % 5)::evector FROM generate_series(301, 20000) i;
COMMIT;
SET statement_timeout = '20ms';
CREATE INDEX unw_emb ON unw_docs USING ehnsw (emb);
RESET statement_timeout;
SELECT 'still connected' AS after_cancelled_build;
SET maintenance_work_mem = '1MB';
SET statement_timeout = '20ms';
CREATE INDEX unw_emb ON unw_docs USING ehnsw (emb);
RESET statement_timeout;
RESET maintenance_work_mem;
SELECT 'still connected' AS after_cancelled_small_build;
CREATE INDEX unw_emb ON unw_docs USING ehnsw (emb);
SET statement_timeout = '20ms';
REINDEX INDEX unw_emb;
RESET statement_timeout;
SELECT 'still connected' AS after_cancelled_reindex;
SET statement_timeout = '20ms';
REINDEX INDEX CONCURRENTLY unw_emb;
RESET statement_timeout;
SELECT 'still connected' AS after_cancelled_reindex_concurrently;
-- A cancelled VACUUM (its graph repair decrypts neighbours) and a
-- cancelled insert of many rows into the index unwind too, and the index
-- stays consistent.
REINDEX INDEX unw_emb;
DELETE FROM unw_docs WHERE id % 3 = 0;
-- (No CONTEXT line: which phase the timeout hits depends on timing.)
\set SHOW_CONTEXT never
SET statement_timeout = '20ms';
VACUUM unw_docs;
RESET statement_timeout;
\set SHOW_CONTEXT errors
SELECT 'still connected' AS after_cancelled_vacuum;
VACUUM unw_docs;
SELECT vecphi.index_check('unw_emb') AS index_ok_after_vacuum;
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL statement_timeout = '20ms';
INSERT INTO unw_docs
SELECT i, 'hosp_a', format('[%s,%s,0,1]', i, i % 5)::evector FROM generate_series(30001, 40000) i;
ROLLBACK;
SELECT 'still connected' AS after_cancelled_insert;
SELECT vecphi.index_check('unw_emb') AS index_ok_after_insert;
DROP TABLE unw_docs;
