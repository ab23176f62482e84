-- rls: row-level security tied to the verified claims, in the scenario of
-- the issue: two hospitals (tenants rls_a and rls_b) share one table and
-- one ehnsw index; three application roles see different categories of
-- rows of their own hospital only:
--
--   clinician   clinical, clinical_trial
--   billing     billing
--   researcher  clinical_trial
--
-- Each hospital has 200 rows: ids 1..200 (rls_a) and 1001..1200 (rls_b),
-- row i of a hospital in category
--   clinical_trial  when i % 10 = 0         (20 rows)
--   billing         when i % 10 in (1, 2)   (40 rows)
--   clinical        otherwise              (140 rows)
-- and the same grid of vectors for both (rls_b's nudged by 0.01), so the
-- other hospital's rows are always among the nearest, were they visible.
--
-- Everything that must be subject to row-level security runs as
-- regress_rls_app, a role that is not a superuser (superusers bypass RLS)
-- and does not own the table.  The table belongs to regress_rls_owner,
-- also not a superuser: FORCE ROW LEVEL SECURITY binds it too.
-- Tenant ids and ciphertext differ on every run and are never printed.

\pset null '<null>'

SELECT vecphi.create_tenant('rls_a') > 0 AS rls_a_created,
	vecphi.create_tenant('rls_b') > 0 AS rls_b_created;

CREATE ROLE regress_rls_owner NOLOGIN;
CREATE ROLE regress_rls_app NOLOGIN;
CREATE ROLE regress_rls_officer NOLOGIN IN ROLE vecphi_security_officer;
CREATE ROLE regress_rls_keyadmin NOLOGIN IN ROLE vecphi_key_admin;
GRANT USAGE, CREATE ON SCHEMA public TO regress_rls_owner;
GRANT USAGE ON SCHEMA public TO regress_rls_app, regress_rls_officer, regress_rls_keyadmin;

---------------------------------------------------------------------------
-- The claim functions: STABLE and PARALLEL SAFE, so that a policy can
-- evaluate them once per statement and parallel workers can run them.
---------------------------------------------------------------------------
SELECT p.proname, p.provolatile, p.proparallel, p.prosecdef
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'vecphi'
  AND p.proname IN ('tenant', 'app_role', 'subject', 'purpose', 'break_glass',
					'allowed_categories')
ORDER BY p.proname;

---------------------------------------------------------------------------
-- The table, protected.
---------------------------------------------------------------------------
SET ROLE regress_rls_owner;
CREATE TABLE charts (
	id int PRIMARY KEY,
	hospital text NOT NULL DEFAULT vecphi.tenant(),
	category text NOT NULL,
	note etext,
	embedding evector(4) NOT NULL
);
SELECT vecphi.protect('charts', 'hospital', 'category');
GRANT SELECT, INSERT, UPDATE, DELETE ON charts TO regress_rls_app;
RESET ROLE;

SELECT relname, relrowsecurity, relforcerowsecurity
FROM pg_class WHERE relname = 'charts';
-- One policy per command; claims are read through (SELECT ...), i.e. init
-- plans, once per statement; writes also require the claimant's ciphertext
-- in every evector and etext column.
SELECT policyname, permissive, roles, cmd, qual, with_check
FROM pg_policies WHERE tablename = 'charts' ORDER BY policyname;

-- protect() again (say, after adding a column) replaces its policies: the
-- same four, the same expressions.
SET ROLE regress_rls_owner;
SELECT vecphi.protect('charts', 'hospital', 'category');
RESET ROLE;
SELECT count(*) AS policies, count(DISTINCT policyname) AS distinct_names
FROM pg_policies WHERE tablename = 'charts';
SELECT policyname, qual, with_check
FROM pg_policies WHERE tablename = 'charts' ORDER BY policyname;

-- protect()'s argument errors.
CREATE TABLE rls_args (id int, tenant text, category varchar(20), n int, note etext);
SELECT expect_error($$SELECT vecphi.protect('rls_args', 'no_such_column')$$) AS missing_tenant_column;
SELECT expect_error($$SELECT vecphi.protect('rls_args', 'tenant', 'no_such_column')$$) AS missing_category_column;
SELECT expect_error_detail($$SELECT vecphi.protect('rls_args', 'n')$$) AS int_tenant_column;
SELECT expect_error($$SELECT vecphi.protect('rls_args', 'tenant', 'note')$$) AS etext_category_column;
SELECT expect_error($$SELECT vecphi.protect('rls_args', NULL)$$) AS null_tenant_column;
SELECT expect_error($$SELECT vecphi.protect('rls_args', NULL, 'category')$$) AS null_tenant_with_category;
SELECT expect_error($$SELECT vecphi.protect('no_such_table', 'tenant')$$) AS missing_table;
SELECT expect_error($$SELECT vecphi.protect(NULL, 'tenant')$$) AS null_table;
-- A failed protect() changed nothing.
SELECT relrowsecurity, relforcerowsecurity,
	(SELECT count(*) FROM pg_policy WHERE polrelid = 'rls_args'::regclass) AS policies
FROM pg_class WHERE oid = 'rls_args'::regclass;
-- Without a category column: tenant only; a varchar category column is fine.
SELECT vecphi.protect('rls_args', 'tenant');
SELECT policyname, qual FROM pg_policies WHERE tablename = 'rls_args' ORDER BY policyname;
SELECT vecphi.protect('rls_args', 'tenant', 'category');
SELECT count(*) AS policies FROM pg_policies WHERE tablename = 'rls_args';
-- Only the table's owner may protect it (or take the protection off).
GRANT SELECT ON rls_args TO regress_rls_app;
SET ROLE regress_rls_app;
SELECT expect_error($$SELECT vecphi.protect('charts', 'hospital', 'category')$$) AS app_protects_charts;
SELECT expect_error($$SELECT vecphi.protect('rls_args', 'tenant')$$) AS app_protects_rls_args;
SELECT expect_error($$ALTER TABLE charts DISABLE ROW LEVEL SECURITY$$) AS app_disables_rls;
SELECT expect_error($$ALTER TABLE charts NO FORCE ROW LEVEL SECURITY$$) AS app_unforces_rls;
SELECT expect_error($$DROP POLICY vecphi_select ON charts$$) AS app_drops_policy;
SELECT expect_error($$CREATE POLICY open_door ON charts USING (true)$$) AS app_adds_policy;
RESET ROLE;
DROP TABLE rls_args;

---------------------------------------------------------------------------
-- Role categories: the security officer alone manages them.
---------------------------------------------------------------------------
SET ROLE regress_rls_officer;
INSERT INTO vecphi.role_categories (app_role, category) VALUES
	('clinician', 'clinical'),
	('clinician', 'clinical_trial'),
	('billing', 'billing'),
	('billing', 'clinical_trial'),
	('researcher', 'clinical_triall');
-- Two mistakes, corrected: billing must not see clinical_trial, and a typo.
DELETE FROM vecphi.role_categories WHERE app_role = 'billing' AND category = 'clinical_trial'
RETURNING app_role, category;
UPDATE vecphi.role_categories SET category = 'clinical_trial'
WHERE app_role = 'researcher' AND category = 'clinical_triall'
RETURNING app_role, category;
SELECT app_role, array_agg(category ORDER BY category) AS categories
FROM vecphi.role_categories
WHERE app_role IN ('clinician', 'billing', 'researcher')
GROUP BY app_role ORDER BY app_role;
-- Empty names are refused.
SELECT expect_error($$INSERT INTO vecphi.role_categories VALUES ('', 'clinical')$$) AS empty_role;
SELECT expect_error($$INSERT INTO vecphi.role_categories VALUES ('billing', '')$$) AS empty_category;
-- The security officer manages grants, not keys.
SELECT expect_error($$SELECT vecphi.create_tenant('rls_officer_t')$$) AS officer_creates_tenant;
SELECT expect_error($$SELECT vecphi.rotate_dek('rls_a')$$) AS officer_rotates_dek;
SELECT expect_error($$SELECT count(*) FROM vecphi.keyring$$) AS officer_reads_keyring;
RESET ROLE;

-- An application role can neither read nor change the grants ...
SET ROLE regress_rls_app;
SELECT expect_error($$SELECT * FROM vecphi.role_categories$$) AS app_reads;
SELECT expect_error($$INSERT INTO vecphi.role_categories VALUES ('billing', 'clinical_trial')$$) AS app_inserts;
SELECT expect_error($$UPDATE vecphi.role_categories SET category = 'clinical_trial' WHERE app_role = 'billing'$$) AS app_updates;
SELECT expect_error($$DELETE FROM vecphi.role_categories$$) AS app_deletes;
SELECT expect_error($$TRUNCATE vecphi.role_categories$$) AS app_truncates;
-- ... nor manage keys.
SELECT expect_error($$SELECT vecphi.create_tenant('rls_app_t')$$) AS app_creates_tenant;
SELECT expect_error($$SELECT vecphi.rotate_kek('rls_a')$$) AS app_rotates_kek;
SELECT expect_error($$SELECT vecphi.rotate_dek('rls_a')$$) AS app_rotates_dek;
SELECT expect_error($$SELECT count(*) FROM vecphi.keyring$$) AS app_reads_keyring;
SELECT expect_error($$SELECT count(*) FROM vecphi.tenants$$) AS app_reads_tenants;
-- It sees its own role's grants through allowed_categories().
BEGIN;
SELECT as_tenant('rls_a', 'billing');
SELECT vecphi.allowed_categories() AS billing_categories;
SELECT as_tenant('rls_a', 'clinician');
SELECT vecphi.allowed_categories() AS clinician_categories;
SELECT as_tenant('rls_a', 'janitor');
SELECT vecphi.allowed_categories() AS unknown_role_categories;
COMMIT;
SELECT vecphi.allowed_categories() AS without_claims;
RESET ROLE;

-- The key administrator manages keys, not grants.
SET ROLE regress_rls_keyadmin;
SELECT vecphi.create_tenant('rls_c') > 0 AS rls_c_created;
SELECT vecphi.rotate_dek('rls_c') > 1 AS rls_c_dek_rotated;
SELECT count(*) AS rls_c_keys FROM vecphi.keyring k JOIN vecphi.tenants t USING (tenant_id)
WHERE t.tenant = 'rls_c';
SELECT expect_error($$INSERT INTO vecphi.role_categories VALUES ('billing', 'clinical_trial')$$) AS keyadmin_grants;
SELECT expect_error($$SELECT wrapped_dek FROM vecphi.keyring$$) AS keyadmin_reads_wrapped_keys;
RESET ROLE;

---------------------------------------------------------------------------
-- The rows, written by a superuser (no RLS) under each hospital's claims,
-- and an ehnsw index over both hospitals.
---------------------------------------------------------------------------
CREATE FUNCTION rls_category(i int) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN i % 10 = 0 THEN 'clinical_trial'
				WHEN i % 10 IN (1, 2) THEN 'billing'
				ELSE 'clinical' END
$$;
CREATE FUNCTION rls_vector(i int, nudge float8 DEFAULT 0) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT format('[%s,%s,%s,%s]', (i % 20) * 0.5 + i * 0.0013 + nudge,
		(i / 20) * 0.5 + i * 0.0007, (i % 7) * 0.1, (i % 3) * 0.05)
$$;
BEGIN;
SELECT as_tenant('rls_a');
INSERT INTO charts (id, hospital, category, note, embedding)
SELECT i, 'rls_a', rls_category(i), vecphi.encrypt(format('A %s note %s', rls_category(i), i)),
	rls_vector(i)::evector
FROM generate_series(1, 200) i;
COMMIT;
BEGIN;
SELECT as_tenant('rls_b');
INSERT INTO charts (id, hospital, category, note, embedding)
SELECT 1000 + i, 'rls_b', rls_category(i), vecphi.encrypt(format('B %s note %s', rls_category(i), i)),
	rls_vector(i, 0.01)::evector
FROM generate_series(1, 200) i;
COMMIT;
CREATE INDEX charts_embedding ON charts USING ehnsw (embedding evector_l2_ops);
SELECT vecphi.index_check('charts_embedding');
ANALYZE charts;
-- What is there (superuser's view).
SELECT hospital, category, count(*), min(id), max(id), min(vecphi.key_id(note)) AS note_key,
	min(vecphi.key_id(embedding)) AS embedding_key
FROM charts GROUP BY hospital, category ORDER BY hospital, category;

---------------------------------------------------------------------------
-- Who sees what: every hospital and role, with and without break-glass.
-- Counted by category, and the rows of another hospital (must be 0).
---------------------------------------------------------------------------
CREATE FUNCTION rls_visible(tenant text, role text, break_glass text DEFAULT NULL,
	OUT visible bigint, OUT clinical bigint, OUT clinical_trial bigint,
	OUT billing bigint, OUT other_hospital bigint)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM vecphi.set_claims(test_token(test_claims(tenant, role) ||
		CASE WHEN break_glass IS NULL THEN '{}'::jsonb
			 ELSE jsonb_build_object('break_glass', break_glass) END));
	SELECT count(*), count(*) FILTER (WHERE category = 'clinical'),
		count(*) FILTER (WHERE category = 'clinical_trial'),
		count(*) FILTER (WHERE category = 'billing'),
		count(*) FILTER (WHERE hospital IS DISTINCT FROM tenant)
	INTO visible, clinical, clinical_trial, billing, other_hospital
	FROM charts;
	PERFORM vecphi.clear_claims();
END
$$;
SET ROLE regress_rls_app;
BEGIN;
SELECT t AS tenant, r AS role, bg IS NOT NULL AS break_glass, v.*
FROM unnest(ARRAY['rls_a', 'rls_b', 'rls_c']) t,
	unnest(ARRAY['clinician', 'billing', 'researcher', 'janitor']) r,
	unnest(ARRAY[NULL, 'patient unconscious, no ID']) bg,
	LATERAL rls_visible(t, r, bg) v
ORDER BY t, r, bg NULLS FIRST;
COMMIT;
-- Without claims nothing is visible, whatever the role.
SELECT count(*) AS without_claims FROM charts;
RESET ROLE;

---------------------------------------------------------------------------
-- The clinician of rls_a reads its clinical notes; the billing
-- administrator of the same hospital does not see clinical_trial, though
-- it lives in the same table and the same index.
---------------------------------------------------------------------------
SET ROLE regress_rls_app;
BEGIN;
SELECT as_tenant('rls_a', 'clinician');
SELECT id, category, vecphi.decrypt(note) AS note FROM charts WHERE id IN (3, 10, 11, 1003) ORDER BY id;
SELECT as_tenant('rls_a', 'billing');
SELECT id, category, vecphi.decrypt(note) AS note FROM charts WHERE id IN (3, 10, 11, 1003) ORDER BY id;
SELECT count(*) AS billing_sees_clinical_trial FROM charts WHERE category = 'clinical_trial';
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- Exact search (no index) and index search return the same visible rows.
-- A large ef_search makes the index search exact, so the two lists must
-- be equal, order included.  The queries sit between both hospitals'
-- rows, so without RLS the other hospital's rows would be among them.
---------------------------------------------------------------------------
CREATE FUNCTION rls_knn_exact(q text, k int) RETURNS int[]
LANGUAGE plpgsql SET enable_indexscan = off SET enable_bitmapscan = off SET enable_seqscan = on AS $$
DECLARE
	result int[];
BEGIN
	EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM charts ORDER BY embedding <-> %L::evector LIMIT %s) s', q, k)
	INTO result;
	RETURN result;
END
$$;
CREATE FUNCTION rls_knn_index(q text, k int) RETURNS int[]
LANGUAGE plpgsql SET enable_seqscan = off SET enable_indexscan = on AS $$
DECLARE
	result int[];
BEGIN
	EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM charts ORDER BY embedding <-> %L::evector LIMIT %s) s', q, k)
	INTO result;
	RETURN result;
