-- ehnsw_shred_vacuum: VACUUM after a tenant was crypto-shredded.
--
-- A shredded tenant's vectors cannot be decrypted, so VACUUM cannot choose
-- new neighbours for its elements; but it frees the slots of its deleted
-- elements, and another tenant's inserts reuse them.  A link left pointing
-- at such a slot would join two tenants' graphs (or point at nothing), so
-- VACUUM must still take the links to deleted elements out of the shredded
-- tenant's lists, which needs no key.

SELECT vecphi.create_tenant('shv_a') > 0 AS shv_a, vecphi.create_tenant('shv_b') > 0 AS shv_b;
CREATE TABLE shv (id int PRIMARY KEY, tenant text NOT NULL, emb evector(3))
	WITH (autovacuum_enabled = off);
BEGIN;
SELECT as_tenant('shv_a');
INSERT INTO shv
SELECT i, 'shv_a', format('[%s,%s,%s]', i % 7 + i * 0.001, i / 7, i % 3)::evector
FROM generate_series(1, 120) i;
COMMIT;
CREATE INDEX shv_idx ON shv USING ehnsw (emb) WITH (m = 4);
SELECT vecphi.index_check('shv_idx');

-- Half of shv_a's rows go, then the tenant is shredded, then VACUUM.
DELETE FROM shv WHERE id % 2 = 0;
SELECT vecphi.shred_tenant('shv_a') > 0 AS shredded;
VACUUM shv;
SELECT vecphi.index_check('shv_idx') AS after_vacuum;

-- shv_b's rows reuse the freed slots; no edge joins the two tenants.
BEGIN;
SELECT as_tenant('shv_b');
INSERT INTO shv
SELECT i, 'shv_b', format('[%s,%s,%s]', i % 7 + i * 0.001, i / 7 - 140, i % 3)::evector
FROM generate_series(1001, 1120) i;
COMMIT;
SELECT vecphi.index_check('shv_idx') AS after_reuse;
BEGIN;
SELECT as_tenant('shv_b');
SET LOCAL enable_seqscan = off;
SELECT count(*) AS shv_b_found FROM (
	SELECT id FROM shv ORDER BY emb <-> '[3,3,1]' LIMIT 200) s;
COMMIT;
