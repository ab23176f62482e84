-- adversarial: attempts to read or write another tenant's rows of a table
-- protected with vecphi.protect(), by every route SQL offers.  Every case
-- must yield ZERO rows of the other tenant: each prints how many of the
-- other tenant's rows came back (foreign = 0), or the error that stopped
-- the attempt.
--
-- Tenants adv_a (the attacker's claims, rows 1..6) and adv_b (the victim,
-- rows 101..106).  Each row has a plaintext column mrn; adv_b's values
-- start with 'B-SECRET', and that text must never appear in this file's
-- output except where a statement itself names it and in the superuser's
-- checks (after RESET ROLE) that adv_b's rows are untouched.
--
-- The attacker is regress_adv_app, neither superuser nor the table's
-- owner.  Its role claim is adv_clinician, granted category clinical.

\pset null '<null>'

SELECT vecphi.create_tenant('adv_a') > 0 AS adv_a_created,
	vecphi.create_tenant('adv_b') > 0 AS adv_b_created;
CREATE ROLE regress_adv_owner NOLOGIN;
CREATE ROLE regress_adv_app NOLOGIN;
CREATE ROLE regress_adv_app2 NOLOGIN;
GRANT regress_adv_app2 TO regress_adv_app;
GRANT USAGE, CREATE ON SCHEMA public TO regress_adv_owner, regress_adv_app;
GRANT USAGE ON SCHEMA public TO regress_adv_app2;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO regress_adv_app', current_database()); END $$;
INSERT INTO vecphi.role_categories VALUES
	('adv_clinician', 'clinical'), ('adv_researcher', 'clinical_trial');

SET ROLE regress_adv_owner;
CREATE TABLE adv_notes (
	id int PRIMARY KEY,
	tenant text NOT NULL,
	category text NOT NULL,
	mrn text NOT NULL,
	body etext,
	emb evector(3)
);
SELECT vecphi.protect('adv_notes', 'tenant', 'category');
CREATE INDEX adv_notes_emb ON adv_notes USING ehnsw (emb);
CREATE INDEX adv_notes_mrn ON adv_notes (mrn);
GRANT SELECT, INSERT, UPDATE, DELETE ON adv_notes TO regress_adv_app, regress_adv_app2;
RESET ROLE;

BEGIN;
SELECT as_tenant('adv_a');
INSERT INTO adv_notes
SELECT i, 'adv_a', CASE WHEN i <= 4 THEN 'clinical' ELSE 'clinical_trial' END,
	'A-MRN-' || i, vecphi.encrypt('a note ' || i), format('[%s,0,0]', i)::evector
FROM generate_series(1, 6) i;
COMMIT;
BEGIN;
SELECT as_tenant('adv_b');
INSERT INTO adv_notes
SELECT i, 'adv_b', CASE WHEN i <= 104 THEN 'clinical' ELSE 'clinical_trial' END,
	'B-SECRET-' || i, vecphi.encrypt('b note ' || i), format('[%s,0,0]', i - 100)::evector
FROM generate_series(101, 106) i;
COMMIT;
ANALYZE adv_notes;

-- adv_b's ciphertext as if it had leaked out of band (a stolen dump), in a
-- table the attacker can read, with a copy whose header is rewritten to
-- name adv_a's key.
CREATE TABLE adv_stolen AS
SELECT id, body, emb,
	envelope_text(overlay(envelope_bytes(body::text)
		PLACING int4send((SELECT tenant_id FROM vecphi.tenants WHERE tenant = 'adv_a')) FROM 5 FOR 4))::etext AS forged_body,
	envelope_text(overlay(envelope_bytes(emb::text)
		PLACING int4send((SELECT tenant_id FROM vecphi.tenants WHERE tenant = 'adv_a')) FROM 5 FOR 4))::evector AS forged_emb
FROM adv_notes WHERE id = 101;
SELECT vecphi.key_id(body) AS body_key, vecphi.key_id(forged_body) AS forged_body_key,
	vecphi.key_id(forged_emb) AS forged_emb_key FROM adv_stolen;
GRANT SELECT ON adv_stolen TO regress_adv_app;

-- How many rows of each tenant a query returns, given the query's text;
-- the query must return a column "tenant".  (Runs as the caller.)
CREATE FUNCTION adv_count(query text, OUT own bigint, OUT foreign_rows bigint)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('SELECT count(*) FILTER (WHERE tenant = %L), count(*) FILTER (WHERE tenant IS DISTINCT FROM %L) FROM (%s) q',
		'adv_a', 'adv_a', query)
	INTO own, foreign_rows;
END
$$;
-- A valid token of adv_a for the attacker.
CREATE FUNCTION adv_token(extra jsonb DEFAULT '{}') RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT test_token(test_claims('adv_a', 'adv_clinician') || extra)
$$;

---------------------------------------------------------------------------
-- 1. Forged tokens.  Each is tried after valid claims of adv_a were set in
-- the same transaction: refused with 28000, and afterwards there are no
-- claims at all, so nothing is visible, adv_b's rows least of all.
---------------------------------------------------------------------------
CREATE FUNCTION adv_try_token(tok text, OUT result text, OUT tenant_after text,
	OUT visible bigint, OUT foreign_rows bigint)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM vecphi.set_claims(adv_token());
	result := left(expect_error(format('SELECT vecphi.set_claims(%L)', tok)), 5);
	tenant_after := coalesce(vecphi.tenant(), '(none)');
	SELECT count(*), count(*) FILTER (WHERE tenant <> 'adv_a')
	INTO visible, foreign_rows FROM adv_notes;