END
$$;
-- The plans.  Under RLS the planner picks the ehnsw index on its own,
-- the policy is a filter on the index scan, and each claim is an init plan
-- (evaluated once per statement).  (The query vector is cast from text at
-- run time, so the plan shows no ciphertext.)
SET ROLE regress_rls_app;
BEGIN;
SELECT as_tenant('rls_a', 'researcher');
EXPLAIN (COSTS OFF)
SELECT id FROM charts ORDER BY embedding <-> '[1,1,0,0]'::text::evector LIMIT 5;
-- The exact search.
SET LOCAL enable_indexscan = off;
EXPLAIN (COSTS OFF)
SELECT id FROM charts ORDER BY embedding <-> '[1,1,0,0]'::text::evector LIMIT 5;
COMMIT;
RESET ROLE;

SET vecphi.ef_search = 400;
CREATE FUNCTION rls_compare(tenant text, role text, q text, k int, break_glass text DEFAULT NULL,
	OUT exact_ids int[], OUT same_as_index boolean, OUT other_hospital_ids int)
LANGUAGE plpgsql AS $$
DECLARE
	index_ids int[];
BEGIN
	PERFORM vecphi.set_claims(test_token(test_claims(tenant, role) ||
		CASE WHEN break_glass IS NULL THEN '{}'::jsonb
			 ELSE jsonb_build_object('break_glass', break_glass) END));
	exact_ids := rls_knn_exact(q, k);
	index_ids := rls_knn_index(q, k);
	same_as_index := exact_ids IS NOT DISTINCT FROM index_ids;
	-- rls_a's ids are below 1000, rls_b's above.
	SELECT count(*) INTO other_hospital_ids
	FROM unnest(exact_ids || index_ids) i
	WHERE (i > 1000) <> (tenant = 'rls_b');
	PERFORM vecphi.clear_claims();
