-- audit: vecphi.audit_log as SQL sees it.
--
-- Every plan shape of a similarity search leaves exactly one scan record
-- with the rows the client got (index scan, exact scan, parallel scan,
-- cursor, prepared statement, PL/pgSQL and SQL functions, joins, CTEs,
-- DML, more than 1000 rows); decryptions, denials and key events are
-- recorded; records survive rollback and errors; the query fingerprint is
-- equal for equal vectors; nobody can change the table, not even its
-- owner; verify_audit() passes.  Tampering (which would break the chain
-- for later suites) is tested in test/t/053_audit_tamper.pl.
--
-- The suite runs after the others in the same database, so it looks only
-- at records written since a mark (aud_mark) by its own backend.  It
-- prints actions, relations, row ids (primary keys), counts and claims,
-- never timestamps, hashes, pids or statement ids: statements are
-- numbered 1, 2, ... within each batch of records instead.

\pset null '<null>'

---------------------------------------------------------------------------
-- The objects: the table, its triggers (enabled ALWAYS), the settings.
---------------------------------------------------------------------------
SELECT column_name, data_type
FROM information_schema.columns
WHERE table_schema = 'vecphi' AND table_name = 'audit_log'
ORDER BY ordinal_position;
SELECT tgname, tgenabled FROM pg_trigger
WHERE tgrelid = 'vecphi.audit_log'::regclass AND NOT tgisinternal ORDER BY tgname;
SELECT r AS role, has_table_privilege(r, 'vecphi.audit_log', 'SELECT') AS can_select,
	has_table_privilege(r, 'vecphi.audit_log', 'INSERT, UPDATE, DELETE, TRUNCATE') AS can_write
FROM unnest(ARRAY['vecphi_security_officer', 'vecphi_key_admin', 'public']) r ORDER BY r;
SHOW vecphi.audit;
SHOW vecphi.audit_synchronous;
SELECT current_setting('vecphi.audit_retention') <> '0' AS retention_set;
SELECT name, context FROM pg_settings
WHERE name IN ('vecphi.audit', 'vecphi.audit_synchronous', 'vecphi.audit_retention')
ORDER BY name;

---------------------------------------------------------------------------
-- Helpers.
---------------------------------------------------------------------------
-- The newest record when this suite starts (or at the last aud_new()).
SELECT vecphi.audit_flush() >= 0 AS flushed;
CREATE TABLE aud_mark (seq bigint NOT NULL);
INSERT INTO aud_mark SELECT coalesce(max(seq), 0) FROM vecphi.audit_log;

-- Records this backend wrote since the mark, oldest first, and move the
-- mark.  stmt numbers the statements of the batch (records of one
-- statement share its number); row ids are sorted (numerically for
-- integer keys), and shown only up to 20; who = database user ('su' for
-- the session user, the superuser running the suite), subject/tenant/app
-- role/purpose, plus the break-glass reason; detail only for decrypt and
-- denial records, and for key events the tenant it names.
CREATE FUNCTION aud_new() RETURNS TABLE (stmt bigint, action text, relation text,
	index_name text, rows_returned bigint, row_ids text, outcome text, who text, detail text)
LANGUAGE plpgsql AS $$
DECLARE
	mark bigint;
BEGIN
	SELECT m.seq INTO mark FROM aud_mark m;
	UPDATE aud_mark SET seq = (SELECT coalesce(max(l.seq), mark) FROM vecphi.audit_log l);
	RETURN QUERY
	SELECT dense_rank() OVER (ORDER BY l.first_seq),
		l.action, l.relation, l.index_name, l.rows_returned,
		CASE WHEN cardinality(l.row_ids) > 20 THEN cardinality(l.row_ids) || ' ids'
			 ELSE (SELECT string_agg(x, ',' ORDER BY length(x), x) FROM unnest(l.row_ids) x) END,
		l.outcome,
		CASE WHEN l.db_user = session_user THEN 'su' ELSE l.db_user END || ' ' ||
		coalesce(l.subject, '-') || '/' || coalesce(l.tenant, '-') || '/' ||
			coalesce(l.app_role, '-') || '/' || coalesce(l.purpose, '-') ||
			CASE WHEN l.break_glass THEN '/break_glass: ' || coalesce(l.break_glass_reason, '?') ELSE '' END,
		CASE WHEN l.action IN ('decrypt', 'denial', 'permission_error') THEN l.detail
			 WHEN l.action LIKE 'key\_%' THEN 'names ' || coalesce(substring(l.detail FROM 'aud_[a-z]+'), 'no aud_ tenant')
		END
	FROM (SELECT a.*, CASE WHEN a.statement_id IS NULL THEN a.seq
						   ELSE min(a.seq) OVER (PARTITION BY a.statement_id) END AS first_seq
		  FROM vecphi.audit_log a
		  WHERE a.seq > mark AND a.backend_pid = pg_backend_pid()) l
	ORDER BY l.seq;
