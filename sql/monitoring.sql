-- monitoring: the views vecphi.stat_tenants, vecphi.stat_audit,
-- vecphi.stat_keys and vecphi.stat_reset(): their shape, that the activity
-- counters agree with the audit log, and who may read and reset them.
-- The counters are cluster-wide and earlier suites counted too, so this
-- file looks only at its own tenants (mon_a, mon_b) or at differences.

\pset null '<null>'

---------------------------------------------------------------------------
-- 1. Shape
---------------------------------------------------------------------------
SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'vecphi'::regnamespace
  AND c.relname IN ('stat_tenants', 'stat_audit', 'stat_keys')
  AND a.attnum > 0
ORDER BY c.relname, a.attnum;
SELECT name, setting, context FROM pg_settings WHERE name = 'vecphi.stat_max';

-- Grants: stat_tenants to everyone (filtered in C), the others to
-- pg_read_all_stats and the security officer, the reset to the officer.
SELECT p.proname,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec,
	   has_function_privilege('pg_read_all_stats', p.oid, 'EXECUTE') AS read_all_stats,
	   has_function_privilege('vecphi_security_officer', p.oid, 'EXECUTE') AS officer
FROM pg_proc p WHERE p.pronamespace = 'vecphi'::regnamespace
  AND p.proname IN ('stat_tenants', 'stat_audit', 'stat_keys', 'stat_reset')
ORDER BY 1;
SELECT v, has_table_privilege('public', 'vecphi.' || v, 'SELECT') AS public_select
FROM unnest(ARRAY['stat_tenants', 'stat_audit', 'stat_keys']) v ORDER BY 1;

---------------------------------------------------------------------------
-- 2. Activity, counted where the audit records it
---------------------------------------------------------------------------
SELECT vecphi.create_tenant('mon_a') > 0 AS mon_a, vecphi.create_tenant('mon_b') > 0 AS mon_b;
CREATE ROLE regress_mon_owner NOLOGIN;
CREATE ROLE regress_mon_app NOLOGIN;
CREATE ROLE regress_mon_officer NOLOGIN IN ROLE vecphi_security_officer;
CREATE ROLE regress_mon_monitor NOLOGIN IN ROLE pg_monitor;
CREATE ROLE regress_mon_nobody NOLOGIN;
GRANT USAGE, CREATE ON SCHEMA public TO regress_mon_owner;
GRANT USAGE ON SCHEMA public TO regress_mon_app;

SET ROLE regress_mon_owner;
CREATE TABLE mon_docs (
	id int PRIMARY KEY,
	tenant text NOT NULL DEFAULT vecphi.tenant(),
	emb evector(3)
);
SELECT vecphi.protect('mon_docs', 'tenant');
CREATE INDEX mon_docs_emb ON mon_docs USING ehnsw (emb evector_l2_ops);
GRANT SELECT, INSERT ON mon_docs TO regress_mon_app;
RESET ROLE;

SET ROLE regress_mon_app;
BEGIN;
SELECT as_tenant('mon_a');
INSERT INTO mon_docs (id, emb) SELECT i, ('[' || i || ',1,1]')::evector FROM generate_series(1, 5) i;
COMMIT;
BEGIN;
SELECT as_tenant('mon_b');
INSERT INTO mon_docs (id, emb) SELECT i, ('[' || i || ',2,2]')::evector FROM generate_series(11, 13) i;
COMMIT;
RESET ROLE;

-- A copy of one of mon_a's values where mon_b's claims can reach it.
CREATE TABLE mon_stolen AS SELECT emb FROM mon_docs WHERE id = 1;
GRANT SELECT ON mon_stolen TO regress_mon_app;

SELECT vecphi.stat_reset() IS NOT NULL AS reset_before;
SELECT vecphi.audit_flush() >= 0 AS flushed;
CREATE TEMP TABLE mon_seq AS SELECT coalesce(max(seq), 0) AS seq FROM vecphi.audit_log;