END
$$;
SET ROLE regress_rls_app;
BEGIN;
SELECT t AS tenant, r AS role, q, c.*
FROM unnest(ARRAY['rls_a', 'rls_b']) t,
	unnest(ARRAY['clinician', 'billing', 'researcher']) r,
	unnest(ARRAY['[1,1,0,0]', '[5,2.5,0.3,0.05]']) q,
	LATERAL rls_compare(t, r, q, 6) c
ORDER BY t, r, q;
-- Break-glass widens within the hospital: billing then finds clinical and
-- clinical_trial rows too, by either search, and still none of rls_b's.
SELECT t AS tenant, c.*
FROM unnest(ARRAY['rls_a', 'rls_b']) t,
	LATERAL rls_compare(t, 'billing', '[5,2.5,0.3,0.05]', 8, 'coding audit, ticket 17') c
ORDER BY t;
-- A hospital with no rows (rls_c) finds nothing, exact or index.
SELECT c.* FROM rls_compare('rls_c', 'clinician', '[1,1,0,0]', 5) c;
-- Everything visible, by either search: LIMIT above the visible count.
SELECT t AS tenant, r AS role, cardinality(c.exact_ids) AS found, c.same_as_index, c.other_hospital_ids
FROM unnest(ARRAY['rls_a', 'rls_b']) t,
	unnest(ARRAY['clinician', 'billing', 'researcher']) r,
	LATERAL rls_compare(t, r, '[1,1,0,0]', 1000) c