END
$$;

-- The same records' query fingerprints, as labels: 1 for the first
-- fingerprint seen, 2 for the next different one, ...; whether each is 64
-- hex digits.
CREATE FUNCTION aud_fingerprints() RETURNS TABLE (stmt bigint, action text, fingerprint bigint, hex64 boolean)
LANGUAGE plpgsql AS $$
DECLARE
	mark bigint;
BEGIN
	SELECT m.seq INTO mark FROM aud_mark m;
	UPDATE aud_mark SET seq = (SELECT coalesce(max(l.seq), mark) FROM vecphi.audit_log l);
	RETURN QUERY
	SELECT dense_rank() OVER (ORDER BY l.first_seq), l.action,
		CASE WHEN l.query_fingerprint IS NOT NULL THEN dense_rank() OVER (ORDER BY l.first_fp) END,
		l.query_fingerprint ~ '^[0-9a-f]{64}$'
	FROM (SELECT a.*, min(a.seq) OVER (PARTITION BY a.statement_id) AS first_seq,
			min(a.seq) OVER (PARTITION BY a.query_fingerprint) AS first_fp
		  FROM vecphi.audit_log a
		  WHERE a.seq > mark AND a.backend_pid = pg_backend_pid()) l
	ORDER BY l.seq;
END
$$;

---------------------------------------------------------------------------
-- Key events: create, rotate KEK, rotate DEK.  They are queued without
-- waiting; audit_flush() waits for them.
---------------------------------------------------------------------------
SELECT vecphi.create_tenant('aud_a') > 0 AS aud_a_created,
	vecphi.create_tenant('aud_b') > 0 AS aud_b_created;
SELECT vecphi.rotate_kek('aud_a') AS aud_a_kek;
SELECT vecphi.rotate_dek('aud_b') > 1 AS aud_b_dek_rotated;
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT * FROM aud_new();

---------------------------------------------------------------------------
-- The data.  aud_docs: ids 1..100 of aud_a, 101..130 of aud_b.  Row i of
-- aud_a is [i, (i % 3) / 10, (i % 5) / 100], so around [n,0,0] no two rows
-- are at the same distance and the nearest are n, then n-1 or n+1, ...
---------------------------------------------------------------------------
CREATE TABLE aud_docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector(3), note etext);
BEGIN;
SELECT as_tenant('aud_a');
INSERT INTO aud_docs
SELECT i, 'aud_a', format('[%s,%s,%s]', i, (i % 3) / 10.0, (i % 5) / 100.0)::evector,
	vecphi.encrypt('note ' || i)
FROM generate_series(1, 100) i;
COMMIT;
BEGIN;
SELECT as_tenant('aud_b');
INSERT INTO aud_docs
SELECT i, 'aud_b', format('[%s,%s,%s]', i - 100.5, (i % 3) / 10.0, (i % 5) / 100.0)::evector, NULL
FROM generate_series(101, 130) i;
COMMIT;
CREATE INDEX aud_docs_emb ON aud_docs USING ehnsw (emb evector_l2_ops);
ANALYZE aud_docs;
-- Writing ciphertext is not audited (no scan of a search, no decryption).
SELECT * FROM aud_new();

