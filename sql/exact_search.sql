-- exact_search: nearest-neighbour queries without an index (a sequential
-- scan and a sort on the distance) over a table shared by two tenants.
-- A claimant finds its own rows in the right order, by tenant filter or
-- by row-level security; a query that touches the other tenant's rows
-- fails (42501) instead of computing with them.
--
-- Against the query [1,0,0,0] hosp_a's rows are, nearest first:
--   <->  1 (0.141), 4 (0.866), 3 (1.414), 6 (1.732), 2 (2), 5 (3)
--   <=>  2 (0), 1 (0.006), 4 (0.423), 6 (0.5), 3 (1), 5 (2)
--   <#>  2 (-3), 6 (-1), 1 (-0.9), 4 (-0.5), 3 (0), 5 (2)
-- and hosp_b's: <-> 101 (0), 103 (0.05), 102 (2).  Row 7 ([1,0,0,0.01],
-- hosp_a) is added under row-level security and is then hosp_a's nearest.

\pset null '<null>'

CREATE TABLE notes (
	id int PRIMARY KEY,
	tenant text NOT NULL DEFAULT vecphi.tenant(),
	body etext,
	embedding evector(4)
);
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO notes (id, body, embedding) VALUES
	(1, 'a1 chest pain', '[0.9,0.1,0,0]'),
	(2, 'a2 troponin negative', '[3,0,0,0]'),
	(3, 'a3 fractured wrist', '[0,1,0,0]'),
	(4, 'a4 follow-up', '[0.5,0.5,0.5,0]'),
	(5, 'a5 allergies', '[-2,0,0,0]'),
	(6, 'a6 discharge', '[1,1,1,1]');
COMMIT;
BEGIN;
SELECT as_tenant('hosp_b');
INSERT INTO notes (id, body, embedding) VALUES
	(101, 'b1 ST elevation', '[1,0,0,0]'),
	(102, 'b2 diabetes review', '[3,0,0,0]'),
	(103, 'b3 ankle sprain', '[0.95,0,0,0]');
COMMIT;
SELECT tenant, count(*), min(vecphi.key_id(embedding)), max(vecphi.key_id(body))
FROM notes GROUP BY tenant ORDER BY tenant;

-- ANALYZE and VACUUM work on encrypted columns, and the statistics keep no
-- values of them (no equality or ordering operators, so no most common
-- values and no histogram; they would only be ciphertext anyway).
ANALYZE notes;
VACUUM notes;
SELECT attname, null_frac, n_distinct, most_common_vals IS NULL AS no_mcv,
	histogram_bounds IS NULL AS no_histogram
FROM pg_stats WHERE tablename = 'notes' AND attname IN ('body', 'embedding')
ORDER BY attname;

---------------------------------------------------------------------------
-- Filtered by the tenant claim (as a superuser: no RLS).
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('hosp_a');
SELECT id, vecphi.decrypt(body) AS body,
	round((embedding <-> '[1,0,0,0]')::numeric, 6) AS distance