ORDER BY t, r;
COMMIT;
RESET vecphi.ef_search;
RESET ROLE;

---------------------------------------------------------------------------
-- Break-glass, directly: the billing administrator of rls_a reads a
-- clinical_trial note, but not rls_b's.
---------------------------------------------------------------------------
SET ROLE regress_rls_app;
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('rls_a', 'billing') ||
	'{"break_glass": "coding audit, ticket 17"}'));
SELECT vecphi.break_glass();
SELECT id, category, vecphi.decrypt(note) AS note FROM charts WHERE id IN (10, 1010) ORDER BY id;
SELECT count(*) AS visible, count(DISTINCT category) AS categories,
	count(*) FILTER (WHERE hospital <> 'rls_a') AS other_hospital
FROM charts;
-- Targeting rls_b's rows by id, by category, by hospital: none.
SELECT count(*) AS rls_b_rows FROM charts WHERE id > 1000 OR hospital = 'rls_b';
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- Writes under RLS: into the claimant's hospital and granted categories
-- only.
---------------------------------------------------------------------------
SET ROLE regress_rls_app;
BEGIN;
SELECT as_tenant('rls_a', 'clinician');
INSERT INTO charts (id, category, note, embedding)
VALUES (201, 'clinical', vecphi.encrypt('A clinical note 201'), '[0.1,0.1,0.1,0.1]');
SELECT expect_error($$INSERT INTO charts (id, category, note, embedding) VALUES (202, 'billing', NULL, '[0,0,0,1]')$$) AS clinician_writes_billing;
SELECT expect_error($$INSERT INTO charts (id, hospital, category, note, embedding) VALUES (203, 'rls_b', 'clinical', NULL, '[0,0,0,1]')$$) AS writes_other_hospital;
SELECT expect_error($$UPDATE charts SET category = 'billing' WHERE id = 201$$) AS recategorise_to_billing;
SELECT expect_error($$UPDATE charts SET hospital = 'rls_b' WHERE id = 201$$) AS move_to_other_hospital;
-- Rows it cannot see, it cannot change or delete: nothing happens.
UPDATE charts SET note = NULL WHERE id IN (1003, 11);
DELETE FROM charts WHERE id IN (1003, 11);
UPDATE charts SET category = 'clinical' WHERE id = 201 RETURNING id, category;
COMMIT;
-- The billing administrator writes billing rows only.
BEGIN;
SELECT as_tenant('rls_a', 'billing');
INSERT INTO charts (id, category, embedding) VALUES (204, 'billing', '[0,0,1,1]');
SELECT expect_error($$INSERT INTO charts (id, category, embedding) VALUES (205, 'clinical_trial', '[0,0,1,1]')$$) AS billing_writes_trial;
DELETE FROM charts WHERE id IN (201, 204) RETURNING id;
COMMIT;
RESET ROLE;
-- Nothing of rls_b's changed, and rows 3 and 11 are untouched.
SELECT hospital, count(*), count(note) AS with_note FROM charts GROUP BY hospital ORDER BY hospital;
SELECT id, category FROM charts WHERE id > 200 AND id < 1000 ORDER BY id;