---------------------------------------------------------------------------
-- An ehnsw index scan with LIMIT: one index_scan record, the 5 rows.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM aud_docs ORDER BY emb <-> '[10,0,0]'::text::evector LIMIT 5;
SELECT id FROM aud_docs ORDER BY emb <-> '[10,0,0]' LIMIT 5;
-- Visible as soon as the statement returned (synchronous mode).
SELECT * FROM aud_new();
COMMIT;

-- aud_b's search walks aud_b's graph only.
BEGIN;
SELECT as_tenant('aud_b');
SET LOCAL enable_seqscan = off;
SELECT id FROM aud_docs ORDER BY emb <-> '[10,0,0]' LIMIT 3;
SELECT * FROM aud_new();
COMMIT;

---------------------------------------------------------------------------
-- An exact scan: Seq Scan, Sort, Limit.  The record holds the 5 rows
-- returned, not the 100 compared.  Without ORDER BY, the rows the
-- distance was computed for and returned.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_indexscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF)
SELECT id FROM aud_docs WHERE tenant = 'aud_a' ORDER BY emb <-> '[10,0,0]'::text::evector LIMIT 5;
SELECT id FROM aud_docs WHERE tenant = 'aud_a' ORDER BY emb <-> '[10,0,0]' LIMIT 5;
SELECT * FROM aud_new();
SELECT id, round((emb <-> '[20,0,0]')::numeric, 4) AS distance
FROM aud_docs WHERE id IN (20, 21, 22) ORDER BY id;
SELECT id, round(l2_distance(emb, '[20,0,0]')::numeric, 4) AS l2,
	round(cosine_distance(emb, '[20,0,0]')::numeric, 4) AS cosine,
	round(inner_product(emb, '[1,0,0]')::numeric, 4) AS ip
