-- vecphi 0.1.0 -> 0.2.0.  Runs on ALTER EXTENSION vecphi UPDATE and, after
-- vecphi--0.1.0.sql, on every new CREATE EXTENSION vecphi: what is added here
-- exists in both, so the two paths cannot drift apart.  Same rules as the
-- install script: every name schema-qualified, every SECURITY DEFINER
-- function pins search_path.

\echo Use "ALTER EXTENSION vecphi UPDATE TO '0.2.0'" to load this file. \quit

-- #15 monitoring views (docs/monitoring.md)
-- Counters in shared memory (vecphi.stat_max entries, zero after a
-- restart).  Who sees what is decided in C (src/audit/auditstats.c), not
-- only by these GRANTs: a role that is not a superuser, pg_read_all_stats
-- (pg_monitor) or vecphi_security_officer member sees in stat_tenants only
-- its own claims' tenant in the current database, and is refused
-- stat_audit and stat_keys.
CREATE FUNCTION vecphi.stat_tenants(OUT datid oid, OUT tenant text,
									OUT app_role text, OUT index_scans bigint,
									OUT exact_scans bigint, OUT reads bigint,
									OUT rows_returned bigint,
									OUT decryptions bigint, OUT denials bigint,
									OUT permission_errors bigint,
									OUT break_glass_accesses bigint,
									OUT last_activity timestamptz,
									OUT overflow boolean)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'vecphi_stat_tenants'
	LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION vecphi.stat_tenants() IS
	'activity counted from the audit records, per database, tenant and app role; see the view vecphi.stat_tenants';

CREATE VIEW vecphi.stat_tenants AS
	SELECT s.datid, d.datname, s.tenant, s.app_role, s.index_scans,
		   s.exact_scans, s.reads, s.rows_returned, s.decryptions, s.denials,
		   s.permission_errors, s.break_glass_accesses, s.last_activity,
		   s.overflow
	FROM vecphi.stat_tenants() s
		 LEFT JOIN pg_catalog.pg_database d ON d.oid = s.datid;
COMMENT ON VIEW vecphi.stat_tenants IS
	'similarity scans, rows returned, decryptions, denials and break-glass accesses per database, tenant and app role (others than pg_read_all_stats, pg_monitor and vecphi_security_officer see only their claims'' tenant)';
GRANT SELECT ON vecphi.stat_tenants TO PUBLIC;

CREATE FUNCTION vecphi.stat_audit(OUT channels_in_use integer,
								  OUT writers_running integer,
								  OUT queued_records bigint,
								  OUT queued_bytes bigint,
								  OUT lost_pending bigint,
								  OUT oldest_queued timestamptz,
								  OUT writer_lag interval,
								  OUT records_written bigint,
								  OUT records_lost bigint,
								  OUT records_quarantined bigint,
								  OUT records_discarded bigint,
								  OUT last_write timestamptz,
								  OUT stats_reset timestamptz)
	RETURNS record
	AS 'MODULE_PATHNAME', 'vecphi_stat_audit'
	LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION vecphi.stat_audit() IS
	'the audit queue and writer: see the view vecphi.stat_audit';
REVOKE ALL ON FUNCTION vecphi.stat_audit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.stat_audit()
	TO pg_read_all_stats, vecphi_security_officer;
CREATE VIEW vecphi.stat_audit AS SELECT * FROM vecphi.stat_audit();
COMMENT ON VIEW vecphi.stat_audit IS
	'the audit queue (records and bytes waiting, the oldest one''s age) and what its writers committed, lost, quarantined since the last reset';
REVOKE ALL ON vecphi.stat_audit FROM PUBLIC;
GRANT SELECT ON vecphi.stat_audit TO pg_read_all_stats, vecphi_security_officer;

CREATE FUNCTION vecphi.stat_keys(OUT dek_cache_hits bigint,
								 OUT dek_cache_misses bigint,
								 OUT key_directory_reads bigint,
								 OUT key_directory_failures bigint,
								 OUT kek_command_calls bigint,
								 OUT kek_command_failures bigint,
								 OUT kek_destroy_command_calls bigint,
								 OUT kek_destroy_command_failures bigint,
								 OUT last_failure timestamptz,
								 OUT last_failure_provider text,
								 OUT stats_reset timestamptz)
	RETURNS record
	AS 'MODULE_PATHNAME', 'vecphi_stat_keys'
	LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION vecphi.stat_keys() IS
	'data-key cache and KEK provider calls: see the view vecphi.stat_keys';
REVOKE ALL ON FUNCTION vecphi.stat_keys() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.stat_keys()
	TO pg_read_all_stats, vecphi_security_officer;
CREATE VIEW vecphi.stat_keys AS SELECT * FROM vecphi.stat_keys();
COMMENT ON VIEW vecphi.stat_keys IS
	'data-key cache hits and misses, KEK provider calls and failures by provider kind, since the last reset';
REVOKE ALL ON vecphi.stat_keys FROM PUBLIC;
GRANT SELECT ON vecphi.stat_keys TO pg_read_all_stats, vecphi_security_officer;

CREATE FUNCTION vecphi.stat_reset() RETURNS timestamptz
	AS 'MODULE_PATHNAME', 'vecphi_stat_reset'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.stat_reset() IS
	'zero every vecphi monitoring counter (all databases); superuser or vecphi_security_officer; recorded in the audit log (stats_reset) first';
REVOKE ALL ON FUNCTION vecphi.stat_reset() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.stat_reset() TO vecphi_security_officer;