---------------------------------------------------------------------------
-- Filtered ANN under RLS returns the full LIMIT: the researcher sees one
-- row in ten, so the index scan must go on well past the first ef_search
-- candidates.  The rows found are checked afterwards by a superuser.
---------------------------------------------------------------------------
CREATE TABLE rls_found (label text, id int);
GRANT INSERT ON rls_found TO regress_rls_app;
SET ROLE regress_rls_app;
BEGIN;
SELECT as_tenant('rls_a', 'researcher');
SET LOCAL enable_seqscan = off;
INSERT INTO rls_found
SELECT 'researcher, LIMIT 10', id FROM charts ORDER BY embedding <-> '[2,3,0.2,0]' LIMIT 10;
SET LOCAL vecphi.ef_search = 10;
INSERT INTO rls_found
SELECT 'researcher, ef_search 10, LIMIT 15', id FROM charts ORDER BY embedding <-> '[2,3,0.2,0]' LIMIT 15;
COMMIT;
BEGIN;
SELECT as_tenant('rls_b', 'billing');
SET LOCAL enable_seqscan = off;
INSERT INTO rls_found
SELECT 'billing of rls_b, LIMIT 10', id FROM charts ORDER BY embedding <-> '[2,3,0.2,0]' LIMIT 10;
-- All 40 billing rows of rls_b, and no more, through the index.
INSERT INTO rls_found
SELECT 'billing of rls_b, LIMIT 100', id FROM charts ORDER BY embedding <-> '[2,3,0.2,0]' LIMIT 100;
COMMIT;
RESET ROLE;
SELECT f.label, count(*) AS found, count(DISTINCT f.id) AS distinct_ids,
	array_agg(DISTINCT c.hospital) AS hospitals, array_agg(DISTINCT c.category) AS categories
