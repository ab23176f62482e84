-- copy_load: COPY ... FROM STDIN into a protected table by a role its row
-- security applies to.  PostgreSQL refuses such a COPY ("COPY FROM not
-- supported with row-level security"); vecphi loads it row by row as
-- INSERTs (src/protect/copyload.c), so the policies' WITH CHECK, defaults
-- and constraints apply as to an INSERT.  Tenant ids and ciphertext differ
-- on every run and are never printed.  A COPY refused before its data is
-- read is run as \copy from /dev/null: psql before 15.20 runs the in-line
-- data after such a refusal as SQL, 15.20 skips it (CVE-2026-6464), and
-- the suite runs under both (the cassert mode builds its own server).

SELECT vecphi.create_tenant('cl_a') > 0 AS cl_a_created,
	vecphi.create_tenant('cl_b') > 0 AS cl_b_created;

CREATE ROLE regress_cl_owner NOLOGIN;
CREATE ROLE regress_cl_app NOLOGIN;
GRANT USAGE, CREATE ON SCHEMA public TO regress_cl_owner;
GRANT USAGE ON SCHEMA public TO regress_cl_app;

SET ROLE regress_cl_owner;
CREATE TABLE cl_notes (
	id int PRIMARY KEY,
	tenant text NOT NULL DEFAULT vecphi.tenant(),
	emb evector(3)
);
SELECT vecphi.protect('cl_notes', 'tenant');
GRANT SELECT, INSERT ON cl_notes TO regress_cl_app;
-- A table with row security that vecphi does not protect.
CREATE TABLE cl_plain (id int, v text);
ALTER TABLE cl_plain ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON cl_plain USING (true) WITH CHECK (true);
GRANT SELECT, INSERT ON cl_plain TO regress_cl_app;
RESET ROLE;

SET ROLE regress_cl_app;

-- Without claims: refused, nothing loaded.
COPY cl_notes (id, emb) FROM STDIN;
1	[1,0,0]
\.

-- Tenant A's claims: text format with a column list (the tenant column
-- takes its default, the claimant's tenant).
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('cl_a'))) IS NOT NULL AS claims_set;
COPY cl_notes (id, emb) FROM STDIN;
1	[1,0,0]
2	[0,1,0]
3	\N
\.
-- CSV, every column, a header.
COPY cl_notes FROM STDIN WITH (FORMAT csv, HEADER true);
id,tenant,emb
4,cl_a,"[0,0,1]"
5,cl_a,"[1,1,0]"
\.
SELECT id, tenant, emb IS NULL AS emb_null FROM cl_notes ORDER BY id;
-- The vectors went in under tenant A's key: the nearest to [0,1,0] is 2.
SELECT id FROM cl_notes WHERE emb IS NOT NULL ORDER BY emb <-> '[0,1,0]'::evector_query LIMIT 1;
COMMIT;

-- A row of tenant B in the middle: the policy refuses it, the whole COPY
-- is rolled back.
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('cl_a'))) IS NOT NULL AS claims_set;
COPY cl_notes FROM STDIN;
10	cl_a	[1,0,0]
11	cl_b	[1,0,0]
12	cl_a	[1,0,0]
\.
ROLLBACK;
-- A malformed value: the error's context names the line, not the value.
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('cl_a'))) IS NOT NULL AS claims_set;
COPY cl_notes (id, emb) FROM STDIN;
20	[1,0,0]
21	[1,0
\.
ROLLBACK;
-- A duplicate key: refused as an INSERT would be.
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('cl_a'))) IS NOT NULL AS claims_set;
COPY cl_notes (id, emb) FROM STDIN;
30	[1,0,0]
1	[1,0,0]
\.
ROLLBACK;
-- What PostgreSQL does not take over stays refused: WHERE, and a table
-- vecphi does not protect.
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('cl_a'))) IS NOT NULL AS claims_set;
\copy cl_notes (id, emb) FROM '/dev/null' WHERE id > 0
ROLLBACK;
\copy cl_plain FROM '/dev/null'
-- Tenant B sees none of A's rows.
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('cl_b'))) IS NOT NULL AS claims_set;
SELECT count(*) AS visible_to_b FROM cl_notes;
COMMIT;
RESET ROLE;

-- Identity, generated and dropped columns behave as in PostgreSQL's COPY:
-- an identity column takes a given value (even GENERATED ALWAYS) or its
-- sequence, a generated column is computed and cannot be listed, a dropped
-- column is not there.
SET ROLE regress_cl_owner;
CREATE TABLE cl_wide (
	id int PRIMARY KEY,
	dropme int,
	seq int GENERATED ALWAYS AS IDENTITY,
	tenant text NOT NULL DEFAULT vecphi.tenant(),
	twice int GENERATED ALWAYS AS (id * 2) STORED,
	emb evector(3)
);
ALTER TABLE cl_wide DROP COLUMN dropme;
SELECT vecphi.protect('cl_wide', 'tenant');
GRANT SELECT, INSERT ON cl_wide TO regress_cl_app;
RESET ROLE;
SET ROLE regress_cl_app;
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('cl_a'))) IS NOT NULL AS claims_set;
COPY cl_wide (id, emb) FROM STDIN;
1	[1,0,0]
2	[0,1,0]
\.
COPY cl_wide (id, seq, emb) FROM STDIN;
3	100	[0,0,1]
\.
-- No column list: every column but the generated and dropped ones.
COPY cl_wide FROM STDIN;
4	101	cl_a	[1,1,1]
\.
SELECT id, seq, tenant, twice, emb IS NULL AS emb_null FROM cl_wide ORDER BY id;
SAVEPOINT s;
\copy cl_wide (id, twice) FROM '/dev/null'
ROLLBACK TO s;
COMMIT;
RESET ROLE;

-- The superuser's COPY (row security does not apply) is PostgreSQL's own.
COPY cl_notes (id, tenant) FROM STDIN;
100	cl_b
\.
SELECT tenant, count(*) FROM cl_notes GROUP BY tenant ORDER BY tenant;

DROP TABLE cl_notes, cl_plain, cl_wide;
REVOKE ALL ON SCHEMA public FROM regress_cl_app;
DROP ROLE regress_cl_app;
REVOKE ALL ON SCHEMA public FROM regress_cl_owner;
DROP ROLE regress_cl_owner;