END
$$;
SET ROLE regress_adv_app;
BEGIN;
SELECT what, r.*
FROM (VALUES
	('01 adv_b claims, wrong key',
		test_token(test_claims('adv_b', 'adv_clinician'), 'not-the-regression-secret-0123456789abcdef')),
	('02 adv_b claims, alg none',
		test_token(test_claims('adv_b', 'adv_clinician'), alg => 'none')),
	('03 alg none with a valid signature appended',
		test_token(test_claims('adv_b', 'adv_clinician'), alg => 'none') || split_part(adv_token(), '.', 3)),
	('04 adv_a token, payload swapped for adv_b',
		split_part(adv_token(), '.', 1) || '.' ||
		b64url(convert_to((test_claims('adv_b', 'adv_clinician'))::text, 'UTF8')) || '.' ||
		split_part(adv_token(), '.', 3)),
	('05 adv_a token, break_glass added',
		split_part(adv_token(), '.', 1) || '.' ||
		b64url(convert_to((test_claims('adv_a', 'adv_clinician') || '{"break_glass": "x"}')::text, 'UTF8')) || '.' ||
		split_part(adv_token(), '.', 3)),
	('06 adv_a token, role changed',
		split_part(adv_token(), '.', 1) || '.' ||
		b64url(convert_to(test_claims('adv_a', 'adv_researcher')::text, 'UTF8')) || '.' ||
		split_part(adv_token(), '.', 3)),
	('07 adv_b claims, expired 1 h ago',
		test_token(test_claims('adv_b', 'adv_clinician') || jsonb_build_object('exp', extract(epoch FROM now())::bigint - 3600))),
	('08 adv_b claims, expired 40 s ago',
		test_token(test_claims('adv_b', 'adv_clinician') || jsonb_build_object('exp', extract(epoch FROM now())::bigint - 40))),
	('09 adv_b claims, not valid for 1 h',
		test_token(test_claims('adv_b', 'adv_clinician') || jsonb_build_object('nbf', extract(epoch FROM now())::bigint + 3600))),
	('10 adv_b claims, alg HS512',
		test_token(test_claims('adv_b', 'adv_clinician'), alg => 'HS512')),
	('11 adv_b claims, ES256 (no public key configured)',
		b64url(convert_to('{"alg":"ES256","typ":"JWT"}', 'UTF8')) || '.' ||
		b64url(convert_to(test_claims('adv_b', 'adv_clinician')::text, 'UTF8')) || '.' ||
		b64url(decode(repeat('ab', 64), 'hex'))),
	('12 adv_b claims, RS256 header, HMAC signature',
		b64url(convert_to('{"alg":"RS256","typ":"JWT"}', 'UTF8')) || '.' ||
		b64url(convert_to(test_claims('adv_b', 'adv_clinician')::text, 'UTF8')) || '.' ||
		split_part(adv_token(), '.', 3)),
	('13 header with \u0000',
		b64url(convert_to('{"alg":"HS256","typ":"JWT\u0000"}', 'UTF8')) || '.' ||
		split_part(adv_token(), '.', 2) || '.' || split_part(adv_token(), '.', 3)),
	('14 tenant with SQL, validly signed',
		test_token(test_claims('adv_a', 'adv_clinician') || $${"tenant": "adv_a' OR tenant = 'adv_b"}$$)),
	('15 purpose with SQL, validly signed',
		test_token(test_claims('adv_a', 'adv_clinician') || $${"purpose": "treatment'; --"}$$)),
	('16 no claims at all, validly signed',
		test_token('{}'))
	) AS t(what, tok),
	LATERAL adv_try_token(tok) AS r
ORDER BY what;
COMMIT;
-- Not even a valid adv_b token of an earlier transaction survives into
-- this one.
SELECT vecphi.tenant() AS claims_now, count(*) AS visible FROM adv_notes;
RESET ROLE;

---------------------------------------------------------------------------
-- 2. SET, set_config and friends: nothing changes the claims.
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT expect_error($$SET vecphi.tenant = 'adv_b'$$) AS set_tenant;
SELECT expect_error($$SELECT set_config('vecphi.tenant', 'adv_b', false)$$) AS set_config_tenant;
SELECT expect_error($$SET vecphi.app_role = 'adv_researcher'$$) AS set_role_claim;
SELECT expect_error($$SET vecphi.break_glass = 'yes'$$) AS set_break_glass;
-- The parallel-worker carrier refuses a valid token of another tenant ...
SELECT expect_error(format('SET vecphi.claims_token = %L', test_token(test_claims('adv_b', 'adv_clinician')))) AS set_claims_token;
SELECT expect_error(format('SET LOCAL vecphi.claims_token = %L', test_token(test_claims('adv_b', 'adv_clinician')))) AS set_local_claims_token;
SELECT expect_error(format('SELECT set_config(%L, %L, true)', 'vecphi.claims_token', test_token(test_claims('adv_b', 'adv_clinician')))) AS set_config_claims_token;
-- ... also as a function's SET clause.
SELECT expect_error(format('CREATE FUNCTION adv_with_token() RETURNS text LANGUAGE sql SET vecphi.claims_token = %L AS $f$SELECT vecphi.tenant()$f$',
	test_token(test_claims('adv_b', 'adv_clinician')))) AS function_set_clause;
-- ... and a non-superuser cannot read it.
SELECT expect_error($$SELECT current_setting('vecphi.claims_token')$$) AS read_claims_token;
SELECT expect_error($$SHOW vecphi.claims_token$$) AS show_claims_token;
SELECT count(*) AS in_pg_settings FROM pg_settings WHERE name = 'vecphi.claims_token';
-- Clearing it is allowed and only takes claims away (from parallel workers).
SELECT expect_error($$SET LOCAL vecphi.claims_token = ''$$) AS clear_claims_token;
SELECT expect_error($$RESET vecphi.claims_token$$) AS reset_claims_token;
-- Row security can be switched off only in the sense that a query it
-- would affect then fails.
SET LOCAL row_security = off;
SELECT expect_error($$SELECT count(*) FROM adv_notes$$) AS select_without_row_security;
SET LOCAL row_security = on;
SELECT expect_error($$RESET ALL$$) AS reset_all;
SELECT expect_error($$SET search_path = pg_temp, vecphi, public$$) AS search_path;
SELECT vecphi.tenant(), vecphi.app_role(), vecphi.break_glass();
SELECT * FROM adv_count('SELECT tenant FROM adv_notes');
COMMIT;
RESET search_path;
RESET ROLE;

-- An object named like a claim function in a schema the attacker controls
-- does not replace it: the policies name vecphi.tenant() with its schema,
-- and pg_temp cannot shadow functions.
SET ROLE regress_adv_app;
CREATE SCHEMA adv_evil;
CREATE FUNCTION adv_evil.tenant() RETURNS text LANGUAGE sql AS $$ SELECT 'adv_b' $$;
CREATE FUNCTION pg_temp.tenant() RETURNS text LANGUAGE sql AS $$ SELECT 'adv_b' $$;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SET LOCAL search_path = adv_evil, pg_temp, public;
SELECT * FROM adv_count('SELECT tenant FROM adv_notes');
COMMIT;
DROP SCHEMA adv_evil CASCADE;
RESET ROLE;