FROM aud_docs WHERE id = 23;
SELECT count(*) FROM aud_docs WHERE tenant = 'aud_a' AND (emb <#> '[1,0,0]') < -95;
SELECT * FROM aud_new();
-- A plain scan under claims, with no distance and no decryption, is a
-- read record naming the rows the scan passed up.
SELECT count(*) FROM aud_docs;
SELECT * FROM aud_new();
COMMIT;

---------------------------------------------------------------------------
-- Tables without a primary key (ctid) and with a composite key.
---------------------------------------------------------------------------
CREATE TABLE aud_nopk (label text, emb evector(3));
CREATE TABLE aud_comp (a int, b int, emb evector(3), PRIMARY KEY (a, b));
BEGIN;
SELECT as_tenant('aud_a');
INSERT INTO aud_nopk VALUES ('one', '[1,0,0]'), ('two', '[2,0,0]'), ('three', '[3,0,0]');
INSERT INTO aud_comp VALUES (1, 1, '[1,0,0]'), (1, 2, '[2,0,0]'), (2, 1, '[3,0,0]');
SELECT label FROM aud_nopk ORDER BY emb <-> '[2.9,0,0]' LIMIT 2;
SELECT a, b FROM aud_comp ORDER BY emb <-> '[0,0,0]' LIMIT 2;
SELECT * FROM aud_new();
COMMIT;

---------------------------------------------------------------------------
-- Parallel scans: the leader records the scan once.  A table big enough
-- for parallel workers, and the planner pushed towards them.
---------------------------------------------------------------------------
CREATE TABLE aud_big (id int PRIMARY KEY, emb evector(3));
BEGIN;
SELECT as_tenant('aud_a');
INSERT INTO aud_big
SELECT i, format('[%s,%s,%s]', i, (i % 3) / 10.0, (i % 5) / 100.0)::evector
FROM generate_series(1, 2500) i;
COMMIT;
ANALYZE aud_big;
PREPARE aud_par(evector) AS SELECT id FROM aud_big ORDER BY emb <-> $1 LIMIT 5;
PREPARE aud_par_count(evector, float8) AS SELECT count(*) FROM aud_big WHERE (emb <-> $1) < $2;
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_leader_participation = off;
SET LOCAL plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE aud_par('[1000,0,0]');
EXECUTE aud_par('[1000,0,0]');
SELECT * FROM aud_new();
-- An aggregate over a parallel scan: the rows the scans passed up (those
-- within the distance), from all workers, in one record.
EXPLAIN (COSTS OFF) EXECUTE aud_par_count('[1000,0,0]', 3.5);
EXECUTE aud_par_count('[1000,0,0]', 3.5);
SELECT * FROM aud_new();
COMMIT;

---------------------------------------------------------------------------
-- More than 1000 rows: records of at most 1000 ids, one statement.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL max_parallel_workers_per_gather = 0;
\o /dev/null
SELECT id FROM aud_big ORDER BY emb <-> '[0,0,0]' LIMIT 2100;
\o
SELECT count(*) AS records, count(DISTINCT statement_id) AS statements,
	sum(rows_returned) AS rows_returned, sum(cardinality(row_ids)) AS ids,
	max(cardinality(row_ids)) AS most_ids,
	(SELECT count(DISTINCT x) FROM vecphi.audit_log l2, unnest(l2.row_ids) x
	 WHERE l2.seq > (SELECT seq FROM aud_mark) AND l2.backend_pid = pg_backend_pid()) AS distinct_ids,
	(SELECT min(x::int) || '..' || max(x::int) FROM vecphi.audit_log l2, unnest(l2.row_ids) x
	 WHERE l2.seq > (SELECT seq FROM aud_mark) AND l2.backend_pid = pg_backend_pid()) AS id_range,
	array_agg(DISTINCT action) AS actions
FROM vecphi.audit_log
WHERE seq > (SELECT seq FROM aud_mark) AND backend_pid = pg_backend_pid();
SELECT * FROM aud_new();
COMMIT;

---------------------------------------------------------------------------
-- A cursor: one record per FETCH that returned rows, one statement.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
DECLARE aud_cur CURSOR FOR SELECT id FROM aud_docs ORDER BY emb <-> '[20,0,0]' LIMIT 6;
FETCH 2 FROM aud_cur;
SELECT * FROM aud_new();
FETCH 10 FROM aud_cur;
FETCH 1 FROM aud_cur;
CLOSE aud_cur;
SELECT * FROM aud_new();
COMMIT;
-- Two FETCHes, then the records together: one statement, two records.
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
DECLARE aud_cur CURSOR FOR SELECT id FROM aud_docs ORDER BY emb <-> '[20,0,0]' LIMIT 6;
FETCH 3 FROM aud_cur;
FETCH 3 FROM aud_cur;
CLOSE aud_cur;
SELECT * FROM aud_new();
COMMIT;

---------------------------------------------------------------------------
-- Prepared statements, PL/pgSQL (RETURN QUERY) and SQL functions (not
-- inlined: VOLATILE; inlined: STABLE) are recorded like the top level.
---------------------------------------------------------------------------
PREPARE aud_near(evector, int) AS SELECT id FROM aud_docs ORDER BY emb <-> $1 LIMIT $2;
CREATE FUNCTION aud_plpgsql(q evector, k int) RETURNS SETOF int LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY SELECT id FROM aud_docs ORDER BY emb <-> q LIMIT k;
END
$$;
CREATE FUNCTION aud_sql(q evector, k int) RETURNS SETOF int LANGUAGE sql VOLATILE AS $$
	SELECT id FROM aud_docs ORDER BY emb <-> q LIMIT k
$$;
CREATE FUNCTION aud_sql_inlined(q evector, k int) RETURNS SETOF int LANGUAGE sql STABLE AS $$
	SELECT id FROM aud_docs ORDER BY emb <-> q LIMIT k
$$;
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
EXECUTE aud_near('[30,0,0]', 3);
SELECT * FROM aud_plpgsql('[40,0,0]', 4);
SELECT * FROM aud_sql('[50,0,0]', 2);
SELECT * FROM aud_sql_inlined('[60,0,0]', 2);
SELECT * FROM aud_new();
COMMIT;

---------------------------------------------------------------------------
-- Other plan shapes: the rows the scan passed up.  A join (two scans of a
-- table with evector columns, two records), a materialized CTE, and an
-- INSERT ... SELECT.
---------------------------------------------------------------------------
CREATE TABLE aud_found (id int);
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
SELECT a.id, b.id AS neighbour
FROM aud_docs a JOIN aud_docs b ON b.id = a.id + 1
WHERE a.id IN (5, 6) ORDER BY a.emb <-> b.emb, a.id;
WITH near AS MATERIALIZED (
	SELECT id, emb <-> '[70,0,0]' AS d FROM aud_docs WHERE id BETWEEN 68 AND 71)
SELECT count(*) FROM near WHERE d < 100;
INSERT INTO aud_found SELECT id FROM aud_docs ORDER BY emb <-> '[80,0,0]' LIMIT 3;
SELECT * FROM aud_new();
COMMIT;
SELECT id FROM aud_found ORDER BY id;

---------------------------------------------------------------------------
-- Decryption: a read record for the scan (decrypt, no distance), and one
-- decrypt record per statement counting the values.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_indexscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT id, vecphi.decrypt(emb) AS emb, vecphi.decrypt(note) AS note
FROM aud_docs WHERE id IN (1, 2, 3) ORDER BY id;
SELECT * FROM aud_new();
SELECT vecphi.decrypt('[1,2,3]'::evector) AS no_table;
SELECT * FROM aud_new();
-- A search that decrypts what it found: a scan record and a decrypt record.
SET LOCAL enable_indexscan = on;
SET LOCAL enable_seqscan = off;
SELECT id, vecphi.decrypt(note) AS note FROM aud_docs ORDER BY emb <-> '[90,0,0]' LIMIT 2;
SELECT * FROM aud_new();
COMMIT;

---------------------------------------------------------------------------
-- Break-glass: flagged, with the reason.
---------------------------------------------------------------------------
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('aud_a', 'billing') ||
	'{"break_glass": "patient unconscious, bay 4"}'));
