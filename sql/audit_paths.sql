-- audit_paths: every call path that reads a protected table under claims
-- leaves a committed audit record naming the rows it returned, and
-- vecphi.max_scan_rows caps every similarity scan, whatever computes the
-- distance.  The attacks of issue #11 section 2: claims set inside the
-- statement that reads (a subquery, LATERAL, a cursor opened before the
-- claims), distances computed by a SQL or PL/pgSQL function, COPY (SELECT)
-- TO, triggers, SECURITY DEFINER functions.
--
-- Uses the helpers of setup.sql (as_tenant, token_for, expect_error) and
-- the same mark-and-read scheme as the audit suite.

\pset null '<null>'
SELECT vecphi.audit_flush() >= 0 AS flushed;
CREATE TABLE ap_mark (seq bigint NOT NULL);
INSERT INTO ap_mark SELECT coalesce(max(seq), 0) FROM vecphi.audit_log;

-- Records this backend wrote since the mark (scans and denials), oldest
-- first; moves the mark.  SECURITY DEFINER: the application role that
-- runs the searches below may not read the audit log.
CREATE FUNCTION ap_new() RETURNS TABLE (action text, relation text, rows_returned bigint,
	row_ids text, outcome text, tenant text, detail text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE
	mark bigint;
BEGIN
	PERFORM vecphi.audit_flush();
	SELECT m.seq INTO mark FROM ap_mark m;
	UPDATE ap_mark SET seq = (SELECT coalesce(max(l.seq), mark) FROM vecphi.audit_log l);
	RETURN QUERY
	SELECT l.action, l.relation, l.rows_returned,
		(SELECT string_agg(x, ',' ORDER BY length(x), x) FROM unnest(l.row_ids) x),
		l.outcome, l.tenant,
		CASE WHEN l.action = 'denial' THEN l.detail END
	FROM vecphi.audit_log l
	WHERE l.seq > mark AND l.backend_pid = pg_backend_pid()
	  AND l.action NOT IN ('decrypt')
	ORDER BY l.seq;
END
$$;

SELECT vecphi.create_tenant('ap_a') > 0 AS ap_a, vecphi.create_tenant('ap_b') > 0 AS ap_b;

-- The application role (row-level security applies to it) and the owner of
-- a SECURITY DEFINER search function.
CREATE ROLE ap_app;
CREATE ROLE ap_definer_owner;

-- ap_docs: ids 1..40 of ap_a (row i at [i, 0.01 * (i % 7), 0]), 41..50 of ap_b.
CREATE TABLE ap_docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector(3));
SELECT vecphi.protect('ap_docs', 'tenant');
GRANT SELECT, INSERT ON ap_docs TO ap_app, ap_definer_owner;
SET ROLE ap_app;
BEGIN;
SELECT as_tenant('ap_a');
INSERT INTO ap_docs SELECT i, 'ap_a', format('[%s,%s,0]', i, 0.01 * (i % 7))::evector
FROM generate_series(1, 40) i;
COMMIT;
BEGIN;
SELECT as_tenant('ap_b');
INSERT INTO ap_docs SELECT i, 'ap_b', format('[%s,0,0]', i)::evector
FROM generate_series(41, 50) i;
COMMIT;
RESET ROLE;
ANALYZE ap_docs;
SELECT * FROM ap_new();
SET ROLE ap_app;

---------------------------------------------------------------------------
-- Claims that appear in the middle of a statement.  Refused: the
-- statement's scans started without claims, so nothing would record them.
---------------------------------------------------------------------------
-- In a WHERE subquery.
-- (The query vector is a text cast at run time: the claims do not exist
-- yet when the statement is parsed.)
SELECT id FROM ap_docs WHERE (SELECT as_tenant('ap_a')) IS NOT NULL
ORDER BY emb <-> '[10,0,0]'::text::evector LIMIT 3;
-- In a LATERAL subquery.
SELECT d.id
FROM (SELECT as_tenant('ap_a') AS t) c,
	LATERAL (SELECT id FROM ap_docs WHERE tenant = c.t
			 ORDER BY emb <-> '[10,0,0]'::text::evector LIMIT 3) d;
-- In the select list of a scan of the table: without claims no row is
-- visible, so the function never runs.
SELECT id, as_tenant('ap_a') FROM ap_docs ORDER BY id LIMIT 2;
-- Claims that change tenant in the middle of a statement that started
-- with claims.
BEGIN;
SELECT as_tenant('ap_b');
SELECT id FROM ap_docs WHERE (SELECT as_tenant('ap_a')) IS NOT NULL
ORDER BY emb <-> '[10,0,0]'::text::evector LIMIT 3;
ROLLBACK;
-- A cursor opened before the claims: the claims must wait until it is
-- closed.
BEGIN;
DECLARE ap_early CURSOR FOR SELECT id FROM ap_docs ORDER BY emb <-> '[10,0,0]'::text::evector LIMIT 3;
SELECT as_tenant('ap_a');
ROLLBACK;
BEGIN;
DECLARE ap_early CURSOR FOR SELECT id FROM ap_docs ORDER BY emb <-> '[10,0,0]'::text::evector LIMIT 3;
CLOSE ap_early;
SELECT as_tenant('ap_a');
FETCH ALL FROM ap_early;
ROLLBACK;
-- Clearing the claims in the middle of a scan is refused as well.
BEGIN;
SELECT as_tenant('ap_a');
SELECT id FROM ap_docs WHERE (SELECT vecphi.clear_claims()) IS NULL ORDER BY id LIMIT 2;
ROLLBACK;
-- A statement that touches no encrypted data may still set claims
-- (that is how every session starts), and so may a function called by
-- one.
BEGIN;
SELECT as_tenant('ap_a');
SELECT count(*) AS visible FROM ap_docs;
ROLLBACK;
-- The refusals above are denials.
SELECT * FROM ap_new();