SET ROLE regress_mon_app;
BEGIN;
SELECT as_tenant('mon_a');
SET LOCAL enable_seqscan = off;
SELECT id FROM mon_docs ORDER BY emb <-> '[1,1,1]' LIMIT 2;
SELECT id FROM mon_docs ORDER BY emb <-> '[4,1,1]' LIMIT 3;
SELECT count(vecphi.decrypt(emb)) AS decrypted FROM mon_docs WHERE id <= 3;
COMMIT;
BEGIN;
SELECT as_tenant('mon_a', 'nurse');
SELECT id FROM mon_docs ORDER BY emb <-> '[2,1,1]' LIMIT 1;
COMMIT;
BEGIN;
SELECT as_tenant('mon_b');
SELECT id FROM mon_docs ORDER BY emb <-> '[12,2,2]' LIMIT 2;
-- A denial: mon_a's value under mon_b's claims.
SELECT left(expect_error($$SELECT vecphi.decrypt(emb) FROM mon_stolen$$), 5) AS sqlstate;
COMMIT;
RESET ROLE;
SELECT vecphi.audit_flush() >= 0 AS flushed;

-- What the counters say for mon_a and mon_b ...
SELECT tenant, app_role, index_scans + exact_scans AS searches, reads,
	   rows_returned, decryptions, denials, break_glass_accesses,
	   last_activity IS NOT NULL AS active, datname = current_database() AS here, overflow
FROM vecphi.stat_tenants WHERE tenant IN ('mon_a', 'mon_b')
ORDER BY tenant, app_role;

-- ... is what the audit log holds since the reset: no difference.
CREATE TEMP VIEW mon_from_log AS
SELECT tenant, app_role,
	   count(*) FILTER (WHERE action = 'index_scan') AS index_scans,
	   count(*) FILTER (WHERE action = 'exact_scan') AS exact_scans,
	   count(*) FILTER (WHERE action = 'read') AS reads,
	   coalesce(sum(rows_returned) FILTER (WHERE action IN ('index_scan', 'exact_scan', 'read')), 0) AS rows_returned,
	   coalesce(sum(rows_returned) FILTER (WHERE action = 'decrypt'), 0) AS decryptions,
	   count(*) FILTER (WHERE action = 'denial') AS denials,
	   count(*) FILTER (WHERE action = 'permission_error') AS permission_errors
FROM vecphi.audit_log
WHERE seq > (SELECT seq FROM mon_seq) AND tenant IN ('mon_a', 'mon_b')
GROUP BY tenant, app_role;
CREATE TEMP VIEW mon_from_stats AS
SELECT tenant, app_role, index_scans, exact_scans, reads, rows_returned,
	   decryptions, denials, permission_errors
FROM vecphi.stat_tenants WHERE tenant IN ('mon_a', 'mon_b');
SELECT 'log only' AS side, * FROM (TABLE mon_from_log EXCEPT TABLE mon_from_stats) d
UNION ALL
SELECT 'stats only', * FROM (TABLE mon_from_stats EXCEPT TABLE mon_from_log) d;

---------------------------------------------------------------------------
-- 3. Who sees what
---------------------------------------------------------------------------
-- No claims, no special role: nothing.
SET ROLE regress_mon_app;
SELECT count(*) AS rows_without_claims FROM vecphi.stat_tenants;
-- Claims: only its own tenant, in this database (every app role of it).
BEGIN;
SELECT as_tenant('mon_b');
SELECT tenant, app_role, here FROM (
	SELECT tenant, app_role, datname = current_database() AS here FROM vecphi.stat_tenants) s
ORDER BY 1, 2;
SELECT count(*) AS other_tenants FROM vecphi.stat_tenants WHERE tenant IS DISTINCT FROM 'mon_b';
COMMIT;
-- The pipeline and key views are refused.
SELECT expect_error('SELECT * FROM vecphi.stat_audit') AS stat_audit;
SELECT expect_error('SELECT * FROM vecphi.stat_keys') AS stat_keys;
SELECT expect_error('SELECT vecphi.stat_audit()') AS stat_audit_fn;
RESET ROLE;

-- A GRANT does not widen it: the rule is in C (and the refusal is a denial).
GRANT EXECUTE ON FUNCTION vecphi.stat_audit(), vecphi.stat_keys() TO regress_mon_nobody;
SET ROLE regress_mon_nobody;
SELECT expect_error('SELECT * FROM vecphi.stat_audit()') AS granted_stat_audit;
SELECT expect_error('SELECT * FROM vecphi.stat_keys()') AS granted_stat_keys;
SELECT count(*) AS nobody_rows FROM vecphi.stat_tenants();
RESET ROLE;
REVOKE EXECUTE ON FUNCTION vecphi.stat_audit(), vecphi.stat_keys() FROM regress_mon_nobody;
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT db_user, action, outcome, detail FROM vecphi.audit_log
WHERE seq > (SELECT seq FROM mon_seq) AND db_user = 'regress_mon_nobody' ORDER BY seq;