---------------------------------------------------------------------------
-- 3. SET ROLE and RESET ROLE: the claims stay, and every non-superuser
-- role, the table's owner included, sees only the claimant's rows.
---------------------------------------------------------------------------
SET SESSION AUTHORIZATION regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SET ROLE regress_adv_app2;
SELECT current_user, vecphi.tenant(), o.* FROM adv_count('SELECT tenant FROM adv_notes') o;
RESET ROLE;
SELECT current_user, vecphi.tenant(), o.* FROM adv_count('SELECT tenant FROM adv_notes') o;
SET ROLE NONE;
SELECT current_user, vecphi.tenant(), o.* FROM adv_count('SELECT tenant FROM adv_notes') o;
-- Roles the session is not a member of are out of reach.
SELECT left(expect_error('SET ROLE regress_adv_owner'), 5) AS set_role_owner;
SELECT left(expect_error(format('SET ROLE %I', (SELECT rolname FROM pg_roles WHERE oid = 10))), 5) AS set_role_superuser;
COMMIT;
-- The next transaction, under another role, starts without claims.
BEGIN;
SET LOCAL ROLE regress_adv_app2;
SELECT vecphi.tenant() AS next_transaction, count(*) AS visible FROM adv_notes;
COMMIT;
RESET SESSION AUTHORIZATION;
-- The owner: FORCE ROW LEVEL SECURITY binds it to the claims too, and it
-- cannot turn row security off for its queries either.
SET ROLE regress_adv_owner;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT * FROM adv_count('SELECT tenant FROM adv_notes');
SET LOCAL row_security = off;
SELECT expect_error($$SELECT count(*) FROM adv_notes$$) AS owner_without_row_security;
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- 4. Claims of a previous transaction on the same (pooled) connection.
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT count(*) AS visible_in_transaction FROM adv_notes;
COMMIT;
SELECT vecphi.tenant() AS after_commit, count(*) AS visible FROM adv_notes;
BEGIN;
SELECT vecphi.set_claims(adv_token());
ROLLBACK;
SELECT vecphi.tenant() AS after_rollback, count(*) AS visible FROM adv_notes;
-- A transaction that failed.
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT 1 / 0;
ROLLBACK;
SELECT vecphi.tenant() AS after_failed_transaction, count(*) AS visible FROM adv_notes;
-- COMMIT AND CHAIN / ROLLBACK AND CHAIN start a new transaction at once.
BEGIN;
SELECT vecphi.set_claims(adv_token());
COMMIT AND CHAIN;
SELECT vecphi.tenant() AS after_commit_and_chain, count(*) AS visible FROM adv_notes;
SELECT vecphi.set_claims(adv_token());
ROLLBACK AND CHAIN;
SELECT vecphi.tenant() AS after_rollback_and_chain, count(*) AS visible FROM adv_notes;
COMMIT;
-- Several statements in one query string form one implicit transaction;
-- the claims end with it.
SELECT vecphi.tenant() IS NULL AS none_before \; SELECT vecphi.set_claims(adv_token()) \; SELECT vecphi.tenant() AS in_string, count(*) AS visible FROM adv_notes;
SELECT vecphi.tenant() AS after_string, count(*) AS visible FROM adv_notes;
-- A procedure that commits: claims end at its COMMIT.
CREATE PROCEDURE adv_proc(INOUT before_commit bigint DEFAULT NULL, INOUT after_commit bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM vecphi.set_claims(adv_token());
	SELECT count(*) INTO before_commit FROM adv_notes;
	COMMIT;
	SELECT count(*) INTO after_commit FROM adv_notes;
END
$$;
CALL adv_proc();
DROP PROCEDURE adv_proc;
-- A statement prepared under adv_a's claims, executed later without any,
-- and under adv_b's: each execution sees the claims of its own
-- transaction.
PREPARE adv_all AS SELECT tenant FROM adv_notes;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT * FROM adv_count('SELECT tenant FROM adv_notes');
EXECUTE adv_all;
COMMIT;
EXECUTE adv_all;
BEGIN;
SELECT as_tenant('adv_b', 'adv_clinician');
SELECT count(*) FILTER (WHERE tenant = 'adv_a') AS adv_a_rows_for_adv_b,
	count(*) FILTER (WHERE tenant = 'adv_b') AS own_rows
FROM adv_notes;
COMMIT;
DEALLOCATE adv_all;
RESET ROLE;

---------------------------------------------------------------------------
-- 5. SQL in claim values: validly signed, so accepted, but only ever
-- compared as values.  An unknown role sees nothing; break-glass with SQL
-- in its reason still sees only adv_a's rows.
---------------------------------------------------------------------------
CREATE FUNCTION adv_with_claims(extra jsonb, OUT app_role text, OUT break_glass text,
	OUT categories text[], OUT own bigint, OUT foreign_rows bigint)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM vecphi.set_claims(adv_token(extra));
	app_role := vecphi.app_role();
	break_glass := vecphi.break_glass();
	categories := vecphi.allowed_categories();
	SELECT o.own, o.foreign_rows INTO own, foreign_rows FROM adv_count('SELECT tenant FROM adv_notes') o;
END
$$;
SET ROLE regress_adv_app;
BEGIN;
SELECT c.* FROM (VALUES
	(1, $${"role": "adv_clinician' OR '1'='1"}$$::jsonb),
	(2, $${"role": "x' OR app_role <> '"}$$),
	(3, $${"role": "adv_clinician\"; DROP TABLE adv_notes; --"}$$),
	(4, $${"role": "{adv_clinician,adv_researcher}"}$$),
	(5, $${"role": "ADV_CLINICIAN"}$$),
	(6, $${"role": "adv_clinician "}$$),
	(7, $${"role": "adv_clіnician"}$$),
	(8, $${"sub": "'); DELETE FROM adv_notes; --"}$$),
	(9, $${"break_glass": "') OR tenant = 'adv_b' --"}$$),
	(10, $${"role": "%"}$$),
	(11, $${"role": ".*"}$$)
	) AS t(n, extra), LATERAL adv_with_claims(extra) c
ORDER BY n;
COMMIT;
RESET ROLE;
SELECT tenant, count(*) FROM adv_notes GROUP BY tenant ORDER BY tenant;

---------------------------------------------------------------------------
-- 6. Views.  Row security applies to a view's owner; none of these owners
-- is a superuser.  (A view owned by a superuser would bypass RLS: that is
-- PostgreSQL's rule for superusers, not something a claim can change.)
---------------------------------------------------------------------------
SET ROLE regress_adv_owner;
CREATE VIEW adv_v_owner AS SELECT id, tenant, category, mrn FROM adv_notes;
CREATE VIEW adv_v_b AS SELECT id, tenant, mrn FROM adv_notes WHERE tenant = 'adv_b';
CREATE VIEW adv_v_invoker WITH (security_invoker = true) AS SELECT id, tenant FROM adv_notes;
CREATE VIEW adv_v_barrier WITH (security_barrier = true) AS SELECT id, tenant, mrn FROM adv_notes;
GRANT SELECT ON adv_v_owner, adv_v_b, adv_v_invoker, adv_v_barrier TO regress_adv_app;
RESET ROLE;
SET ROLE regress_adv_app;
CREATE VIEW adv_v_app AS SELECT id, tenant FROM adv_notes;
-- A function that leaks every argument it sees (a NOTICE per call).
CREATE FUNCTION adv_leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	RAISE NOTICE 'leak: %', $1;
	RETURN true;
END
$$;
-- Only a superuser may declare a function LEAKPROOF (the planner would run
-- it before the policy).
SELECT expect_error($$CREATE FUNCTION adv_leakproof(text) RETURNS boolean LANGUAGE sql LEAKPROOF AS 'SELECT true'$$) AS create_leakproof;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT 'owner view' AS via, * FROM adv_count('SELECT tenant FROM adv_v_owner')
UNION ALL SELECT 'view filtering adv_b', * FROM adv_count('SELECT tenant FROM adv_v_b')
UNION ALL SELECT 'security_invoker view', * FROM adv_count('SELECT tenant FROM adv_v_invoker')
UNION ALL SELECT 'security_barrier view', * FROM adv_count('SELECT tenant FROM adv_v_barrier')
UNION ALL SELECT 'attacker''s own view', * FROM adv_count('SELECT tenant FROM adv_v_app');
-- The leaky function sees only visible rows: the policy runs first, on
-- the table, in a view, and behind a security barrier.
SELECT id FROM adv_notes WHERE adv_leak(tenant || ' ' || mrn) ORDER BY id;
SELECT id FROM adv_v_owner WHERE adv_leak(mrn) ORDER BY id;
SELECT id FROM adv_v_barrier WHERE adv_leak(mrn) AND tenant = 'adv_b';
SELECT id FROM adv_notes WHERE mrn = 'B-SECRET-101' AND adv_leak(mrn);
COMMIT;
DROP VIEW adv_v_app;
RESET ROLE;

---------------------------------------------------------------------------
-- 7. Functions, SECURITY DEFINER too: they run as their owner, who is
-- bound by the policies like anyone but a superuser.
---------------------------------------------------------------------------
SET ROLE regress_adv_owner;
CREATE FUNCTION adv_definer_rows() RETURNS SETOF adv_notes
LANGUAGE sql STABLE SECURITY DEFINER AS $$ SELECT * FROM adv_notes $$;
CREATE FUNCTION adv_definer_b() RETURNS TABLE (id int, tenant text, mrn text)
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
	RETURN QUERY EXECUTE 'SELECT id, tenant, mrn FROM adv_notes WHERE tenant = $1' USING 'adv_b';
END
$$;
CREATE FUNCTION adv_definer_no_rls() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET row_security = off AS $$
BEGIN
	RETURN (SELECT count(*) FROM adv_notes);
END
$$;
GRANT EXECUTE ON FUNCTION adv_definer_rows(), adv_definer_b(), adv_definer_no_rls() TO regress_adv_app;
RESET ROLE;
SET ROLE regress_adv_app;
CREATE FUNCTION adv_invoker_rows() RETURNS SETOF adv_notes LANGUAGE sql STABLE AS $$ SELECT * FROM adv_notes $$;
CREATE FUNCTION adv_plpgsql_b() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE 'SELECT count(*) FROM adv_notes WHERE tenant = $1' INTO n USING 'adv_b';
	RETURN n;
END
$$;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT 'SECURITY DEFINER' AS via, * FROM adv_count('SELECT tenant FROM adv_definer_rows()')
UNION ALL SELECT 'SECURITY DEFINER, dynamic SQL for adv_b', * FROM adv_count('SELECT tenant FROM adv_definer_b()')
UNION ALL SELECT 'SQL function (inlined)', * FROM adv_count('SELECT tenant FROM adv_invoker_rows()');
SELECT adv_plpgsql_b() AS plpgsql_adv_b_rows;
SELECT expect_error('SELECT adv_definer_no_rls()') AS definer_without_row_security;
COMMIT;
DROP FUNCTION adv_invoker_rows();
DROP FUNCTION adv_plpgsql_b();
RESET ROLE;

---------------------------------------------------------------------------
-- 8. CTEs: plain, materialized, recursive, and data-modifying ones aimed
-- at adv_b's rows.
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT 'CTE' AS via, * FROM adv_count('WITH x AS (SELECT * FROM adv_notes) SELECT tenant FROM x')
UNION ALL SELECT 'MATERIALIZED CTE', * FROM adv_count('WITH x AS MATERIALIZED (SELECT * FROM adv_notes) SELECT tenant FROM x')
UNION ALL SELECT 'recursive CTE', * FROM adv_count('WITH RECURSIVE r(id, tenant) AS (SELECT id, tenant FROM adv_notes WHERE id IN (1, 101) UNION SELECT n.id, n.tenant FROM adv_notes n JOIN r ON n.id = r.id + 1) SELECT tenant FROM r')
UNION ALL SELECT 'CTE in a scalar subquery', * FROM adv_count('SELECT tenant FROM (SELECT (WITH x AS (SELECT tenant FROM adv_notes WHERE id = 101) SELECT tenant FROM x) AS tenant) s WHERE tenant IS NOT NULL');
WITH gone AS (DELETE FROM adv_notes WHERE tenant = 'adv_b' RETURNING id)
SELECT count(*) AS deleted_adv_b FROM gone;
WITH moved AS (UPDATE adv_notes SET tenant = 'adv_a' WHERE tenant = 'adv_b' RETURNING id)
SELECT count(*) AS moved_adv_b FROM moved;
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- 9. Cursors.
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
DECLARE c_plain CURSOR FOR SELECT id, tenant FROM adv_notes ORDER BY id;
FETCH ALL FROM c_plain;
DECLARE c_scroll SCROLL CURSOR FOR SELECT id, tenant FROM adv_notes WHERE tenant = 'adv_b' OR id > 0 ORDER BY id;
FETCH LAST FROM c_scroll;
FETCH ABSOLUTE 1 FROM c_scroll;
FETCH BACKWARD ALL FROM c_scroll;
DECLARE c_update CURSOR FOR SELECT id, tenant FROM adv_notes WHERE id >= 100 FOR UPDATE;
FETCH ALL FROM c_update;
-- A cursor declared before the claims were set: the claims are refused
-- while it is open (its scan started without claims and would go
-- unrecorded); once it is closed they may be set.
COMMIT;
BEGIN;
DECLARE c_early CURSOR FOR SELECT id, tenant FROM adv_notes ORDER BY id;
SELECT vecphi.set_claims(adv_token());
ROLLBACK;
BEGIN;
DECLARE c_early CURSOR FOR SELECT id, tenant FROM adv_notes ORDER BY id;
CLOSE c_early;
SELECT vecphi.set_claims(adv_token());
COMMIT;
-- WITH HOLD: declared without claims, its rows (none) are fixed at COMMIT.
DECLARE c_hold_none CURSOR WITH HOLD FOR SELECT id, tenant FROM adv_notes;
BEGIN;
SELECT vecphi.set_claims(adv_token());
FETCH ALL FROM c_hold_none;
COMMIT;
CLOSE c_hold_none;
-- WITH HOLD declared under adv_b's claims (one client of a transaction
-- pooler), then fetched in the next transaction on the same connection
-- (the next client, adv_a, or one without claims): the rows, decrypted
-- text included, must not be handed to it.
CREATE FUNCTION adv_fetch_held(cursor_name text, OUT fetched bigint, OUT adv_b_rows bigint)
LANGUAGE plpgsql AS $$
DECLARE
	c refcursor := cursor_name;
	r record;
BEGIN
	fetched := 0;
	adv_b_rows := 0;
	LOOP
		FETCH c INTO r;
		EXIT WHEN NOT FOUND;
		fetched := fetched + 1;
		IF r.tenant = 'adv_b' THEN
			adv_b_rows := adv_b_rows + 1;
		END IF;
	END LOOP;
EXCEPTION WHEN OTHERS THEN
	-- Refusing the fetch is as good as returning nothing.
	fetched := 0;
	adv_b_rows := 0;
END
$$;
CREATE FUNCTION adv_declare_held(cursor_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('DECLARE %I CURSOR WITH HOLD FOR SELECT id, tenant, vecphi.decrypt(body) AS body FROM adv_notes', cursor_name);
EXCEPTION WHEN OTHERS THEN
	-- Refusing to declare it is as good as anything.
	NULL;
END
$$;
BEGIN;
SELECT as_tenant('adv_b', 'adv_clinician');
SELECT adv_declare_held('c_hold_b1');
SELECT adv_declare_held('c_hold_b2');
COMMIT;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT vecphi.tenant(), h.* FROM adv_fetch_held('c_hold_b1') h;
COMMIT;
SELECT vecphi.tenant(), h.* FROM adv_fetch_held('c_hold_b2') h;
CLOSE ALL;
DROP FUNCTION adv_declare_held(text);
DROP FUNCTION adv_fetch_held(text);
RESET ROLE;

---------------------------------------------------------------------------
-- 10. Prepared statements aimed at adv_b, custom and generic plans.
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
PREPARE adv_by_tenant(text) AS SELECT id, tenant, mrn FROM adv_notes WHERE tenant = $1;
PREPARE adv_by_id(int) AS SELECT id, tenant, mrn FROM adv_notes WHERE id = $1;
BEGIN;
SELECT vecphi.set_claims(adv_token());
EXECUTE adv_by_tenant('adv_b');
EXECUTE adv_by_id(101);
SET LOCAL plan_cache_mode = force_generic_plan;
EXECUTE adv_by_tenant('adv_b');
EXECUTE adv_by_id(101);
EXECUTE adv_by_id(1);
COMMIT;
DEALLOCATE adv_by_tenant;
DEALLOCATE adv_by_id;
RESET ROLE;

---------------------------------------------------------------------------
-- 11. Parallel sequential scans: workers apply the same policy.  (Only a
-- few rows here; test/t/030_claims_parallel_and_pooling.pl makes the
-- workers do all the work on a large table.)
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL enable_indexscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT id, tenant, vecphi.decrypt(body) FROM adv_notes;
SELECT * FROM adv_count('SELECT tenant, vecphi.decrypt(body) FROM adv_notes');
SELECT id, tenant, vecphi.decrypt(body) AS body FROM adv_notes WHERE tenant = 'adv_b' OR id < 3 ORDER BY id;
-- Per-row calls of vecphi.tenant() (not init plans), in a parallel plan,
-- agree with the policy.
SELECT count(*) FILTER (WHERE tenant = vecphi.tenant()) AS own,
	count(*) FILTER (WHERE tenant IS DISTINCT FROM vecphi.tenant()) AS foreign_rows
FROM adv_notes WHERE length(vecphi.tenant() || id) > 0;
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- 12. COPY: out, only the claimant's rows; in, loaded as INSERTs under
-- the policies (copyload.c): another tenant's row is refused.
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
COPY (SELECT id, tenant, category, mrn FROM adv_notes ORDER BY id) TO STDOUT;
COPY (SELECT id, tenant, mrn FROM adv_notes WHERE tenant = 'adv_b') TO STDOUT;
COPY adv_notes (id, tenant, category, mrn) TO STDOUT;
COMMIT;
BEGIN;
SELECT vecphi.set_claims(adv_token());
COPY adv_notes (id, tenant, category, mrn) FROM STDIN;
9001	adv_b	clinical	MRN-PLANTED
\.
ROLLBACK;
RESET ROLE;

---------------------------------------------------------------------------
-- 13. EXPLAIN ANALYZE runs the query under the same policy (the actual row
-- counts are the claimant's).
---------------------------------------------------------------------------
CREATE FUNCTION adv_explain_rows(query text) RETURNS numeric
LANGUAGE plpgsql AS $$
DECLARE
	plan json;
BEGIN
	EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON, TIMING OFF, SUMMARY OFF) ' || query INTO plan;
	RETURN (plan -> 0 -> 'Plan' ->> 'Actual Rows')::numeric;
END
$$;
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT adv_explain_rows('SELECT * FROM adv_notes') AS all_rows,
	adv_explain_rows($$SELECT * FROM adv_notes WHERE tenant = 'adv_b'$$) AS adv_b_rows,
	adv_explain_rows('SELECT vecphi.decrypt(body) FROM adv_notes WHERE id > 100') AS adv_b_decrypted,
	adv_explain_rows($$SELECT id FROM adv_notes ORDER BY emb <-> '[101,0,0]' LIMIT 3$$) AS nearest;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM adv_notes WHERE tenant = 'adv_b' AND vecphi.decrypt(body) IS NOT NULL;
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- 14. Error messages as a side channel: a failing cast or division on
-- adv_b's values would print them.  The policy runs before any of these,
-- so no error is raised and nothing of adv_b's is printed.
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT id FROM adv_notes WHERE (CASE WHEN tenant = 'adv_b' THEN id / (id - id) ELSE 1 END) = 1 ORDER BY id;
SELECT id, 100 / (CASE WHEN tenant = 'adv_b' THEN 0 ELSE id END) AS division_in_select FROM adv_notes ORDER BY id;
SELECT id FROM adv_notes WHERE (CASE WHEN tenant = 'adv_b' THEN mrn ELSE '0' END)::int = 0 ORDER BY id;
SELECT id, (CASE WHEN tenant = 'adv_b' THEN mrn ELSE '0' END)::int AS cast_in_select FROM adv_notes ORDER BY id;
SELECT id FROM adv_notes ORDER BY (CASE WHEN tenant = 'adv_b' THEN mrn::int ELSE id END);
SELECT count(*) FROM adv_notes GROUP BY (CASE WHEN tenant = 'adv_b' THEN mrn::numeric ELSE 0 END);
SELECT count(*) FILTER (WHERE tenant = 'adv_b' AND mrn::date IS NULL) AS filter_cast FROM adv_notes;
SELECT count(*) AS join_cast FROM adv_notes n JOIN generate_series(1, 3) g
	ON (CASE WHEN n.tenant = 'adv_b' THEN n.mrn::int ELSE g END) = g;
SELECT count(*) AS lateral_cast FROM adv_notes n,
	LATERAL (SELECT CASE WHEN n.tenant = 'adv_b' THEN n.mrn::bigint END AS x) l;
SELECT id, row_number() OVER (ORDER BY CASE WHEN tenant = 'adv_b' THEN mrn::int END) FROM adv_notes ORDER BY id;
SELECT id FROM adv_notes WHERE mrn LIKE 'B-SECRET%' AND mrn::int > 0;
-- Operations on adv_b's ciphertext would fail with 42501 "belongs to another
-- tenant"; they never run.
SELECT count(vecphi.decrypt(body)) AS decrypted, count(vector_dims(emb)) AS dims,
	count(emb::evector(3)) AS typmod_checked
FROM adv_notes;
SELECT id FROM adv_notes WHERE emb <-> '[101,0,0]' < 1000 AND (tenant = 'adv_b' OR true) ORDER BY id;
SELECT id FROM adv_notes WHERE vecphi.decrypt(body) LIKE 'b note%';
-- The statistics keep plaintext values (adv_b's mrn among them): hidden
-- from a role under RLS.
SELECT count(*) AS visible_statistics FROM pg_stats WHERE tablename = 'adv_notes';
-- Row locks and TID scans.
SELECT id FROM adv_notes WHERE id > 100 FOR UPDATE;
SELECT count(*) FILTER (WHERE tenant <> 'adv_a') AS tid_scan_foreign FROM adv_notes
WHERE ctid = ANY (ARRAY(SELECT format('(0,%s)', g)::tid FROM generate_series(1, 100) g));
SELECT count(*) FILTER (WHERE tenant <> 'adv_a') AS tablesample_foreign FROM adv_notes TABLESAMPLE SYSTEM (100);
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- 15. Moving a row to another tenant, or another tenant's row to us.
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT expect_error($$UPDATE adv_notes SET tenant = 'adv_b' WHERE id = 1$$) AS move_own_row_out;
SELECT expect_error($$UPDATE adv_notes SET tenant = 'adv_b' WHERE id = 1 RETURNING mrn$$) AS move_out_returning;
SELECT expect_error($$UPDATE adv_notes SET tenant = 'adv_b' FROM (VALUES (1)) v(x) WHERE id = v.x$$) AS move_out_from;
SELECT expect_error($$UPDATE adv_notes SET category = 'clinical_trial' WHERE id = 1$$) AS recategorise_ungranted;
SELECT expect_error($$INSERT INTO adv_notes (id, tenant, category, mrn) VALUES (7, 'adv_b', 'clinical', 'planted')$$) AS plant_in_adv_b;
SELECT expect_error($$INSERT INTO adv_notes (id, tenant, category, mrn) VALUES (7, NULL, 'clinical', 'x')$$) AS null_tenant;
UPDATE adv_notes SET tenant = 'adv_a' WHERE id = 101 RETURNING id;
UPDATE adv_notes SET mrn = 'overwritten' WHERE tenant = 'adv_b' RETURNING id;
DELETE FROM adv_notes WHERE id BETWEEN 100 AND 200 RETURNING id;
-- Upsert onto adv_b's row: refused, adv_b's row untouched.
SELECT expect_error($$INSERT INTO adv_notes (id, tenant, category, mrn) VALUES (101, 'adv_a', 'clinical', 'x')
	ON CONFLICT (id) DO UPDATE SET tenant = 'adv_a', mrn = 'taken' RETURNING mrn$$) AS upsert_adv_b_row;
-- MERGE: adv_b's rows never match.
MERGE INTO adv_notes n USING (VALUES (101), (102)) v(id) ON n.id = v.id
WHEN MATCHED THEN UPDATE SET tenant = 'adv_a', mrn = 'merged'
WHEN NOT MATCHED THEN DO NOTHING;
-- Break-glass widens to all of adv_a's categories, not to adv_b.
SELECT vecphi.set_claims(adv_token('{"break_glass": "cardiac arrest"}'));
SELECT * FROM adv_count('SELECT tenant FROM adv_notes');
SELECT expect_error($$UPDATE adv_notes SET tenant = 'adv_b' WHERE id = 5$$) AS break_glass_moves_out;
SELECT expect_error($$INSERT INTO adv_notes (id, tenant, category, mrn) VALUES (8, 'adv_b', 'clinical', 'planted')$$) AS break_glass_plants;
UPDATE adv_notes SET mrn = 'overwritten' WHERE tenant = 'adv_b' RETURNING id;
COMMIT;
RESET ROLE;
SELECT id, tenant, category, mrn FROM adv_notes ORDER BY id;

---------------------------------------------------------------------------
-- 16. adv_b's ciphertext copied into adv_a's rows.
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
-- From the protected table itself: adv_b's rows are not there to copy.
INSERT INTO adv_notes (id, tenant, category, mrn, body, emb)
SELECT id + 1000, 'adv_a', 'clinical', 'copy', body, emb FROM adv_notes WHERE id > 100;
UPDATE adv_notes SET body = (SELECT body FROM adv_notes WHERE id = 101),
	emb = (SELECT emb FROM adv_notes WHERE id = 101)
WHERE id = 2 RETURNING id, vecphi.key_id(body) AS body_key, vecphi.key_id(emb) AS emb_key;
-- From a leaked copy: refused, INSERT ... SELECT and UPDATE alike.
SELECT expect_error($$INSERT INTO adv_notes (id, tenant, category, mrn, body) SELECT 9, 'adv_a', 'clinical', 'copy', body FROM adv_stolen$$) AS insert_select_body;
SELECT expect_error($$INSERT INTO adv_notes (id, tenant, category, mrn, emb) SELECT 9, 'adv_a', 'clinical', 'copy', emb FROM adv_stolen$$) AS insert_select_emb;
SELECT expect_error($$INSERT INTO adv_notes (id, tenant, category, mrn, body) VALUES (9, 'adv_a', 'clinical', 'copy', (SELECT body::text FROM adv_stolen)::etext)$$) AS insert_envelope_text;
SELECT expect_error($$UPDATE adv_notes SET body = (SELECT body FROM adv_stolen) WHERE id = 3$$) AS update_set_body;
SELECT expect_error($$UPDATE adv_notes SET emb = (SELECT emb FROM adv_stolen) WHERE id = 3$$) AS update_set_emb;
SELECT expect_error($$UPDATE adv_notes SET emb = s.emb FROM adv_stolen s WHERE adv_notes.id = 3$$) AS update_from;
-- The leaked values themselves: no decryption, no distance, no search.
SELECT expect_error($$SELECT vecphi.decrypt(body) FROM adv_stolen$$) AS decrypt_stolen;
SELECT expect_error($$SELECT emb <-> '[1,0,0]' FROM adv_stolen$$) AS distance_stolen;
SELECT expect_error($$SELECT id FROM adv_notes ORDER BY emb <-> (SELECT emb FROM adv_stolen) LIMIT 3$$) AS search_with_stolen;
SET LOCAL enable_seqscan = off;
SELECT expect_error($$SELECT id FROM adv_notes ORDER BY emb <-> (SELECT emb FROM adv_stolen) LIMIT 3$$) AS index_search_with_stolen;
SET LOCAL enable_seqscan = on;
-- With the header rewritten to name adv_a's key, the value fails
-- authentication: adv_b's plaintext does not come out.
SELECT expect_error($$SELECT vecphi.decrypt(forged_body) FROM adv_stolen$$) AS decrypt_forged;
SELECT expect_error($$SELECT vecphi.decrypt(forged_emb) FROM adv_stolen$$) AS decrypt_forged_emb;
SELECT expect_error($$SELECT forged_emb <-> '[1,0,0]' FROM adv_stolen$$) AS distance_forged;
SELECT expect_error($$INSERT INTO adv_notes (id, tenant, category, mrn, emb) SELECT 10, 'adv_a', 'clinical', 'forged', forged_emb FROM adv_stolen$$) AS insert_forged_emb_indexed;
-- A query vector taken from adv_b's row: the row is invisible, so the
-- query is NULL and finds no adv_b row.
SET LOCAL enable_seqscan = off;
SELECT * FROM adv_count($$SELECT tenant FROM (SELECT tenant FROM adv_notes ORDER BY emb <-> (SELECT emb FROM adv_notes WHERE id = 101) LIMIT 3) s$$);
SET LOCAL enable_seqscan = on;
SET LOCAL enable_indexscan = off;
SELECT * FROM adv_count($$SELECT tenant FROM (SELECT tenant FROM adv_notes ORDER BY emb <-> (SELECT emb FROM adv_notes WHERE id = 101) LIMIT 3) s$$);
COMMIT;
RESET ROLE;
-- What adv_a's rows hold now: only adv_a's ciphertext (or none).
SELECT id, tenant, vecphi.key_id(body) AS body_key, vecphi.key_id(emb) AS emb_key
FROM adv_notes ORDER BY id;

---------------------------------------------------------------------------
-- 17. Ciphertext columns protect() must check, whatever their declared
-- type: a domain over evector, an array of evector, and a column added
-- later.  adv_b's ciphertext must not go into adv_a's rows through them
-- either.
---------------------------------------------------------------------------
CREATE DOMAIN adv_evec3 AS evector(3);
SET ROLE regress_adv_owner;
CREATE TABLE adv_typed (id int, tenant text, category text, d adv_evec3, a evector[]);
SELECT vecphi.protect('adv_typed', 'tenant', 'category');
GRANT SELECT, INSERT, UPDATE ON adv_typed TO regress_adv_app;
RESET ROLE;
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
INSERT INTO adv_typed VALUES (1, 'adv_a', 'clinical', '[1,2,3]', ARRAY['[1,2,3]'::evector]);
SELECT expect_error($$INSERT INTO adv_typed (id, tenant, category, d) SELECT 2, 'adv_a', 'clinical', emb FROM adv_stolen$$) <> 'no error' AS domain_column_refused;
SELECT expect_error($$INSERT INTO adv_typed (id, tenant, category, a) SELECT 3, 'adv_a', 'clinical', ARRAY[emb] FROM adv_stolen$$) <> 'no error' AS array_column_refused;
SELECT expect_error($$UPDATE adv_typed SET d = (SELECT emb FROM adv_stolen) WHERE id = 1$$) <> 'no error' AS update_domain_column_refused;
SELECT expect_error($$UPDATE adv_typed SET a = a || (SELECT emb FROM adv_stolen) WHERE id = 1$$) <> 'no error' AS update_array_column_refused;
COMMIT;
RESET ROLE;
-- A ciphertext column added after protect() (before anyone remembered to
-- call protect() again).
ALTER TABLE adv_typed ADD COLUMN later etext;
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT expect_error($$INSERT INTO adv_typed (id, tenant, category, later) SELECT 4, 'adv_a', 'clinical', body FROM adv_stolen$$) <> 'no error' AS added_column_refused;
COMMIT;
RESET ROLE;
SELECT count(*) AS rows_holding_adv_b_ciphertext FROM adv_typed
WHERE vecphi.key_id(d) LIKE 'adv_b/%' OR vecphi.key_id(later) LIKE 'adv_b/%'
   OR EXISTS (SELECT FROM unnest(a) e WHERE vecphi.key_id(e) LIKE 'adv_b/%');

---------------------------------------------------------------------------
-- 18. protect() on a table that already has a permissive policy: the
-- tenant rule must still hold (policies of the same kind are OR-ed, so an
-- older "USING (true)" would open every row).
---------------------------------------------------------------------------
SET ROLE regress_adv_owner;
CREATE TABLE adv_legacy (id int, tenant text, category text);
ALTER TABLE adv_legacy ENABLE ROW LEVEL SECURITY;
CREATE POLICY legacy_open ON adv_legacy USING (true) WITH CHECK (true);
SELECT vecphi.protect('adv_legacy', 'tenant', 'category');
GRANT SELECT, INSERT ON adv_legacy TO regress_adv_app;
RESET ROLE;
INSERT INTO adv_legacy VALUES (1, 'adv_a', 'clinical'), (101, 'adv_b', 'clinical');
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT * FROM adv_count('SELECT tenant FROM adv_legacy');
SELECT expect_error($$INSERT INTO adv_legacy VALUES (102, 'adv_b', 'clinical')$$) <> 'no error' AS plant_in_adv_b_refused;
COMMIT;
RESET ROLE;
SELECT count(*) AS adv_b_rows_planted FROM adv_legacy WHERE id = 102;

---------------------------------------------------------------------------
-- 19. protect() on a partitioned table: its partitions must not be a way
-- around the policies.
---------------------------------------------------------------------------
SET ROLE regress_adv_owner;
CREATE TABLE adv_part (id int, tenant text, category text) PARTITION BY LIST (tenant);
CREATE TABLE adv_part_a PARTITION OF adv_part FOR VALUES IN ('adv_a');
CREATE TABLE adv_part_b PARTITION OF adv_part FOR VALUES IN ('adv_b');
SELECT vecphi.protect('adv_part', 'tenant', 'category');
-- (A grant on all tables of a schema reaches the partitions too.)
GRANT SELECT ON adv_part, adv_part_a, adv_part_b TO regress_adv_app;
RESET ROLE;
INSERT INTO adv_part VALUES (1, 'adv_a', 'clinical'), (101, 'adv_b', 'clinical');
SET ROLE regress_adv_app;
BEGIN;
SELECT vecphi.set_claims(adv_token());
SELECT 'parent' AS via, * FROM adv_count('SELECT tenant FROM adv_part')
UNION ALL SELECT 'partition of adv_b', * FROM adv_count('SELECT tenant FROM adv_part_b');
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- 20. What the application role may not do to the table at all.
---------------------------------------------------------------------------
SET ROLE regress_adv_app;
SELECT expect_error($$TRUNCATE adv_notes$$) AS truncate_table;
SELECT expect_error($$ALTER TABLE adv_notes DISABLE ROW LEVEL SECURITY$$) AS disable_rls;
SELECT expect_error($$CREATE POLICY adv_open ON adv_notes USING (true)$$) AS create_policy;
SELECT expect_error($$ALTER POLICY vecphi_select ON adv_notes USING (true)$$) AS alter_policy;
SELECT expect_error($$CREATE RULE adv_rule AS ON SELECT TO adv_notes DO INSTEAD SELECT * FROM adv_notes$$) AS create_rule;
SELECT expect_error($$CREATE TRIGGER adv_trg BEFORE INSERT ON adv_notes FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()$$) AS create_trigger;
SELECT expect_error($$CREATE TABLE adv_child () INHERITS (adv_notes)$$) AS inherit;
SELECT expect_error($$SELECT vecphi.protect('adv_notes', 'mrn')$$) AS re_protect;
SELECT expect_error($$ALTER TABLE adv_notes OWNER TO regress_adv_app$$) AS take_ownership;
RESET ROLE;
-- Nothing of adv_b's was changed by any of the above.
SELECT id, tenant, category, mrn, vecphi.key_id(body) AS body_key, vecphi.key_id(emb) AS emb_key
FROM adv_notes WHERE tenant = 'adv_b' ORDER BY id;

---------------------------------------------------------------------------
-- Clean up.
---------------------------------------------------------------------------
DROP TABLE adv_notes, adv_stolen, adv_typed, adv_legacy, adv_part CASCADE;
DROP DOMAIN adv_evec3;
DROP FUNCTION adv_count(text), adv_token(jsonb), adv_try_token(text),
	adv_with_claims(jsonb), adv_explain_rows(text);
DELETE FROM vecphi.role_categories WHERE app_role IN ('adv_clinician', 'adv_researcher');
DROP OWNED BY regress_adv_owner, regress_adv_app, regress_adv_app2;
DROP ROLE regress_adv_owner, regress_adv_app, regress_adv_app2;