FROM rls_found f JOIN charts c USING (id)
GROUP BY f.label ORDER BY f.label;
DROP TABLE rls_found;

---------------------------------------------------------------------------
-- vecphi.max_scan_rows: set by a superuser (or the security officer), an
-- index scan that would return more rows fails; an application role
-- cannot lift it.
---------------------------------------------------------------------------
-- Around [3.5,2,0.3,0] the nearest rows of rls_a are all clinical (87, 86,
-- 67, 107, 66, ...): the clinician's first rows are the index's first rows.
SET vecphi.max_scan_rows = 3;
SET ROLE regress_rls_app;
BEGIN;
SELECT as_tenant('rls_a', 'clinician');
SET LOCAL enable_seqscan = off;
SET LOCAL vecphi.ef_search = 400;
SELECT array_agg(id) AS three_rows FROM (SELECT id FROM charts ORDER BY embedding <-> '[3.5,2,0.3,0]' LIMIT 3) s;
SELECT expect_error_detail($$SELECT id FROM charts ORDER BY embedding <-> '[3.5,2,0.3,0]' LIMIT 5$$) AS five_rows;
-- The same through a cursor: the fourth row fails, not only a LIMIT.
DECLARE three CURSOR FOR SELECT id FROM charts ORDER BY embedding <-> '[3.5,2,0.3,0]';
FETCH 3 FROM three;
SAVEPOINT fourth;
FETCH 1 FROM three;
ROLLBACK TO fourth;
-- (Claims cannot change while the cursor is open.)
CLOSE three;
-- Rows that RLS discards count too: none of those nearest rows is the
-- researcher's, so its first row needs more than three from the index.
SELECT as_tenant('rls_a', 'researcher');
SELECT expect_error($$SELECT id FROM charts ORDER BY embedding <-> '[3.5,2,0.3,0]' LIMIT 1$$) AS researcher_one_row;
-- The application role cannot change the limit.
SELECT expect_error($$SET vecphi.max_scan_rows = 0$$) AS app_set;
SELECT expect_error($$SET LOCAL vecphi.max_scan_rows = 100$$) AS app_set_local;
SELECT expect_error($$SELECT set_config('vecphi.max_scan_rows', '0', false)$$) AS app_set_config;
SELECT expect_error($$RESET vecphi.max_scan_rows$$) AS app_reset;
SELECT expect_error($$ALTER ROLE regress_rls_app SET vecphi.max_scan_rows = 0$$) AS app_alter_role;
SHOW vecphi.max_scan_rows;
COMMIT;
-- Nor with RESET ALL (what DISCARD ALL runs too), which any role may run
-- and which PostgreSQL applies to superuser-only settings as well: the
-- limit the superuser set for this session must stay.
RESET ALL;
SELECT current_user;
SHOW vecphi.max_scan_rows;
BEGIN;
SELECT as_tenant('rls_a', 'clinician');
SET LOCAL enable_seqscan = off;
SELECT expect_error($$SELECT id FROM charts ORDER BY embedding <-> '[3.5,2,0.3,0]' LIMIT 5$$) AS five_rows_after_reset_all;
COMMIT;
RESET ROLE;
SET vecphi.max_scan_rows = 3;
-- The security officer may change it.
SET ROLE regress_rls_officer;
SET vecphi.max_scan_rows = 10;
SHOW vecphi.max_scan_rows;
RESET ROLE;
SET ROLE regress_rls_app;
BEGIN;
SELECT as_tenant('rls_a', 'clinician');
SET LOCAL enable_seqscan = off;
SELECT count(*) AS five_rows_with_limit_10 FROM (SELECT id FROM charts ORDER BY embedding <-> '[3.5,2,0.3,0]' LIMIT 5) s;
COMMIT;
RESET ROLE;
RESET vecphi.max_scan_rows;
SHOW vecphi.max_scan_rows;
-- The key administrator may not.
SET ROLE regress_rls_keyadmin;
SELECT expect_error($$SET vecphi.max_scan_rows = 0$$) AS keyadmin_set;
RESET ROLE;

---------------------------------------------------------------------------
-- Clean up.
---------------------------------------------------------------------------
DROP FUNCTION rls_visible(text, text, text);
DROP FUNCTION rls_compare(text, text, text, int, text);
DROP FUNCTION rls_knn_exact(text, int);
DROP FUNCTION rls_knn_index(text, int);
DROP FUNCTION rls_category(int);
DROP FUNCTION rls_vector(int, float8);
DROP TABLE charts;
DELETE FROM vecphi.role_categories WHERE app_role IN ('clinician', 'billing', 'researcher');
DROP OWNED BY regress_rls_owner, regress_rls_app, regress_rls_officer, regress_rls_keyadmin;
DROP ROLE regress_rls_owner, regress_rls_app, regress_rls_officer, regress_rls_keyadmin;