FROM notes WHERE tenant = vecphi.tenant()
ORDER BY embedding <-> '[1,0,0,0]' LIMIT 3;
SELECT id, round((embedding <=> '[1,0,0,0]')::numeric, 6) AS distance
FROM notes WHERE tenant = vecphi.tenant()
ORDER BY embedding <=> '[1,0,0,0]' LIMIT 3;
SELECT id, round((embedding <#> '[1,0,0,0]')::numeric, 6) AS distance
FROM notes WHERE tenant = vecphi.tenant()
ORDER BY embedding <#> '[1,0,0,0]' LIMIT 3;
-- The whole ordering, with the function forms.
SELECT array_agg(id ORDER BY l2_distance(embedding, '[1,0,0,0]')) AS by_l2,
	array_agg(id ORDER BY cosine_distance(embedding, '[1,0,0,0]')) AS by_cosine,
	array_agg(id ORDER BY -inner_product(embedding, '[1,0,0,0]')) AS by_ip
FROM notes WHERE tenant = vecphi.tenant();
-- Farthest first, and a distance threshold.
SELECT id FROM notes WHERE tenant = vecphi.tenant()
ORDER BY embedding <-> '[1,0,0,0]' DESC LIMIT 2;
-- (SQL does not promise to test the tenant before the distance in one
-- WHERE clause, so the tenant filter goes in a subquery the planner keeps
-- apart; row-level security, below, does this by itself.)
SELECT id FROM (SELECT * FROM notes WHERE tenant = vecphi.tenant() OFFSET 0) AS mine
WHERE embedding <-> '[1,0,0,0]' < 1.5 ORDER BY id;
-- The query vector from a row: neighbours of note 4.
SELECT n.id FROM notes n, notes q
WHERE q.id = 4 AND n.tenant = vecphi.tenant() AND n.id <> q.id
ORDER BY n.embedding <-> q.embedding LIMIT 3;
COMMIT;

BEGIN;
SELECT as_tenant('hosp_b');
SELECT id, vecphi.decrypt(body) AS body,
	round((embedding <-> '[1,0,0,0]')::numeric, 6) AS distance
FROM notes WHERE tenant = vecphi.tenant()
ORDER BY embedding <-> '[1,0,0,0]' LIMIT 3;
COMMIT;

-- Without the filter (and no RLS), the scan reaches the other tenant's rows
-- and fails closed rather than ranking them.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT expect_error($$SELECT id FROM notes ORDER BY embedding <-> '[1,0,0,0]' LIMIT 3$$) AS unfiltered_l2;
SELECT expect_error($$SELECT id FROM notes ORDER BY embedding <=> '[1,0,0,0]' LIMIT 1$$) AS unfiltered_cosine;
SELECT expect_error($$SELECT vecphi.decrypt(body) FROM notes$$) AS unfiltered_decrypt;
SELECT expect_error($$SELECT id FROM notes WHERE embedding <-> '[1,0,0,0]' < 0.5$$) AS unfiltered_threshold;
COMMIT;
-- No claims: nothing at all.
SELECT expect_error($$SELECT id FROM notes ORDER BY embedding <-> (SELECT embedding FROM notes WHERE id = 1) LIMIT 3$$) AS no_claims;

---------------------------------------------------------------------------
-- Row-level security, forced, for a role that is not a superuser.
---------------------------------------------------------------------------
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON notes
	USING (tenant = vecphi.tenant())
	WITH CHECK (tenant = vecphi.tenant());
CREATE ROLE regress_vecphi_reader NOLOGIN;
GRANT USAGE ON SCHEMA public TO regress_vecphi_reader;
GRANT SELECT, INSERT ON notes TO regress_vecphi_reader;

SET ROLE regress_vecphi_reader;
-- Without claims no row is visible.
SELECT count(*) AS visible_without_claims FROM notes;
BEGIN;
SELECT as_tenant('hosp_a');
SELECT count(*) AS visible, array_agg(id ORDER BY id) AS ids FROM notes;
SELECT id, vecphi.decrypt(body) AS body FROM notes ORDER BY embedding <-> '[1,0,0,0]' LIMIT 3;
SELECT id FROM notes ORDER BY embedding <=> '[1,0,0,0]' LIMIT 3;
SELECT id FROM notes ORDER BY embedding <#> '[1,0,0,0]' LIMIT 3;
-- User predicates run after the policy, so they never see hosp_b's rows.
SELECT id FROM notes WHERE embedding <-> '[1,0,0,0]' < 1.5 ORDER BY id;
SELECT id FROM notes WHERE vecphi.decrypt(body) LIKE '%1%' ORDER BY id;
-- New rows get the claimant's tenant; another tenant's is refused.
INSERT INTO notes (id, body, embedding) VALUES (7, 'a7 new', '[1,0,0,0.01]');
SELECT expect_error($$INSERT INTO notes (id, tenant, body, embedding) VALUES (8, 'hosp_b', 'forged', '[1,0,0,0]')$$) AS insert_other_tenant;
SELECT id FROM notes ORDER BY embedding <-> '[1,0,0,0]' LIMIT 3;
COMMIT;
BEGIN;
SELECT as_tenant('hosp_b');
SELECT count(*) AS visible, array_agg(id ORDER BY id) AS ids FROM notes;
SELECT id, vecphi.decrypt(body) AS body FROM notes ORDER BY embedding <-> '[1,0,0,0]' LIMIT 3;
COMMIT;
-- A tenant with no rows sees none.
BEGIN;
SELECT as_tenant('hosp_d');
SELECT count(*) AS visible FROM notes;
SELECT id FROM notes ORDER BY embedding <-> '[1,0,0,0]' LIMIT 3;
COMMIT;

---------------------------------------------------------------------------
-- Prepared statements: the query vector is a parameter, encrypted when
-- the statement is executed, under the claims of that transaction.
---------------------------------------------------------------------------
PREPARE knn(evector) AS
	SELECT id FROM notes ORDER BY embedding <-> $1 LIMIT 2;
PREPARE knn_text(text) AS
	SELECT id FROM notes ORDER BY embedding <-> $1::evector LIMIT 2;
BEGIN;
SELECT as_tenant('hosp_a');
EXECUTE knn('[1,0,0,0]');
EXECUTE knn_text('[1,0,0,0]');
COMMIT;
BEGIN;
SELECT as_tenant('hosp_b');
EXECUTE knn('[1,0,0,0]');
EXECUTE knn_text('[1,0,0,0]');
COMMIT;
-- The same with a generic plan, reused across transactions and tenants.
SET plan_cache_mode = force_generic_plan;
BEGIN;
SELECT as_tenant('hosp_a');
EXECUTE knn('[1,0,0,0]');
EXECUTE knn('[0,0,1,0]');
COMMIT;
BEGIN;
SELECT as_tenant('hosp_b');
EXECUTE knn('[1,0,0,0]');
COMMIT;
RESET plan_cache_mode;
-- A literal in the statement text, by contrast, is encrypted once, when the
-- statement is prepared, under the claims of that moment: for another
-- tenant it fails closed rather than using hosp_a's query vector.
BEGIN;
SELECT as_tenant('hosp_a');
PREPARE knn_literal AS
	SELECT id FROM notes ORDER BY embedding <-> '[1,0,0,0]' LIMIT 2;
EXECUTE knn_literal;
COMMIT;
BEGIN;
SELECT as_tenant('hosp_b');
SELECT expect_error($$EXECUTE knn_literal$$) AS literal_other_tenant;
COMMIT;
DEALLOCATE knn_literal;
-- Without claims, executing fails: the parameter cannot be encrypted.
SELECT expect_error($$EXECUTE knn('[1,0,0,0]')$$) AS execute_without_claims;
DEALLOCATE knn;
DEALLOCATE knn_text;
RESET ROLE;

DROP TABLE notes;
DROP OWNED BY regress_vecphi_reader;
DROP ROLE regress_vecphi_reader;