SET LOCAL enable_seqscan = off;
SELECT id FROM aud_docs ORDER BY emb <-> '[15,0,0]' LIMIT 1;
SELECT * FROM aud_new();
COMMIT;

---------------------------------------------------------------------------
-- Records survive rollback, and a statement that fails half-way leaves a
-- record with outcome error and the rows produced before the error
-- (around [10,0,0] the order is 10, 9, 11, 12, 8: 1/(id - 12) fails on
-- the fourth row).
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
SELECT id FROM aud_docs ORDER BY emb <-> '[25,0,0]' LIMIT 2;
ROLLBACK;
SELECT * FROM aud_new();
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
SELECT id, 1 / (id - 12) AS boom FROM aud_docs ORDER BY emb <-> '[10,0,0]' LIMIT 5;
ROLLBACK;
-- The failed scan's record is queued while the statement aborts, without
-- waiting: flush before reading it.
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT * FROM aud_new();

---------------------------------------------------------------------------
-- Query fingerprints: equal for the same vector (whose ciphertexts
-- differ), whether a literal, a parameter of a prepared statement or of a
-- function; different for another vector; none when the query is a column.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
SELECT id FROM aud_docs ORDER BY emb <-> '[33,0,0]' LIMIT 1;
SELECT id FROM aud_docs ORDER BY emb <-> '[33,0,0]' LIMIT 1;
SELECT id FROM aud_docs ORDER BY emb <-> '[34,0,0]' LIMIT 1;
EXECUTE aud_near('[33,0,0]', 1);
SELECT * FROM aud_plpgsql('[33,0,0]', 1);
SELECT '[33,0,0]'::evector::text = '[33,0,0]'::evector::text AS same_ciphertext;
SET LOCAL enable_seqscan = on;
SET LOCAL enable_indexscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT id FROM aud_docs WHERE tenant = 'aud_a' ORDER BY emb <-> emb, id LIMIT 1;
SELECT * FROM aud_fingerprints();
COMMIT;

---------------------------------------------------------------------------
-- With vecphi.audit off (superuser only) nothing is recorded.
---------------------------------------------------------------------------
SET vecphi.audit = off;
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
SELECT id FROM aud_docs ORDER BY emb <-> '[45,0,0]' LIMIT 1;
COMMIT;
RESET vecphi.audit;
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT * FROM aud_new();
-- With vecphi.audit_synchronous off (superuser only) the record is queued
-- without waiting; audit_flush() waits for it.
SET vecphi.audit_synchronous = off;
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
SELECT id FROM aud_docs ORDER BY emb <-> '[46,0,0]' LIMIT 2;
COMMIT;
RESET vecphi.audit_synchronous;
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT * FROM aud_new();