---------------------------------------------------------------------------
-- Distances computed by a function the planner cannot see into.
---------------------------------------------------------------------------
RESET ROLE;
CREATE FUNCTION ap_dist_plpgsql(a evector, b evector) RETURNS float8
LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN a <-> b; END $$;
CREATE FUNCTION ap_dist_sql(a evector, b evector) RETURNS float8
LANGUAGE sql VOLATILE AS $$ SELECT a <-> b $$;
SET ROLE ap_app;
BEGIN;
SELECT as_tenant('ap_a');
SELECT id FROM ap_docs ORDER BY ap_dist_plpgsql(emb, '[10,0,0]') LIMIT 3;
SELECT * FROM ap_new();
SELECT id FROM ap_docs ORDER BY ap_dist_sql(emb, '[20,0,0]') LIMIT 2;
SELECT * FROM ap_new();
-- Without LIMIT, every row the scan passed up.
SELECT count(*) FROM (SELECT ap_dist_plpgsql(emb, '[1,0,0]') AS d FROM ap_docs) s WHERE d < 2.5;
SELECT * FROM ap_new();
COMMIT;

---------------------------------------------------------------------------
-- vecphi.max_scan_rows caps those scans too (exact scans included).
---------------------------------------------------------------------------
RESET ROLE;
BEGIN;
SET LOCAL vecphi.max_scan_rows = 3;
SET LOCAL ROLE ap_app;
SELECT as_tenant('ap_a');
-- Within the cap.
SELECT id FROM ap_docs ORDER BY emb <-> '[5,0,0]' LIMIT 3;
SELECT id FROM ap_docs ORDER BY ap_dist_plpgsql(emb, '[5,0,0]') LIMIT 3;
-- Over it: an exact scan with the operator, and through the functions.
SELECT expect_error($$SELECT id FROM ap_docs ORDER BY emb <-> '[5,0,0]' LIMIT 4$$);
SELECT expect_error($$SELECT id FROM ap_docs ORDER BY ap_dist_plpgsql(emb, '[5,0,0]') LIMIT 4$$);
SELECT expect_error($$SELECT id, ap_dist_sql(emb, '[5,0,0]') FROM ap_docs$$);
-- Reading rows without computing a distance is not a similarity scan.
SELECT count(*) FROM (SELECT id FROM ap_docs WHERE id <= 10) s;
COMMIT;
SET ROLE ap_app;
SELECT * FROM ap_new();

---------------------------------------------------------------------------
-- A plain read under claims is a read record with its rows.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('ap_a');
SELECT id FROM ap_docs WHERE id < 4 ORDER BY id;
SELECT * FROM ap_new();
COMMIT;

---------------------------------------------------------------------------
-- COPY (SELECT ...) TO: the rows copied.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('ap_a');
COPY (SELECT id FROM ap_docs ORDER BY emb <-> '[30,0,0]' LIMIT 2) TO STDOUT;
SELECT * FROM ap_new();
COMMIT;

---------------------------------------------------------------------------
-- Triggers and SECURITY DEFINER functions: the search inside is recorded
-- under the claims in force.  (The trigger's search is a subquery of an
-- expression: a plan shape whose record names the rows the scan passed
-- up, a superset of the two it returned.)
---------------------------------------------------------------------------
RESET ROLE;
CREATE TABLE ap_requests (q text, found int[]);
CREATE FUNCTION ap_answer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.found := ARRAY(SELECT id FROM ap_docs ORDER BY emb <-> NEW.q::evector LIMIT 2);
	RETURN NEW;
END
$$;
CREATE TRIGGER ap_answer BEFORE INSERT ON ap_requests FOR EACH ROW EXECUTE FUNCTION ap_answer();
GRANT INSERT, SELECT ON ap_requests TO ap_app;
CREATE FUNCTION ap_definer(q text, k int) RETURNS SETOF int LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp AS $$
	SELECT id FROM public.ap_docs ORDER BY emb OPERATOR(public.<->) q::public.evector LIMIT k
$$;
ALTER FUNCTION ap_definer(text, int) OWNER TO ap_definer_owner;
SET ROLE ap_app;
BEGIN;
SELECT as_tenant('ap_a');
INSERT INTO ap_requests VALUES ('[12,0,0]') RETURNING found;
SELECT * FROM ap_new();
SELECT * FROM ap_definer('[15,0,0]', 2);
SELECT * FROM ap_new();
COMMIT;

---------------------------------------------------------------------------
-- Cursors with partial FETCH under claims: one record per FETCH.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('ap_a');
DECLARE ap_cur CURSOR FOR SELECT id FROM ap_docs ORDER BY ap_dist_plpgsql(emb, '[25,0,0]') LIMIT 4;
FETCH 1 FROM ap_cur;
SELECT * FROM ap_new();
FETCH 3 FROM ap_cur;
SELECT * FROM ap_new();
COMMIT;

RESET ROLE;
SELECT ok, problem FROM vecphi.verify_audit();