-- pg_monitor and the security officer see every tenant, and the other views.
SET ROLE regress_mon_monitor;
SELECT array_agg(DISTINCT tenant ORDER BY tenant) FILTER (WHERE tenant LIKE 'mon_%') AS monitor_sees
FROM vecphi.stat_tenants;
SELECT records_written >= 0 AS audit_ok, stats_reset IS NOT NULL AS has_reset FROM vecphi.stat_audit;
SELECT dek_cache_hits >= 0 AND dek_cache_misses >= 0 AS keys_ok FROM vecphi.stat_keys;
RESET ROLE;
SET ROLE regress_mon_officer;
SELECT array_agg(DISTINCT tenant ORDER BY tenant) FILTER (WHERE tenant LIKE 'mon_%') AS officer_sees
FROM vecphi.stat_tenants;
SELECT records_written > 0 AS written, last_write IS NOT NULL AS has_last_write,
	   queued_records >= 0 AS queue_ok FROM vecphi.stat_audit;
RESET ROLE;

-- Key counters: the data keys came from the key directory, none failed here.
SELECT dek_cache_misses >= 0 AS misses, key_directory_failures = 0 AS no_failures,
	   kek_command_calls = 0 AS no_command FROM vecphi.stat_keys;

---------------------------------------------------------------------------
-- 4. Who may reset, and the reset is recorded
---------------------------------------------------------------------------
SET ROLE regress_mon_app;
SELECT expect_error('SELECT vecphi.stat_reset()') AS app_reset;
RESET ROLE;
SET ROLE regress_mon_monitor;
SELECT expect_error('SELECT vecphi.stat_reset()') AS monitor_reset;
RESET ROLE;
-- A GRANT does not widen the reset either.
GRANT EXECUTE ON FUNCTION vecphi.stat_reset() TO regress_mon_nobody;
SET ROLE regress_mon_nobody;
SELECT expect_error('SELECT vecphi.stat_reset()') AS granted_reset;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION vecphi.stat_reset() FROM regress_mon_nobody;
SELECT count(*) > 0 AS still_counted FROM vecphi.stat_tenants WHERE tenant LIKE 'mon_%';

SET ROLE regress_mon_officer;
SELECT vecphi.stat_reset() <= now() + interval '1 minute' AS officer_reset;
RESET ROLE;
SELECT count(*) AS after_reset FROM vecphi.stat_tenants WHERE tenant LIKE 'mon_%';
SELECT records_written, records_lost, records_quarantined FROM vecphi.stat_audit;
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT db_user, action, outcome, detail FROM vecphi.audit_log
WHERE seq > (SELECT seq FROM mon_seq) AND action = 'stats_reset' ORDER BY seq;
SELECT db_user, action, outcome, detail FROM vecphi.audit_log
WHERE seq > (SELECT seq FROM mon_seq) AND action = 'denial'
  AND detail LIKE 'permission denied to %vecphi statistics%' ORDER BY seq;

---------------------------------------------------------------------------
-- 5. Break-glass accesses
---------------------------------------------------------------------------
SET ROLE regress_mon_app;
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('mon_a') || '{"break_glass": "code blue"}'));
SELECT count(*) AS rows FROM (SELECT id FROM mon_docs ORDER BY emb <-> '[1,1,1]' LIMIT 2) s;
COMMIT;
RESET ROLE;
SELECT tenant, app_role, break_glass_accesses > 0 AS break_glass
FROM vecphi.stat_tenants WHERE tenant = 'mon_a';

---------------------------------------------------------------------------
-- Clean up
---------------------------------------------------------------------------
DROP TABLE mon_stolen;
DROP TABLE mon_docs;
DROP OWNED BY regress_mon_owner, regress_mon_app, regress_mon_officer,
	regress_mon_monitor, regress_mon_nobody;
DROP ROLE regress_mon_owner, regress_mon_app, regress_mon_officer,
	regress_mon_monitor, regress_mon_nobody;