---------------------------------------------------------------------------
-- Denials: a bad token, a write that row-level security refuses, a
-- search beyond vecphi.max_scan_rows, a tenant mismatch, a permission
-- denied, settings an application role may not change, and a denial
-- caught by an exception handler.  vecphi's own refusals are `denial`;
-- PostgreSQL's (row-level security, permission denied) `permission_error`,
-- naming the server function and file that raised them
-- (audit_integrity.sql).  Queued without waiting: flush first.
-- An application role (not a superuser) on a protected table.
---------------------------------------------------------------------------
CREATE ROLE regress_aud_app NOLOGIN;
CREATE ROLE regress_aud_officer NOLOGIN IN ROLE vecphi_security_officer;
GRANT USAGE ON SCHEMA public TO regress_aud_app, regress_aud_officer;
CREATE TABLE aud_prot (id int PRIMARY KEY, tenant text NOT NULL DEFAULT vecphi.tenant(),
	emb evector(3));
SELECT vecphi.protect('aud_prot', 'tenant');
GRANT SELECT, INSERT, UPDATE, DELETE ON aud_prot TO regress_aud_app;
BEGIN;
SELECT as_tenant('aud_b');
INSERT INTO aud_prot VALUES (1001, 'aud_b', '[1,1,1]');
COMMIT;

SET ROLE regress_aud_app;
SELECT vecphi.set_claims('not.a.token');
BEGIN;
SELECT as_tenant('aud_a');
INSERT INTO aud_prot VALUES (1, 'aud_a', '[1,0,0]'), (2, 'aud_a', '[2,0,0]');
-- A search by the application role: db_user is the role.
SELECT id FROM aud_prot ORDER BY emb <-> '[0,0,0]' LIMIT 5;
SELECT count(*) AS other_tenant_visible FROM aud_prot WHERE id = 1001;
INSERT INTO aud_prot VALUES (3, 'aud_b', '[3,0,0]');
ROLLBACK;
SELECT count(*) FROM vecphi.audit_log;
SET vecphi.audit = off;
SET vecphi.audit_synchronous = off;
SET vecphi.audit_retention = '1min';
SELECT expect_error($$SELECT vecphi.set_claims('still.not.a-token')$$) AS caught;
RESET ROLE;
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT * FROM aud_new();

-- vecphi.max_scan_rows: the scan fails on its third row; the denial, and
-- the scan record with outcome error and the two rows it returned.
SET vecphi.max_scan_rows = 2;
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
SELECT id FROM aud_docs ORDER BY emb <-> '[50,0,0]' LIMIT 5;
ROLLBACK;
RESET vecphi.max_scan_rows;
-- A query vector of another tenant.
BEGIN;
SELECT as_tenant('aud_b');
CREATE TEMP TABLE aud_b_query AS SELECT '[1,0,0]'::evector AS q;
COMMIT;
BEGIN;
SELECT as_tenant('aud_a');
SET LOCAL enable_seqscan = off;
SELECT id FROM aud_docs ORDER BY emb <-> (SELECT q FROM aud_b_query) LIMIT 1;
ROLLBACK;
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT * FROM aud_new();

---------------------------------------------------------------------------
-- Append-only: UPDATE, DELETE, TRUNCATE and INSERT fail for everyone,
-- superusers included (42501).  Each attempt is itself a denial.
---------------------------------------------------------------------------
SELECT max(seq) AS newest FROM vecphi.audit_log \gset
UPDATE vecphi.audit_log SET detail = 'edited' WHERE seq = :newest;
SELECT expect_error(format('UPDATE vecphi.audit_log SET detail = %L WHERE seq = %s', 'edited', :newest)) AS su_update;
SELECT expect_error(format('DELETE FROM vecphi.audit_log WHERE seq = %s', :newest)) AS su_delete;
SELECT expect_error('TRUNCATE vecphi.audit_log') AS su_truncate;
SELECT expect_error($$INSERT INTO vecphi.audit_log (seq, at, db_user, backend_pid, break_glass,
	action, outcome, prev_hash, row_hash)
	VALUES (1000000000, now(), 'forger', 0, false, 'index_scan', 'ok', '\x00', '\x00')$$) AS su_insert;
SELECT count(*) AS edited FROM vecphi.audit_log WHERE detail = 'edited' OR db_user = 'forger';
SELECT max(seq) = :newest AS newest_still_there FROM vecphi.audit_log WHERE seq <= :newest;

-- The security officer reads the log, and cannot change it either.
SET ROLE regress_aud_officer;
SELECT count(*) > 0 AS officer_reads FROM vecphi.audit_log;
SELECT expect_error(format('UPDATE vecphi.audit_log SET detail = %L WHERE seq = %s', 'edited', :newest)) AS officer_update;
SELECT expect_error(format('DELETE FROM vecphi.audit_log WHERE seq = %s', :newest)) AS officer_delete;
SELECT expect_error('TRUNCATE vecphi.audit_log') AS officer_truncate;
SELECT (SELECT ok FROM vecphi.verify_audit()) AS officer_verifies,
	(SELECT seq > 0 FROM vecphi.audit_head()) AS officer_reads_head;
RESET ROLE;

-- An application role cannot read it, verify it or purge it.
SET ROLE regress_aud_app;
SELECT expect_error('SELECT count(*) FROM vecphi.audit_log') AS app_reads;
SELECT expect_error(format('DELETE FROM vecphi.audit_log WHERE seq = %s', :newest)) AS app_delete;
SELECT expect_error('SELECT * FROM vecphi.verify_audit()') AS app_verifies;
SELECT expect_error('SELECT vecphi.purge_audit()') AS app_purges;
SELECT expect_error('SELECT * FROM vecphi.audit_head()') AS app_reads_head;
RESET ROLE;

-- A non-superuser owner can neither change the rows nor the table, its
-- triggers or rules, nor drop it.  Each attempt runs in a transaction
-- that rolls back, so that a failure of this test cannot break the
-- audit log for what follows.
SELECT pg_get_userbyid(relowner) = current_user AS owned_by_superuser
FROM pg_class WHERE oid = 'vecphi.audit_log'::regclass;
CREATE ROLE regress_aud_owner NOLOGIN;
CREATE FUNCTION aud_swallow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
ALTER TABLE vecphi.audit_log OWNER TO regress_aud_owner;
GRANT USAGE ON SCHEMA vecphi TO regress_aud_owner;
BEGIN;
SET LOCAL ROLE regress_aud_owner;
SELECT current_user, count(*) > 0 AS owner_reads FROM vecphi.audit_log;
SELECT cmd, expect_error(cmd) AS result
FROM unnest(ARRAY[
	'UPDATE vecphi.audit_log SET detail = ''edited'' WHERE seq = (SELECT max(seq) FROM vecphi.audit_log)',
	'DELETE FROM vecphi.audit_log WHERE seq = (SELECT max(seq) FROM vecphi.audit_log)',
	'TRUNCATE vecphi.audit_log',
	'ALTER TABLE vecphi.audit_log DISABLE TRIGGER audit_log_append_only',
	'ALTER TABLE vecphi.audit_log DISABLE TRIGGER ALL',
	'ALTER TABLE vecphi.audit_log ENABLE REPLICA TRIGGER audit_log_append_only',
	'ALTER TABLE vecphi.audit_log SET UNLOGGED',
	'ALTER TABLE vecphi.audit_log RENAME TO audit_log_old',
	'ALTER TABLE vecphi.audit_log ADD COLUMN note text',
	'DROP TRIGGER audit_log_append_only ON vecphi.audit_log',
	'DROP TRIGGER audit_log_no_truncate ON vecphi.audit_log',
	'CREATE RULE aud_no_insert AS ON INSERT TO vecphi.audit_log DO INSTEAD NOTHING',
	'CREATE TRIGGER aud_swallow BEFORE INSERT ON vecphi.audit_log FOR EACH ROW EXECUTE FUNCTION public.aud_swallow()',
	'DROP TABLE vecphi.audit_log']) AS cmd;
ROLLBACK;
-- Nothing changed.
SELECT tgname, tgenabled FROM pg_trigger
WHERE tgrelid = 'vecphi.audit_log'::regclass AND NOT tgisinternal ORDER BY tgname;
SELECT relname, relpersistence, relnatts,
	(SELECT count(*) FROM pg_rewrite WHERE ev_class = c.oid) AS rules
FROM pg_class c WHERE oid = 'vecphi.audit_log'::regclass;
ALTER TABLE vecphi.audit_log OWNER TO CURRENT_USER;
REVOKE USAGE ON SCHEMA vecphi FROM regress_aud_owner;
SELECT pg_get_userbyid(relowner) = current_user AS owned_by_superuser_again
FROM pg_class WHERE oid = 'vecphi.audit_log'::regclass;
-- The attempts were denials (db_user: who tried).  vecphi's own refusals
-- are recorded even when expect_error's exception handler catches them;
-- PostgreSQL's own "permission denied" errors (recorded as
-- permission_error, not denial) only when they reach the client (a caught
-- one is never reported), so the application role's and most of the
-- officer's attempts here leave no record.
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT action, outcome, CASE WHEN db_user = session_user THEN 'su' ELSE db_user END AS db_user,
	count(*)
FROM vecphi.audit_log
WHERE seq > (SELECT seq FROM aud_mark) AND backend_pid = pg_backend_pid()
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

---------------------------------------------------------------------------
-- The chain verifies; the head anchors it.
---------------------------------------------------------------------------
SELECT ok, rows_checked = (SELECT count(*) FROM vecphi.audit_log) AS checked_all,
	first_bad_seq, problem
FROM vecphi.verify_audit();
SELECT h.seq = (SELECT max(seq) FROM vecphi.audit_log) AS head_is_newest,
	h.row_hash ~ '^[0-9a-f]{64}$' AS head_hash_hex,
	h.row_hash = encode((SELECT row_hash FROM vecphi.audit_log WHERE seq = h.seq), 'hex') AS head_hash_matches
FROM vecphi.audit_head() h;
SELECT seq AS head_seq, row_hash AS head_hash FROM vecphi.audit_head() \gset
SELECT ok, first_bad_seq, problem FROM vecphi.verify_audit(:head_seq, :'head_hash');
SELECT ok, first_bad_seq = :head_seq AS names_anchor, problem IS NOT NULL AS has_problem
FROM vecphi.verify_audit(:head_seq, repeat('0', 64));
-- A malformed anchor is refused (22023), not treated as a mismatch.
SELECT expect_error($$SELECT * FROM vecphi.verify_audit(1, 'not-a-hash')$$) AS bad_anchor;
SELECT expect_error($$SELECT * FROM vecphi.verify_audit(1, NULL)$$) AS anchor_without_hash;
-- Every seq from the first to the newest, each row linked to the previous.
SELECT count(*) = max(seq) - min(seq) + 1 AS contiguous,
	bool_and(prev_hash = lag_hash) AS linked
FROM (SELECT seq, prev_hash, lag(row_hash) OVER (ORDER BY seq) AS lag_hash FROM vecphi.audit_log) s;
SELECT count(*) AS first_row_zero_prev FROM vecphi.audit_log
WHERE seq = 1 AND prev_hash = '\x0000000000000000000000000000000000000000000000000000000000000000';

---------------------------------------------------------------------------
-- Clean up.
---------------------------------------------------------------------------
DEALLOCATE aud_par;
DEALLOCATE aud_par_count;
DEALLOCATE aud_near;
DROP FUNCTION aud_plpgsql(evector, int), aud_sql(evector, int), aud_sql_inlined(evector, int),
	aud_swallow(), aud_new(), aud_fingerprints();
DROP TABLE aud_docs, aud_nopk, aud_comp, aud_big, aud_found, aud_prot, aud_mark, aud_b_query;
DROP OWNED BY regress_aud_app, regress_aud_officer, regress_aud_owner;
DROP ROLE regress_aud_app, regress_aud_officer, regress_aud_owner;
