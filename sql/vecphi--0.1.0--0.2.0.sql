-- vecphi 0.1.0 -> 0.2.0.  Runs on ALTER EXTENSION vecphi UPDATE and, after
-- vecphi--0.1.0.sql, on every new CREATE EXTENSION vecphi: what is added here
-- exists in both, so the two paths cannot drift apart.  Same rules as the
-- install script: every name schema-qualified, every SECURITY DEFINER
-- function pins search_path.

\echo Use "ALTER EXTENSION vecphi UPDATE TO '0.2.0'" to load this file. \quit

---------------------------------------------------------------------------
-- #15 query vectors: evector_query, a plaintext query vector as drivers
-- pass it (real[], float8[], a '[..]' literal, pgvector's binary layout),
-- never encrypted and never printed; distances and ehnsw ordering between
-- evector and evector_query.  No cast evector_query -> evector exists on
-- purpose: encrypting a search term under the claimant's key is not what
-- the caller asked for (write real[] or '[..]' to an evector column).
---------------------------------------------------------------------------

CREATE TYPE evector_query;

CREATE FUNCTION evector_query_in(cstring, oid, integer) RETURNS evector_query
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION evector_query_in(cstring, oid, integer) IS
	'''[1,2,3]'' as a plaintext query vector (checked as evector input, never encrypted)';

CREATE FUNCTION evector_query_out(evector_query) RETURNS cstring
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION evector_query_out(evector_query) IS
	'evector_query(N dimensions): never the values, so EXPLAIN and logs cannot show them';

CREATE FUNCTION evector_query_recv(internal, oid, integer) RETURNS evector_query
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION evector_query_recv(internal, oid, integer) IS
	'binary input: pgvector''s vector layout (int16 dimensions, int16 zero, float4 values; network byte order)';

CREATE FUNCTION evector_query_send(evector_query) RETURNS bytea
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION evector_query_send(evector_query) IS
	'binary output: pgvector''s vector layout, values included (to the client that asked)';

CREATE TYPE evector_query (
	INPUT = evector_query_in,
	OUTPUT = evector_query_out,
	RECEIVE = evector_query_recv,
	SEND = evector_query_send,
	STORAGE = plain,
	ALIGNMENT = int4
);
COMMENT ON TYPE evector_query IS
	'plaintext query vector for searching evector columns; never encrypted, never printed, not protected data';

CREATE FUNCTION vecphi.array_to_evector_query(real[]) RETURNS evector_query
	AS 'MODULE_PATHNAME', 'evector_query_from_array'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.array_to_evector_query(real[]) IS
	'real[] as a query vector (one-dimensional, no NULL, NaN or infinity)';
CREATE FUNCTION vecphi.array_to_evector_query(double precision[]) RETURNS evector_query
	AS 'MODULE_PATHNAME', 'evector_query_from_array'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.array_to_evector_query(double precision[]) IS
	'double precision[] as a query vector (each value must fit real)';
CREATE FUNCTION vecphi.array_to_evector_query(integer[]) RETURNS evector_query
	AS 'MODULE_PATHNAME', 'evector_query_from_array'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.array_to_evector_query(integer[]) IS
	'integer[] as a query vector';
-- psycopg sends a Python list of small ints as smallint[], of large ones as
-- bigint[].
CREATE FUNCTION vecphi.array_to_evector_query(smallint[]) RETURNS evector_query
	AS 'MODULE_PATHNAME', 'evector_query_from_array'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.array_to_evector_query(smallint[]) IS
	'smallint[] as a query vector';
CREATE FUNCTION vecphi.array_to_evector_query(bigint[]) RETURNS evector_query
	AS 'MODULE_PATHNAME', 'evector_query_from_array'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.array_to_evector_query(bigint[]) IS
	'bigint[] as a query vector (values beyond 2^24 lose precision as real does)';
CREATE FUNCTION vecphi.array_to_evector_query(numeric[]) RETURNS evector_query
	AS 'MODULE_PATHNAME', 'evector_query_from_array'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.array_to_evector_query(numeric[]) IS
	'numeric[] as a query vector (each value must fit real)';

CREATE CAST (real[] AS evector_query)
	WITH FUNCTION vecphi.array_to_evector_query(real[]) AS IMPLICIT;
CREATE CAST (double precision[] AS evector_query)
	WITH FUNCTION vecphi.array_to_evector_query(double precision[]) AS IMPLICIT;
CREATE CAST (integer[] AS evector_query)
	WITH FUNCTION vecphi.array_to_evector_query(integer[]) AS IMPLICIT;
CREATE CAST (smallint[] AS evector_query)
	WITH FUNCTION vecphi.array_to_evector_query(smallint[]) AS IMPLICIT;
CREATE CAST (bigint[] AS evector_query)
	WITH FUNCTION vecphi.array_to_evector_query(bigint[]) AS IMPLICIT;
CREATE CAST (numeric[] AS evector_query)
	WITH FUNCTION vecphi.array_to_evector_query(numeric[]) AS IMPLICIT;

CREATE FUNCTION vector_dims(evector_query) RETURNS integer
	AS 'MODULE_PATHNAME', 'evector_query_dims'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vector_dims(evector_query) IS 'number of dimensions';

-- Distances with a plaintext query vector on either side.  The evector
-- operand is decrypted as before and needs its tenant's claims; COST as
-- the evector-evector functions (one envelope per call).
CREATE FUNCTION l2_distance(evector, evector_query) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_l2_distance_query'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION l2_distance(evector, evector_query) IS 'Euclidean distance';
CREATE FUNCTION l2_distance(evector_query, evector) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_l2_distance_query_rev'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION l2_distance(evector_query, evector) IS 'Euclidean distance';

CREATE FUNCTION cosine_distance(evector, evector_query) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_cosine_distance_query'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION cosine_distance(evector, evector_query) IS
	'1 - cosine similarity; NaN when either vector is zero, as pgvector';
CREATE FUNCTION cosine_distance(evector_query, evector) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_cosine_distance_query_rev'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION cosine_distance(evector_query, evector) IS
	'1 - cosine similarity; NaN when either vector is zero, as pgvector';

CREATE FUNCTION inner_product(evector, evector_query) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_inner_product_query'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION inner_product(evector, evector_query) IS 'inner product';
CREATE FUNCTION inner_product(evector_query, evector) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_inner_product_query_rev'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION inner_product(evector_query, evector) IS 'inner product';

CREATE FUNCTION vecphi.negative_inner_product(evector, evector_query) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_negative_inner_product_query'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION vecphi.negative_inner_product(evector, evector_query) IS
	'negative inner product, the <#> operator';
CREATE FUNCTION vecphi.negative_inner_product(evector_query, evector) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_negative_inner_product_query_rev'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION vecphi.negative_inner_product(evector_query, evector) IS
	'negative inner product, the <#> operator';

CREATE OPERATOR <-> (
	LEFTARG = evector, RIGHTARG = evector_query, FUNCTION = l2_distance,
	COMMUTATOR = '<->'
);
COMMENT ON OPERATOR <-> (evector, evector_query) IS 'Euclidean distance';
CREATE OPERATOR <-> (
	LEFTARG = evector_query, RIGHTARG = evector, FUNCTION = l2_distance,
	COMMUTATOR = '<->'
);
COMMENT ON OPERATOR <-> (evector_query, evector) IS 'Euclidean distance';

CREATE OPERATOR <=> (
	LEFTARG = evector, RIGHTARG = evector_query, FUNCTION = cosine_distance,
	COMMUTATOR = '<=>'
);
COMMENT ON OPERATOR <=> (evector, evector_query) IS 'cosine distance';
CREATE OPERATOR <=> (
	LEFTARG = evector_query, RIGHTARG = evector, FUNCTION = cosine_distance,
	COMMUTATOR = '<=>'
);
COMMENT ON OPERATOR <=> (evector_query, evector) IS 'cosine distance';

CREATE OPERATOR <#> (
	LEFTARG = evector, RIGHTARG = evector_query, FUNCTION = vecphi.negative_inner_product,
	COMMUTATOR = '<#>'
);
COMMENT ON OPERATOR <#> (evector, evector_query) IS 'negative inner product';
CREATE OPERATOR <#> (
	LEFTARG = evector_query, RIGHTARG = evector, FUNCTION = vecphi.negative_inner_product,
	COMMUTATOR = '<#>'
);
COMMENT ON OPERATOR <#> (evector_query, evector) IS 'negative inner product';

-- An ehnsw index orders by distance to a plaintext query vector too: the
-- cross-type member of each family (the scan tells the two apart by the
-- ordering key's subtype, src/ehnsw/ehnswscan.c).
ALTER OPERATOR FAMILY evector_l2_ops USING ehnsw ADD
	OPERATOR 1 <-> (evector, evector_query) FOR ORDER BY float_ops;
ALTER OPERATOR FAMILY evector_cosine_ops USING ehnsw ADD
	OPERATOR 1 <=> (evector, evector_query) FOR ORDER BY float_ops;
ALTER OPERATOR FAMILY evector_ip_ops USING ehnsw ADD
	OPERATOR 1 <#> (evector, evector_query) FOR ORDER BY float_ops;
-- #15 key tables written by logical replication: a subscriber's backends
-- drop their cached keys when the apply worker (which fires row triggers
-- only, hence FOR EACH ROW, plus TRUNCATE) writes the key tables, as they do
-- when key administration runs locally (docs/operations.md).
CREATE FUNCTION vecphi.keyring_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'vecphi_keyring_changed'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.keyring_changed() IS
	'trigger: tell every backend that the keyring changed (logical replication apply, direct DML)';
REVOKE ALL ON FUNCTION vecphi.keyring_changed() FROM PUBLIC;

DO $keyring_triggers$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['tenants', 'keyring', 'keyring_identity', 'shredded_tenants']
	LOOP
		EXECUTE pg_catalog.format(
			'CREATE TRIGGER keyring_changed AFTER INSERT OR UPDATE OR DELETE ON vecphi.%I '
			'FOR EACH ROW EXECUTE FUNCTION vecphi.keyring_changed()', t);
		EXECUTE pg_catalog.format(
			'CREATE TRIGGER keyring_truncated AFTER TRUNCATE ON vecphi.%I '
			'FOR EACH STATEMENT EXECUTE FUNCTION vecphi.keyring_changed()', t);
		EXECUTE pg_catalog.format('ALTER TABLE vecphi.%I ENABLE ALWAYS TRIGGER keyring_changed', t);
		EXECUTE pg_catalog.format('ALTER TABLE vecphi.%I ENABLE ALWAYS TRIGGER keyring_truncated', t);
	END LOOP;
END
$keyring_triggers$;

-- #15 migrating from pgvector: vecphi.migrate_column() and its state
-- (docs/migration.md).  The C functions check their caller (the table's
-- owner who is a member of vecphi_key_admin, or a superuser); they are
-- granted to vecphi_key_admin only.

CREATE TABLE vecphi.migrations (
	relid			oid NOT NULL,
	table_name		text NOT NULL,
	column_name		name NOT NULL,
	tenant_column	name NOT NULL,
	staging_column	name NOT NULL,
	source_type		text NOT NULL,
	target_type		text NOT NULL,
	rows_done		bigint NOT NULL DEFAULT 0,
	rows_left		bigint NOT NULL DEFAULT 0,
	batches			bigint NOT NULL DEFAULT 0,
	started			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	finished		timestamptz,
	scrubbed		timestamptz,
	migrated_by		name NOT NULL,
	PRIMARY KEY (relid, column_name)
);
COMMENT ON TABLE vecphi.migrations IS
	'progress of vecphi.migrate_column(): rows done and left per migrated column, when it started, finished and was scrubbed';
REVOKE ALL ON vecphi.migrations FROM PUBLIC;
GRANT SELECT ON vecphi.migrations TO vecphi_key_admin, vecphi_security_officer;

CREATE FUNCTION vecphi.migrate_start(tbl regclass, column_name name, tenant_column name)
RETURNS boolean
	AS 'MODULE_PATHNAME', 'vecphi_migrate_start'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.migrate_start(regclass, name, name) IS
	'vecphi.migrate_column(), step 1: add the staging column and the state row, or resume; false when migrated already';

CREATE FUNCTION vecphi.migrate_batch(tbl regclass, column_name name, batch_size integer)
RETURNS boolean
	AS 'MODULE_PATHNAME', 'vecphi_migrate_batch'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.migrate_batch(regclass, name, integer) IS
	'vecphi.migrate_column(), step 2: encrypt one batch of rows, each under its own tenant''s key; false when none was left';

CREATE FUNCTION vecphi.migrate_finish(tbl regclass, column_name name)
RETURNS void
	AS 'MODULE_PATHNAME', 'vecphi_migrate_finish'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.migrate_finish(regclass, name) IS
	'vecphi.migrate_column(), step 3: the last rows under lock, the column swap, the index rebuilt as ehnsw';

CREATE FUNCTION vecphi.migrate_scrub(tbl regclass, column_name name)
RETURNS boolean
	AS 'MODULE_PATHNAME', 'vecphi_migrate_scrub'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.migrate_scrub(regclass, name) IS
	'vecphi.migrate_column(), step 4: vecphi.scrub() of the table, recorded; true when complete';

-- SECURITY INVOKER and no SET clause: both are needed for COMMIT between
-- batches.  Every name is qualified; the C functions check the caller.
CREATE PROCEDURE vecphi.migrate_column(tbl regclass, column_name name,
	tenant_column name, batch_size integer DEFAULT 1000)
LANGUAGE plpgsql AS $$
BEGIN
	IF vecphi.migrate_start(tbl, column_name, tenant_column) THEN
		COMMIT;
		WHILE vecphi.migrate_batch(tbl, column_name, batch_size) LOOP
			COMMIT;
		END LOOP;
		PERFORM vecphi.migrate_finish(tbl, column_name);
	END IF;
	COMMIT;
	PERFORM vecphi.migrate_scrub(tbl, column_name);
	COMMIT;
END
$$;
COMMENT ON PROCEDURE vecphi.migrate_column(regclass, name, name, integer) IS
	'encrypt a plaintext column (vector, real[], float8[] -> evector; text -> etext) row by row under each row''s own tenant''s key, in committed batches; resumable; swaps the column in, rebuilds its index as ehnsw, scrubs; table owner in vecphi_key_admin';

REVOKE ALL ON FUNCTION vecphi.migrate_start(regclass, name, name),
	vecphi.migrate_batch(regclass, name, integer),
	vecphi.migrate_finish(regclass, name),
	vecphi.migrate_scrub(regclass, name) FROM PUBLIC;
REVOKE ALL ON PROCEDURE vecphi.migrate_column(regclass, name, name, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.migrate_start(regclass, name, name),
	vecphi.migrate_batch(regclass, name, integer),
	vecphi.migrate_finish(regclass, name),
	vecphi.migrate_scrub(regclass, name) TO vecphi_key_admin;
GRANT EXECUTE ON PROCEDURE vecphi.migrate_column(regclass, name, name, integer) TO vecphi_key_admin;

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

-- #16 scrubbing a Citus distributed table (docs/citus.md).  The C function
-- keeps its work under a new name, vecphi.scrub_local(); vecphi.scrub()
-- runs it on the table itself (on a Citus coordinator: the shell table,
-- whose file keeps the rows it held before create_distributed_table() until
-- they are truncated) and, when the table is distributed, on every shard
-- placement through Citus, and adds the figures up.  Runs as the caller:
-- the owner check is scrub_local's, here and on every worker.
CREATE FUNCTION vecphi.scrub_local(tbl regclass,
	OUT pages bigint, OUT pages_scrubbed bigint, OUT bytes_scrubbed bigint,
	OUT index_elements_removed bigint, OUT pages_pending bigint,
	OUT complete boolean)
RETURNS record
	AS 'MODULE_PATHNAME', 'vecphi_scrub'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.scrub_local(regclass) IS
	'vecphi.scrub() of this node''s table only, never its Citus shard placements; table owner only';

CREATE OR REPLACE FUNCTION vecphi.scrub(tbl regclass,
	OUT pages bigint, OUT pages_scrubbed bigint, OUT bytes_scrubbed bigint,
	OUT index_elements_removed bigint, OUT pages_pending bigint,
	OUT complete boolean)
RETURNS record
	LANGUAGE plpgsql STRICT VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	placement record;
	figures text[];
BEGIN
	SELECT s.pages, s.pages_scrubbed, s.bytes_scrubbed,
		   s.index_elements_removed, s.pages_pending, s.complete
	  INTO pages, pages_scrubbed, bytes_scrubbed,
		   index_elements_removed, pages_pending, complete
	  FROM vecphi.scrub_local(tbl) s;

	-- Two statements: the second names a Citus catalog, which a server
	-- without Citus must never plan.
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RETURN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d
				   WHERE d.logicalrelid OPERATOR(pg_catalog.=) tbl) THEN
		RETURN;
	END IF;

	FOR placement IN
		SELECT r.nodename, r.nodeport, r.shardid, r.success, r.result
		  FROM pg_catalog.run_command_on_placements(tbl,
			'SELECT pg_catalog.concat_ws('','', s.pages, s.pages_scrubbed, '
			's.bytes_scrubbed, s.index_elements_removed, s.pages_pending, '
			's.complete) FROM vecphi.scrub_local(%L) s') r
	LOOP
		IF NOT placement.success THEN
			RAISE EXCEPTION 'could not scrub shard % of "%" on %:%',
				placement.shardid, tbl::text, placement.nodename, placement.nodeport
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'The node answered: ' OPERATOR(pg_catalog.||) placement.result,
					  HINT = 'Nothing was rolled back: the placements scrubbed before it stay scrubbed. Fix the cause and run vecphi.scrub() again.';
		END IF;
		figures := pg_catalog.string_to_array(placement.result, ',');
		pages := pages OPERATOR(pg_catalog.+) figures[1]::bigint;
		pages_scrubbed := pages_scrubbed OPERATOR(pg_catalog.+) figures[2]::bigint;
		bytes_scrubbed := bytes_scrubbed OPERATOR(pg_catalog.+) figures[3]::bigint;
		index_elements_removed := index_elements_removed OPERATOR(pg_catalog.+) figures[4]::bigint;
		pages_pending := pages_pending OPERATOR(pg_catalog.+) figures[5]::bigint;
		complete := complete AND figures[6]::boolean;
	END LOOP;
END
$$;
COMMENT ON FUNCTION vecphi.scrub(regclass) IS
	'erase deleted rows now: prune and zero the free space of the table''s heap and TOAST pages (WAL-logged), remove their ehnsw elements, and record the erasure in the audit log; on a Citus distributed table, on every shard placement too; table owner only';

-- #16 the audit across a Citus cluster (docs/citus.md).  Each node keeps
-- its own chain; these read every node's through Citus, as the caller (a
-- security officer on every node: Citus propagates roles and grants).  On
-- a Citus node, records of shards name the distributed table, and the
-- detail carries "citus: shard N, transaction NODE:NUMBER, gpid G", which
-- the columns citus_transaction and citus_gpid below take apart.
CREATE FUNCTION vecphi.cluster_audit_log(since timestamptz DEFAULT now() - interval '1 hour')
RETURNS TABLE (nodeid integer, seq bigint, at timestamptz, db_user text,
	backend_pid integer, statement_id bigint, subject text, tenant text,
	app_role text, purpose text, break_glass boolean, break_glass_reason text,
	action text, relation text, index_name text, rows_returned bigint,
	row_ids text[], query_fingerprint text, outcome text, detail text,
	citus_transaction text, citus_gpid bigint)
	LANGUAGE plpgsql STRICT VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	node record;
BEGIN
	IF pg_catalog.to_regproc('pg_catalog.run_command_on_all_nodes') IS NULL THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'vecphi.audit_log holds this server''s records.';
	END IF;
	FOR node IN
		SELECT r.nodeid, r.success, r.result
		  FROM pg_catalog.run_command_on_all_nodes(pg_catalog.format(
			'SELECT COALESCE(pg_catalog.json_agg(a ORDER BY a.seq), ''[]''::pg_catalog.json) '
			'FROM vecphi.audit_log a WHERE a.at OPERATOR(pg_catalog.>=) %L', since)) r
		 ORDER BY r.nodeid
	LOOP
		IF NOT node.success THEN
			RAISE EXCEPTION 'could not read the audit log of node %', node.nodeid
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'The node answered: ' OPERATOR(pg_catalog.||) node.result,
					  HINT = 'The caller needs SELECT on vecphi.audit_log on every node (vecphi_security_officer).';
		END IF;
		RETURN QUERY
			SELECT node.nodeid, a.seq, a.at, a.db_user, a.backend_pid,
				   a.statement_id, a.subject, a.tenant, a.app_role, a.purpose,
				   a.break_glass, a.break_glass_reason, a.action, a.relation,
				   a.index_name, a.rows_returned, a.row_ids, a.query_fingerprint,
				   a.outcome, a.detail,
				   pg_catalog.substring(a.detail, 'citus:.* transaction ([0-9]+:[0-9]+)'),
				   pg_catalog.substring(a.detail, 'citus:.* gpid ([0-9]+)')::bigint
			  FROM pg_catalog.json_populate_recordset(NULL::vecphi.audit_log,
													  node.result::json) a;
	END LOOP;
END
$$;
COMMENT ON FUNCTION vecphi.cluster_audit_log(timestamptz) IS
	'the audit records of every node of a Citus cluster since a time, with the distributed transaction and global PID that join a worker''s records to the coordinator''s; security officer';
REVOKE ALL ON FUNCTION vecphi.cluster_audit_log(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.cluster_audit_log(timestamptz) TO vecphi_security_officer;

CREATE FUNCTION vecphi.verify_cluster_audit()
RETURNS TABLE (nodeid integer, ok boolean, rows_checked bigint,
	first_bad_seq bigint, problem text, records_lost bigint)
	LANGUAGE plpgsql STRICT VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	node record;
BEGIN
	IF pg_catalog.to_regproc('pg_catalog.run_command_on_all_nodes') IS NULL THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Use vecphi.verify_audit() on a single server.';
	END IF;
	FOR node IN
		SELECT r.nodeid, r.success, r.result
		  FROM pg_catalog.run_command_on_all_nodes(
			'SELECT pg_catalog.row_to_json(v) FROM vecphi.verify_audit() v') r
		 ORDER BY r.nodeid
	LOOP
		IF NOT node.success THEN
			-- A node that cannot answer is a failed check, not an error:
			-- the others' results still count.
			RETURN QUERY SELECT node.nodeid, false, NULL::bigint, NULL::bigint,
				'the node could not verify its audit log: ' OPERATOR(pg_catalog.||) node.result,
				NULL::bigint;
			CONTINUE;
		END IF;
		RETURN QUERY
			SELECT node.nodeid, j.ok, j.rows_checked, j.first_bad_seq, j.problem, j.records_lost
			  FROM pg_catalog.json_to_record(node.result::json)
				AS j(ok boolean, rows_checked bigint, first_bad_seq bigint,
					 problem text, records_lost bigint);
	END LOOP;
END
$$;
COMMENT ON FUNCTION vecphi.verify_cluster_audit() IS
	'vecphi.verify_audit() on every node of a Citus cluster: one row per node; security officer';
REVOKE ALL ON FUNCTION vecphi.verify_cluster_audit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.verify_cluster_audit() TO vecphi_security_officer;
-- #16 citus policies: protect() on a table Citus manages gets a policy
-- shape that survives Citus's copies on the shards (docs/threat-model.md,
-- "Row security on a Citus cluster").

-- The category rule of protect() as one function of a plain column: Citus
-- cannot copy a policy holding a subquery or "IS NOT NULL" over a function
-- call.  SQL, inlined into the shard's plan.
CREATE FUNCTION vecphi.category_visible(category text) RETURNS boolean
	LANGUAGE sql STABLE PARALLEL SAFE
	AS $$
		SELECT vecphi.break_glass() IS NOT NULL
			OR category OPERATOR(pg_catalog.=) ANY (vecphi.allowed_categories())
	$$;
COMMENT ON FUNCTION vecphi.category_visible(text) IS
	'true when the claimant may see rows of this category: granted to its role, or any under break-glass';

-- The write check of protect() over plain columns: Citus cannot copy a
-- policy holding a whole-row reference (row_owned_by_claimant(t.*)).
CREATE FUNCTION vecphi.values_owned_by_claimant(VARIADIC "any") RETURNS boolean
	AS 'MODULE_PATHNAME', 'vecphi_values_owned_by_claimant'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.values_owned_by_claimant("any") IS
	'true when every evector and etext value in the arguments (domains, arrays and composites included) is NULL or the claimant tenant''s ciphertext';

CREATE OR REPLACE FUNCTION vecphi.protect(tbl regclass, tenant_column name,
							   category_column name DEFAULT NULL,
							   binding_label text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $protect$
DECLARE
	visible text;
	writable text;
	bound_visible text;
	part record;
	pol record;
	colname name;
	coltype regtype;
	kind "char";
	distributed boolean := false;
BEGIN
	IF tbl IS NULL OR tenant_column IS NULL THEN
		RAISE EXCEPTION 'table and tenant column must not be NULL' USING ERRCODE = '22004';
	END IF;
	SELECT relkind INTO kind FROM pg_class WHERE oid = tbl;
	IF kind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809';
	END IF;
	FOREACH colname IN ARRAY ARRAY[tenant_column, category_column] LOOP
		CONTINUE WHEN colname IS NULL;
		SELECT atttypid::regtype INTO coltype FROM pg_attribute
		WHERE attrelid = tbl AND attname = colname AND attnum > 0 AND NOT attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'column "%" of relation % does not exist', colname, tbl
				USING ERRCODE = '42703';
		END IF;
		IF coltype NOT IN ('text'::regtype, 'character varying'::regtype) THEN
			RAISE EXCEPTION 'column "%" of relation % has type %, not text', colname, tbl, coltype
				USING ERRCODE = '42804',
					  DETAIL = 'Tenant and category columns are compared with the text claims.';
		END IF;
	END LOOP;

	-- Owner code and weakening: refused (or vouched for by the security
	-- officer) before anything changes; locks the table and its inheritors.
	PERFORM vecphi.protect_check(tbl, tenant_column, category_column);

	-- A table Citus manages (distributed, reference or Citus local table):
	-- Citus recreates a table's policies on its shards from their
	-- deparsed text, and that copy loses AS RESTRICTIVE, cannot take a
	-- subquery, an IS NULL over a function call or a whole-row reference.
	-- So such a table gets policies of plain function calls over plain
	-- columns whose meaning does not depend on AS RESTRICTIVE: the
	-- permissive base policy holds the same condition as the restrictive
	-- ones (not "true"), so whether a shard's copies are restrictive or
	-- permissive (OR-ed), a row is allowed exactly when that condition
	-- holds.
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
		EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid OPERATOR(pg_catalog.=) $1)'
			INTO distributed USING tbl;
	END IF;
	IF distributed THEN
		-- Tenant (and category); writes also carry only the claimant's
		-- ciphertext, checked over the columns that can hold some (every
		-- column but those of plain base types other than evector/etext:
		-- a column added later needs protect() again).  Binding (row_bound,
		-- the binding trigger) is not checked on such a table yet
		-- (docs/threat-model.md).
		visible := format('%I OPERATOR(pg_catalog.=) vecphi.tenant()', tenant_column);
		IF category_column IS NOT NULL THEN
			visible := visible || format(' AND vecphi.category_visible(%I)', category_column);
		END IF;
		SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO bound_visible
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_type b ON b.oid = t.typbasetype
		WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
		  AND NOT (coalesce(b.typtype, t.typtype) = 'b'
				   AND coalesce(b.typcategory, t.typcategory) <> 'A'
				   AND coalesce(b.typname, t.typname) NOT IN ('evector', 'etext'));
		writable := visible;
		IF bound_visible IS NOT NULL THEN
			writable := writable || format(' AND vecphi.values_owned_by_claimant(%s)', bound_visible);
		END IF;
		EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
		EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
		EXECUTE format('ALTER TABLE %s SET (vacuum_index_cleanup = on)', tbl);
		FOR pol IN
			SELECT polname FROM pg_policy
			WHERE polrelid = tbl
			  AND polname IN ('vecphi_base', 'vecphi_select', 'vecphi_insert',
							  'vecphi_update', 'vecphi_delete')
		LOOP
			EXECUTE format('DROP POLICY %I ON %s', pol.polname, tbl);
		END LOOP;
		EXECUTE format('CREATE POLICY vecphi_base ON %s AS PERMISSIVE FOR ALL USING (%s) WITH CHECK (%s)',
					   tbl, visible, writable);
		EXECUTE format('CREATE POLICY vecphi_select ON %s AS RESTRICTIVE FOR SELECT USING (%s)',
					   tbl, visible);
		EXECUTE format('CREATE POLICY vecphi_insert ON %s AS RESTRICTIVE FOR INSERT WITH CHECK (%s)',
					   tbl, writable);
		EXECUTE format('CREATE POLICY vecphi_update ON %s AS RESTRICTIVE FOR UPDATE USING (%s) WITH CHECK (%s)',
					   tbl, visible, writable);
		EXECUTE format('CREATE POLICY vecphi_delete ON %s AS RESTRICTIVE FOR DELETE USING (%s)',
					   tbl, visible);
		RETURN;
	END IF;

	-- (SELECT ...) makes each claim an init plan: evaluated once per
	-- statement, not once per row.
	visible := format('%I = (SELECT vecphi.tenant())', tenant_column);
	IF category_column IS NOT NULL THEN
		visible := visible || format(
			' AND ((SELECT vecphi.break_glass()) IS NOT NULL'
			' OR %I = ANY ((SELECT vecphi.allowed_categories())::text[]))', category_column);
	END IF;

	-- A partitioned table's partitions are tables of their own: a query
	-- naming a partition directly sees only the partition's policies.
	-- Partitions attached later need protect() too.
	FOR part IN
		SELECT relid FROM pg_partition_tree(tbl)
		UNION SELECT tbl
	LOOP
		-- Writes must carry only the claimant's ciphertext: every evector or
		-- etext value in the new row, whatever column, domain or array.
		writable := visible || format(' AND vecphi.row_owned_by_claimant(%I.*)',
									  (SELECT relname FROM pg_class WHERE oid = part.relid));
		-- Binding (section 4): rows read or written must hold ciphertext
		-- bound to them (row_bound last: tenant and ownership first).
		bound_visible := visible || format(' AND vecphi.row_bound(%I.*)',
										   (SELECT relname FROM pg_class WHERE oid = part.relid));
		writable := writable || format(' AND vecphi.row_bound(%I.*)',
									   (SELECT relname FROM pg_class WHERE oid = part.relid));

		EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part.relid::regclass);
		EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', part.relid::regclass);
		-- VACUUM must always clean the indexes, so that a deleted row's
		-- ciphertext leaves ehnsw pages too; by default PostgreSQL skips
		-- index cleanup when few pages have dead rows.
		IF (SELECT relkind FROM pg_class WHERE oid = part.relid) = 'r' THEN
			EXECUTE format('ALTER TABLE %s SET (vacuum_index_cleanup = on)', part.relid::regclass);
		END IF;

		-- Calling protect() again replaces its policies (say, after a new
		-- category column).
		FOR pol IN
			SELECT polname FROM pg_policy
			WHERE polrelid = part.relid
			  AND polname IN ('vecphi_base', 'vecphi_select', 'vecphi_insert',
							  'vecphi_update', 'vecphi_delete')
		LOOP
			EXECUTE format('DROP POLICY %I ON %s', pol.polname, part.relid::regclass);
		END LOOP;

		-- vecphi's rules are RESTRICTIVE: they hold whatever other
		-- (permissive) policies the table has or gets.  Row-level security
		-- needs one permissive policy to allow anything at all.
		EXECUTE format('CREATE POLICY vecphi_base ON %s AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true)',
					   part.relid::regclass);
		EXECUTE format('CREATE POLICY vecphi_select ON %s AS RESTRICTIVE FOR SELECT USING (%s)',
					   part.relid::regclass, bound_visible);
		EXECUTE format('CREATE POLICY vecphi_insert ON %s AS RESTRICTIVE FOR INSERT WITH CHECK (%s)',
					   part.relid::regclass, writable);
		EXECUTE format('CREATE POLICY vecphi_update ON %s AS RESTRICTIVE FOR UPDATE USING (%s) WITH CHECK (%s)',
					   part.relid::regclass, bound_visible, writable);
		EXECUTE format('CREATE POLICY vecphi_delete ON %s AS RESTRICTIVE FOR DELETE USING (%s)',
					   part.relid::regclass, bound_visible);
	END LOOP;

	-----------------------------------------------------------------------
	-- Binding (issue #11 section 4, src/binding.c): register the table's
	-- binding label and install the trigger that binds every evector and
	-- etext value written to its table, column and row.  ENABLE ALWAYS:
	-- it fires under session_replication_role = replica (logical
	-- replication apply) too; values already bound to their row pass.
	-----------------------------------------------------------------------
	PERFORM vecphi.register_binding(tbl, binding_label);
	IF NOT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = tbl AND indisprimary)
	   AND EXISTS (SELECT 1 FROM pg_attribute a
				   JOIN pg_type t ON t.oid = a.atttypid
				   LEFT JOIN pg_type b ON b.oid = t.typbasetype
				   WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
					 AND (CASE WHEN t.typtype = 'd' THEN b.typname ELSE t.typname END)
						 IN ('evector', 'etext'))
	THEN
		RAISE WARNING 'table % has no primary key: its ciphertext is bound to the table and column only', tbl
			USING DETAIL = 'A value copied from one row to another of the same table and column is not detected.',
				  HINT = 'Add a primary key and call vecphi.protect() again.';
	END IF;
	-- The binding trigger goes on every leaf table, not on a partitioned
	-- parent: partitions would inherit a parent's trigger, which clashes
	-- with their own when a partition protected on its own is attached.
	FOR part IN
		SELECT t.relid FROM pg_partition_tree(tbl) t WHERE t.isleaf
		UNION SELECT tbl WHERE (SELECT c.relkind FROM pg_class c WHERE c.oid = tbl) = 'r'
	LOOP
		IF EXISTS (SELECT 1 FROM pg_trigger
				   WHERE tgrelid = part.relid AND tgname = 'vecphi_binding') THEN
			EXECUTE format('DROP TRIGGER vecphi_binding ON %s', part.relid::regclass);
		END IF;
		EXECUTE format('CREATE TRIGGER vecphi_binding BEFORE INSERT OR UPDATE ON %s '
					   'FOR EACH ROW EXECUTE FUNCTION vecphi.bind_row()', part.relid::regclass);
		EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER vecphi_binding', part.relid::regclass);
	END LOOP;
END
$protect$;

-- #16 citus keys: key administration on a Citus coordinator reaches every
-- worker in the same distributed transaction (docs/citus-keys.md).  The
-- coordinator sends its rows (wrapped data keys only) as one jsonb value to
-- vecphi.keysync_apply() on each worker with metadata, over Citus's
-- coordinated transaction (two-phase commit): an abort anywhere aborts all.
-- Without Citus nothing here is called.

-- The key state of this node as one jsonb value: the keyring identity, the
-- rows of vecphi.tenants, vecphi.keyring (wrapped data keys) and
-- vecphi.shredded_tenants of the tenants named (NULL: all), the positions of
-- the id sequences, the erasure salt (vecphi.track_erasure()), and with
-- role_categories, vecphi.role_categories.
-- Only the extension's owner (and superusers) may call it.
CREATE FUNCTION vecphi.keysync_state(tenant_ids integer[], role_categories boolean)
	RETURNS jsonb
	LANGUAGE sql STABLE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
		SELECT pg_catalog.jsonb_build_object(
			'keyring_identity',
				(SELECT pg_catalog.to_jsonb(i) FROM vecphi.keyring_identity i),
			'tenants',
				(SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(t) ORDER BY t.tenant_id), '[]')
				 FROM vecphi.tenants t
				 WHERE $1 IS NULL OR t.tenant_id OPERATOR(pg_catalog.=) ANY ($1)),
			'keyring',
				(SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(k) ORDER BY k.tenant_id, k.dek_version), '[]')
				 FROM vecphi.keyring k
				 WHERE $1 IS NULL OR k.tenant_id OPERATOR(pg_catalog.=) ANY ($1)),
			'shredded_tenants',
				(SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(s) ORDER BY s.tenant_id), '[]')
				 FROM vecphi.shredded_tenants s
				 WHERE $1 IS NULL OR s.tenant_id OPERATOR(pg_catalog.=) ANY ($1)),
			'tenant_ids',
				(SELECT pg_catalog.jsonb_build_object('last_value', q.last_value, 'is_called', q.is_called)
				 FROM vecphi.tenant_ids q),
			'dek_versions',
				(SELECT pg_catalog.jsonb_build_object('last_value', q.last_value, 'is_called', q.is_called)
				 FROM vecphi.dek_versions q),
			'erasure_salt',
				(SELECT pg_catalog.encode(s.salt, 'hex') FROM vecphi.erasure_salt s))
		|| CASE WHEN $2 THEN pg_catalog.jsonb_build_object('role_categories',
				(SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r) ORDER BY r.app_role, r.category), '[]')
				 FROM vecphi.role_categories r))
		   ELSE '{}'::pg_catalog.jsonb END
	$$;
COMMENT ON FUNCTION vecphi.keysync_state(integer[], boolean) IS
	'internal (Citus): this node''s key state (wrapped data keys only) for vecphi.keysync_apply() on the workers';
REVOKE ALL ON FUNCTION vecphi.keysync_state(integer[], boolean) FROM PUBLIC;

-- Apply a coordinator's key state (vecphi.keysync_state()) on a Citus
-- worker: the rows are written as the coordinator has them (same tenant
-- ids, versions and wrapped keys).  Superuser only (Citus connects as the
-- extension's owner), and refused on the coordinator, whose rows are the
-- ones every node copies.  A tenant name held here under another id stops
-- it (and with it the distributed transaction).  Returns the tenants
-- applied.
CREATE FUNCTION vecphi.keysync_apply(state jsonb) RETURNS integer
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	groupid integer;
	clash record;
	scope integer[];
	seq text;
BEGIN
	IF NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r
					 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER), false) THEN
		RAISE EXCEPTION 'permission denied for function vecphi.keysync_apply'
			USING ERRCODE = '42501',
				  DETAIL = 'Only the Citus coordinator''s key administration, connected as a superuser, writes key rows on a worker.';
	END IF;
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_local_group') IS NOT NULL THEN
		EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO groupid;
		IF groupid OPERATOR(pg_catalog.=) 0 THEN
			RAISE EXCEPTION 'vecphi.keysync_apply() runs on Citus workers only'
				USING ERRCODE = '55000',
					  DETAIL = 'The coordinator''s key rows are the ones the workers copy.';
		END IF;
	END IF;
	IF state IS NULL OR pg_catalog.jsonb_typeof(state) OPERATOR(pg_catalog.<>) 'object' THEN
		RAISE EXCEPTION 'malformed key state' USING ERRCODE = '22023';
	END IF;

	IF pg_catalog.jsonb_typeof(state->'keyring_identity') OPERATOR(pg_catalog.=) 'object' THEN
		INSERT INTO vecphi.keyring_identity AS i
			SELECT * FROM pg_catalog.jsonb_populate_record(NULL::vecphi.keyring_identity,
														   state->'keyring_identity')
		ON CONFLICT (singleton) DO UPDATE
			SET keyring_id = excluded.keyring_id, forked_from = excluded.forked_from,
				created_at = excluded.created_at
			WHERE (i.keyring_id, i.forked_from) IS DISTINCT FROM (excluded.keyring_id, excluded.forked_from);
	END IF;

	-- The erasure salt is written once and never replaced: deletions this
	-- node already noted under another salt would stop matching their
	-- subjects.  vecphi.check_cluster() reports a node whose salt differs.
	IF pg_catalog.jsonb_typeof(state->'erasure_salt') OPERATOR(pg_catalog.=) 'string' THEN
		INSERT INTO vecphi.erasure_salt (salt)
			VALUES (pg_catalog.decode(state->>'erasure_salt', 'hex'))
		ON CONFLICT (id) DO NOTHING;
	END IF;

	SELECT w.tenant, w.tenant_id AS here, c.tenant_id AS there INTO clash
	FROM vecphi.tenants w
	JOIN pg_catalog.jsonb_populate_recordset(NULL::vecphi.tenants, state->'tenants') c
		ON c.tenant OPERATOR(pg_catalog.=) w.tenant
		AND c.tenant_id OPERATOR(pg_catalog.<>) w.tenant_id
	LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'tenant "%" has id % on this node but % on the coordinator',
			clash.tenant, clash.here, clash.there
			USING ERRCODE = '55000',
				  HINT = 'The tenant was created on this node by hand; see docs/citus-keys.md.';
	END IF;

	SELECT coalesce(pg_catalog.array_agg(c.tenant_id), '{}') INTO scope
	FROM pg_catalog.jsonb_populate_recordset(NULL::vecphi.tenants, state->'tenants') c;

	INSERT INTO vecphi.tenants AS t
		SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::vecphi.tenants, state->'tenants')
	ON CONFLICT (tenant_id) DO UPDATE
		SET tenant = excluded.tenant, kek_version = excluded.kek_version,
			current_dek = excluded.current_dek, created_at = excluded.created_at
		WHERE (t.tenant, t.kek_version, t.current_dek)
			IS DISTINCT FROM (excluded.tenant, excluded.kek_version, excluded.current_dek);

	DELETE FROM vecphi.keyring k
	WHERE k.tenant_id OPERATOR(pg_catalog.=) ANY (scope)
	  AND NOT EXISTS (
		SELECT 1 FROM pg_catalog.jsonb_populate_recordset(NULL::vecphi.keyring, state->'keyring') c
		WHERE c.tenant_id OPERATOR(pg_catalog.=) k.tenant_id
		  AND c.dek_version OPERATOR(pg_catalog.=) k.dek_version);

	INSERT INTO vecphi.keyring AS k
		SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::vecphi.keyring, state->'keyring') c
		WHERE c.tenant_id OPERATOR(pg_catalog.=) ANY (scope)
	ON CONFLICT (tenant_id, dek_version) DO UPDATE
		SET kek_version = excluded.kek_version, wrapped_dek = excluded.wrapped_dek,
			created_at = excluded.created_at
		WHERE (k.kek_version, k.wrapped_dek)
			IS DISTINCT FROM (excluded.kek_version, excluded.wrapped_dek);

	INSERT INTO vecphi.shredded_tenants AS s
		SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::vecphi.shredded_tenants,
														  state->'shredded_tenants') c
		WHERE c.tenant_id OPERATOR(pg_catalog.=) ANY (scope)
	ON CONFLICT (tenant_id) DO NOTHING;

	IF state ? 'role_categories' THEN
		DELETE FROM vecphi.role_categories r
		WHERE NOT EXISTS (
			SELECT 1 FROM pg_catalog.jsonb_populate_recordset(NULL::vecphi.role_categories,
															  state->'role_categories') c
			WHERE c.app_role OPERATOR(pg_catalog.=) r.app_role
			  AND c.category OPERATOR(pg_catalog.=) r.category);
		INSERT INTO vecphi.role_categories
			SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::vecphi.role_categories,
															  state->'role_categories')
		ON CONFLICT DO NOTHING;
	END IF;

	-- Sequences only move forward: a worker never hands out an id the
	-- coordinator has handed out (should it ever take over).
	FOREACH seq IN ARRAY ARRAY['tenant_ids', 'dek_versions'] LOOP
		IF coalesce((state->seq->>'is_called')::boolean, false) THEN
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.setval(%L::pg_catalog.regclass, $1, true) FROM vecphi.%I q '
				'WHERE NOT q.is_called OR q.last_value OPERATOR(pg_catalog.<) $1',
				'vecphi.' OPERATOR(pg_catalog.||) seq, seq)
				USING (state->seq->>'last_value')::bigint;
		END IF;
	END LOOP;
	RETURN pg_catalog.cardinality(scope);
END
$$;
COMMENT ON FUNCTION vecphi.keysync_apply(jsonb) IS
	'internal (Citus workers, superuser only): write the coordinator''s key rows sent by its key administration or vecphi.sync_node()';
REVOKE ALL ON FUNCTION vecphi.keysync_apply(jsonb) FROM PUBLIC;

-- Bring a node added with citus_add_node up to date, in the calling
-- transaction: every tenant, wrapped data key, shred record, the role
-- categories and the id sequences' positions.  Idempotent.
CREATE FUNCTION vecphi.sync_node(nodename text, nodeport integer) RETURNS integer
	AS 'MODULE_PATHNAME', 'vecphi_sync_node'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION vecphi.sync_node(text, integer) IS
	'Citus: copy the coordinator''s tenants, wrapped data keys, shred records, role categories, erasure salt and id sequence positions to a worker (run after citus_add_node, before moving shards to it); returns the tenants sent';
REVOKE ALL ON FUNCTION vecphi.sync_node(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.sync_node(text, integer) TO vecphi_key_admin;

-- vecphi.role_categories changes on the coordinator reach the workers in
-- the same transaction; on a worker only a superuser (the coordinator's
-- vecphi.keysync_apply()) may change them.
CREATE FUNCTION vecphi.role_categories_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'vecphi_role_categories_changed'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.role_categories_changed() IS
	'trigger (Citus): send vecphi.role_categories to the workers after a change on the coordinator; refuse changes made on a worker';
REVOKE ALL ON FUNCTION vecphi.role_categories_changed() FROM PUBLIC;
CREATE TRIGGER role_categories_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vecphi.role_categories
	FOR EACH STATEMENT EXECUTE FUNCTION vecphi.role_categories_changed();

-- A digest of this node's key state, for vecphi.check_cluster(): per
-- tenant its name, KEK version, current data key, whether it is shredded,
-- and a SHA-256 over its wrapped data keys (never the keys themselves).
CREATE FUNCTION vecphi.keyring_digest() RETURNS jsonb
	LANGUAGE sql STABLE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
		SELECT pg_catalog.jsonb_build_object(
			'version', (SELECT e.extversion FROM pg_catalog.pg_extension e
						WHERE e.extname OPERATOR(pg_catalog.=) 'vecphi'),
			'keyring_id', (SELECT i.keyring_id FROM vecphi.keyring_identity i),
			'role_categories', (SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
									coalesce(pg_catalog.string_agg(r.app_role OPERATOR(pg_catalog.||) '/'
										OPERATOR(pg_catalog.||) r.category, ',' ORDER BY r.app_role, r.category), ''),
									'UTF8')), 'hex')
								FROM vecphi.role_categories r),
			'erasure_salt', (SELECT pg_catalog.encode(pg_catalog.sha256(s.salt), 'hex')
							 FROM vecphi.erasure_salt s),
			'tenants', coalesce((
				SELECT pg_catalog.jsonb_object_agg(t.tenant_id::text, pg_catalog.jsonb_build_object(
					'tenant', t.tenant,
					'kek_version', t.kek_version,
					'current_dek', t.current_dek,
					'shredded', EXISTS (SELECT 1 FROM vecphi.shredded_tenants s
										WHERE s.tenant_id OPERATOR(pg_catalog.=) t.tenant_id),
					'data_keys', (SELECT pg_catalog.count(*) FROM vecphi.keyring k
								  WHERE k.tenant_id OPERATOR(pg_catalog.=) t.tenant_id),
					'wrapped', (SELECT pg_catalog.encode(pg_catalog.sha256(coalesce(pg_catalog.string_agg(
									pg_catalog.int4send(k.dek_version) OPERATOR(pg_catalog.||)
									pg_catalog.int4send(k.kek_version) OPERATOR(pg_catalog.||)
									k.wrapped_dek, '' ORDER BY k.dek_version), '')), 'hex')
								FROM vecphi.keyring k
								WHERE k.tenant_id OPERATOR(pg_catalog.=) t.tenant_id)))
				FROM vecphi.tenants t), '{}'))
	$$;
COMMENT ON FUNCTION vecphi.keyring_digest() IS
	'internal (Citus): digest of this node''s tenants, wrapped data keys (SHA-256 only), shred records, role categories and erasure salt, compared by vecphi.check_cluster()';
REVOKE ALL ON FUNCTION vecphi.keyring_digest() FROM PUBLIC;

-- The row-level security of one relation in a form that compares across
-- nodes: flags and each policy's command, roles, permissive or restrictive,
-- and expressions (printed under a pinned search_path, so a shard's and
-- the distributed table's print alike), and vecphi.track_erasure()'s
-- trigger (function, arguments, enabled or not).
CREATE FUNCTION vecphi.relation_policies(rel regclass) RETURNS jsonb
	LANGUAGE sql STABLE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
		SELECT pg_catalog.jsonb_build_object(
			'rls', c.relrowsecurity,
			'force', c.relforcerowsecurity,
			'policies', coalesce((
				SELECT pg_catalog.jsonb_object_agg(p.polname, pg_catalog.jsonb_build_object(
					'permissive', p.polpermissive,
					'cmd', p.polcmd,
					'roles', p.polroles::pg_catalog.regrole[]::text,
					'using', pg_catalog.pg_get_expr(p.polqual, p.polrelid),
					'check', pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)))
				FROM pg_catalog.pg_policy p
				WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid), '{}'),
			'erasure', (SELECT pg_catalog.jsonb_build_object(
							'function', t.tgfoid::pg_catalog.regprocedure::text,
							'type', t.tgtype,
							'enabled', t.tgenabled,
							'args', pg_catalog.encode(t.tgargs, 'escape'))
						FROM pg_catalog.pg_trigger t
						WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid
						  -- Citus names a shard's copy vecphi_erasure_<shard id>.
						  AND t.tgname OPERATOR(pg_catalog.~) '^vecphi_erasure(_[0-9]+)?$'
						ORDER BY t.tgname LIMIT 1))
		FROM pg_catalog.pg_class c
		WHERE c.oid OPERATOR(pg_catalog.=) $1
	$$;
COMMENT ON FUNCTION vecphi.relation_policies(regclass) IS
	'internal (Citus): a relation''s row-level security flags and policies and its erasure trigger, compared across shard placements by vecphi.check_cluster()';
REVOKE ALL ON FUNCTION vecphi.relation_policies(regclass) FROM PUBLIC;

-- Whether a policy that is restrictive on the distributed table but came
-- out permissive on a shard placement (Citus drops AS RESTRICTIVE when it
-- copies policies) still allows exactly the same rows: true when the table
-- has at least one permissive policy for the policy's command, and every
-- such permissive policy has the policy's roles and its very expressions
-- (USING, and WITH CHECK, a missing one read as USING).  Then both
-- "permissive OR this" and "permissive AND this" are that one condition:
-- the shape protect() gives a table Citus manages.  Anything else is
-- reported by vecphi.check_cluster().
CREATE FUNCTION vecphi.restrictive_loss_is_harmless(policies jsonb, want jsonb, got jsonb)
	RETURNS boolean
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
		SELECT NOT ($2->>'permissive')::boolean AND ($3->>'permissive')::boolean
		   AND ($2->'cmd', $2->'roles', $2->'using', $2->'check')
			   IS NOT DISTINCT FROM ($3->'cmd', $3->'roles', $3->'using', $3->'check')
		   AND EXISTS (
			SELECT 1 FROM pg_catalog.jsonb_each($1) q
			WHERE (q.value->>'permissive')::boolean
			  AND ($2->>'cmd' OPERATOR(pg_catalog.=) '*'
				   OR q.value->>'cmd' OPERATOR(pg_catalog.=) ANY (ARRAY['*', $2->>'cmd'])))
		   AND NOT EXISTS (
			SELECT 1 FROM pg_catalog.jsonb_each($1) q
			WHERE (q.value->>'permissive')::boolean
			  AND ($2->>'cmd' OPERATOR(pg_catalog.=) '*'
				   OR q.value->>'cmd' OPERATOR(pg_catalog.=) ANY (ARRAY['*', $2->>'cmd']))
			  AND (q.value->'roles' IS DISTINCT FROM $2->'roles'
				   OR ($2->>'using' IS NOT NULL
					   AND q.value->>'using' IS DISTINCT FROM $2->>'using')
				   OR ($2->>'check' IS NOT NULL
					   AND coalesce(q.value->>'check', q.value->>'using') IS DISTINCT FROM $2->>'check')))
	$$;
COMMENT ON FUNCTION vecphi.restrictive_loss_is_harmless(jsonb, jsonb, jsonb) IS
	'internal (Citus): whether a restrictive policy copied as permissive to a shard still allows the same rows (every permissive policy for its command has its roles and expressions)';
REVOKE ALL ON FUNCTION vecphi.restrictive_loss_is_harmless(jsonb, jsonb, jsonb) FROM PUBLIC;

-- One row per problem found across the Citus cluster; no rows when every
-- node has the coordinator's keys, role categories, erasure salt and vecphi
-- version, and every shard placement of a table with row-level security or
-- erasure tracking has the distributed table's flags, policies and
-- vecphi_erasure trigger.  Without Citus, no rows.
--   node       host:port of the node with the problem
--   placement  the shard placement (schema.shard name), NULL for a node problem
--   item       what differs: 'vecphi version', 'keyring id', 'role categories',
--              'erasure salt', 'tenant <name>', 'row security',
--              'erasure tracking', 'policy <name>', 'node'
--   problem    what is wrong there, compared with the coordinator
CREATE FUNCTION vecphi.check_cluster(OUT node text, OUT placement text,
									 OUT item text, OUT problem text)
	RETURNS SETOF record
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	mine jsonb;
	theirs jsonb;
	r record;
	t record;
	p record;
	c jsonb;
	w jsonb;
	tbl regclass;
	want jsonb;
	got jsonb;
	pname text;
BEGIN
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_node') IS NULL THEN
		RETURN;
	END IF;
	mine := vecphi.keyring_digest();

	FOR r IN EXECUTE 'SELECT nodename, nodeport, success, result '
					 'FROM pg_catalog.run_command_on_workers('
					 '$c$SELECT vecphi.keyring_digest()$c$) ORDER BY nodename, nodeport'
	LOOP
		node := r.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) r.nodeport;
		placement := NULL;
		IF NOT r.success THEN
			item := 'node';
			problem := 'cannot read its keys: ' OPERATOR(pg_catalog.||) r.result;
			RETURN NEXT;
			CONTINUE;
		END IF;
		theirs := r.result::jsonb;
		IF theirs->>'version' IS DISTINCT FROM mine->>'version' THEN
			item := 'vecphi version';
			problem := pg_catalog.format('vecphi %s here, %s on the coordinator',
										 coalesce(theirs->>'version', 'missing'), mine->>'version');
			RETURN NEXT;
		END IF;
		IF theirs->>'keyring_id' IS DISTINCT FROM mine->>'keyring_id' THEN
			item := 'keyring id';
			problem := pg_catalog.format('keyring %s here, %s on the coordinator: run vecphi.sync_node()',
										 coalesce(theirs->>'keyring_id', 'missing'),
										 coalesce(mine->>'keyring_id', 'missing'));
			RETURN NEXT;
		END IF;
		IF theirs->>'role_categories' IS DISTINCT FROM mine->>'role_categories' THEN
			item := 'role categories';
			problem := 'vecphi.role_categories differs from the coordinator''s: run vecphi.sync_node()';
			RETURN NEXT;
		END IF;
		IF theirs->>'erasure_salt' IS DISTINCT FROM mine->>'erasure_salt' THEN
			item := 'erasure salt';
			problem := CASE
				WHEN theirs->>'erasure_salt' IS NULL THEN 'missing here: run vecphi.sync_node()'
				WHEN mine->>'erasure_salt' IS NULL THEN 'exists only on this node'
				ELSE 'differs from the coordinator''s: subject digests noted here do not match the coordinator''s (docs/citus.md)' END;
			RETURN NEXT;
		END IF;
		FOR t IN SELECT k AS id, mine->'tenants'->k AS c, theirs->'tenants'->k AS w
				 FROM (SELECT pg_catalog.jsonb_object_keys(mine->'tenants') AS k
					   UNION SELECT pg_catalog.jsonb_object_keys(theirs->'tenants')) ks
				 ORDER BY k::integer
		LOOP
			c := t.c;
			w := t.w;
			item := 'tenant ' OPERATOR(pg_catalog.||) coalesce(c->>'tenant', w->>'tenant');
			IF w IS NULL THEN
				problem := CASE WHEN (c->>'shredded')::boolean
					THEN 'missing here (shredded on the coordinator): run vecphi.sync_node()'
					ELSE 'missing here: shards of this tenant on this node cannot be read, written or indexed; run vecphi.sync_node()' END;
			ELSIF c IS NULL THEN
				problem := pg_catalog.format('tenant id %s exists only on this node', t.id);
			ELSIF (c->>'shredded')::boolean AND NOT (w->>'shredded')::boolean THEN
				problem := 'shredded on the coordinator but not here: this node still decrypts it';
			ELSIF c->>'tenant' IS DISTINCT FROM w->>'tenant' THEN
				problem := pg_catalog.format('tenant id %s is "%s" here', t.id, w->>'tenant');
			ELSIF (c->>'current_dek', c->>'kek_version') IS DISTINCT FROM (w->>'current_dek', w->>'kek_version') THEN
				problem := pg_catalog.format('current data key %s under KEK version %s here, %s under %s on the coordinator',
											 w->>'current_dek', w->>'kek_version',
											 c->>'current_dek', c->>'kek_version');
			ELSIF (c->>'data_keys', c->>'wrapped') IS DISTINCT FROM (w->>'data_keys', w->>'wrapped') THEN
				problem := pg_catalog.format('wrapped data keys differ (%s here, %s on the coordinator)',
											 w->>'data_keys', c->>'data_keys');
			ELSIF (c->>'shredded')::boolean IS DISTINCT FROM (w->>'shredded')::boolean THEN
				problem := 'shredded here but not on the coordinator';
			ELSE
				CONTINUE;
			END IF;
			RETURN NEXT;
		END LOOP;
	END LOOP;

	-- Shard placements of distributed tables with row-level security or
	-- policies on the coordinator.
	FOR tbl IN EXECUTE
		'SELECT d.logicalrelid FROM pg_catalog.pg_dist_partition d '
		'JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.logicalrelid '
		'WHERE c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p '
		'WHERE p.polrelid OPERATOR(pg_catalog.=) d.logicalrelid) '
		'OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t '
		'WHERE t.tgrelid OPERATOR(pg_catalog.=) d.logicalrelid '
		'AND t.tgname OPERATOR(pg_catalog.=) ''vecphi_erasure'') '
		'ORDER BY d.logicalrelid::pg_catalog.text'
	LOOP
		want := vecphi.relation_policies(tbl);
		FOR p IN EXECUTE 'SELECT nodename, nodeport, shardid, success, result '
						 'FROM pg_catalog.run_command_on_placements($1, '
						 '$c$SELECT vecphi.relation_policies(%L)$c$) ORDER BY shardid, nodename, nodeport'
				 USING tbl
		LOOP
			node := p.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) p.nodeport;
			EXECUTE 'SELECT pg_catalog.shard_name($1, $2, false)' INTO placement USING tbl, p.shardid;
			IF NOT p.success THEN
				item := 'row security';
				problem := 'cannot read the placement''s policies: ' OPERATOR(pg_catalog.||) p.result;
				RETURN NEXT;
				CONTINUE;
			END IF;
			got := p.result::jsonb;
			IF (got->'rls', got->'force') IS DISTINCT FROM (want->'rls', want->'force') THEN
				item := 'row security';
				problem := pg_catalog.format('row security %s, forced %s here; %s, forced %s on %s',
											 got->>'rls', got->>'force', want->>'rls', want->>'force', tbl);
				RETURN NEXT;
			END IF;
			IF got->'erasure' IS DISTINCT FROM want->'erasure' THEN
				item := 'erasure tracking';
				problem := CASE
					WHEN got->'erasure' IS NULL THEN pg_catalog.format(
						'no vecphi_erasure trigger here: deletions on this placement of %s are not noted', tbl)
					WHEN want->'erasure' IS NULL THEN pg_catalog.format(
						'a vecphi_erasure trigger here that %s does not have', tbl)
					ELSE pg_catalog.format('vecphi_erasure trigger %s here, %s on %s',
										   got->'erasure', want->'erasure', tbl) END;
				RETURN NEXT;
			END IF;
			FOR pname IN SELECT k FROM (SELECT pg_catalog.jsonb_object_keys(want->'policies') AS k
										UNION SELECT pg_catalog.jsonb_object_keys(got->'policies')) ks
						 ORDER BY k
			LOOP
				c := want->'policies'->pname;
				w := got->'policies'->pname;
				item := 'policy ' OPERATOR(pg_catalog.||) pname;
				IF w IS NULL THEN
					problem := pg_catalog.format('missing on this placement of %s', tbl);
				ELSIF c IS NULL THEN
					problem := pg_catalog.format('exists only on this placement, not on %s', tbl);
				ELSIF (c->>'permissive')::boolean IS DISTINCT FROM (w->>'permissive')::boolean
					  AND NOT vecphi.restrictive_loss_is_harmless(want->'policies', c, w) THEN
					problem := pg_catalog.format('%s here, %s on %s',
						CASE WHEN (w->>'permissive')::boolean THEN 'permissive' ELSE 'restrictive' END,
						CASE WHEN (c->>'permissive')::boolean THEN 'permissive' ELSE 'restrictive' END, tbl);
				ELSIF (c->'cmd', c->'roles') IS DISTINCT FROM (w->'cmd', w->'roles') THEN
					problem := pg_catalog.format('command %s for %s here, %s for %s on %s',
												 w->>'cmd', w->>'roles', c->>'cmd', c->>'roles', tbl);
				ELSIF c->'using' IS DISTINCT FROM w->'using' THEN
					problem := pg_catalog.format('USING (%s) here, (%s) on %s',
												 w->>'using', c->>'using', tbl);
				ELSIF c->'check' IS DISTINCT FROM w->'check' THEN
					problem := pg_catalog.format('WITH CHECK (%s) here, (%s) on %s',
												 w->>'check', c->>'check', tbl);
				ELSE
					CONTINUE;
				END IF;
				RETURN NEXT;
			END LOOP;
		END LOOP;
	END LOOP;
END
$$;
COMMENT ON FUNCTION vecphi.check_cluster() IS
	'Citus: one row per problem on a node or shard placement (keys, role categories, erasure salt, vecphi version, row-level security policies, erasure tracking) compared with the coordinator; no rows when consistent';
REVOKE ALL ON FUNCTION vecphi.check_cluster() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.check_cluster() TO vecphi_key_admin, vecphi_security_officer;

-- #16 track_erasure on Citus (docs/citus.md, "Erasure").  On a distributed
-- table vecphi.track_erasure() puts its trigger on the shell table, and
-- Citus creates it on every shard placement (and on the new placement of a
-- shard move): deletions are noted on the worker that holds the rows,
-- whose scrub or VACUUM certifies them.  Citus refuses triggers on
-- distributed tables unless citus.enable_unsafe_triggers is on ("they may
-- access other shards"): track_erasure() turns it on for its own
-- CREATE TRIGGER only; vecphi.note_erasure() touches nothing but this
-- node's vecphi tables.  Before that the coordinator's erasure salt reaches
-- every worker (vecphi.erasure_salt_sync()), so a subject's digest is the
-- same on every node, and no worker creates a salt during a DELETE.

CREATE FUNCTION vecphi.erasure_salt_sync() RETURNS void
	AS 'MODULE_PATHNAME', 'vecphi_erasure_salt_sync'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION vecphi.erasure_salt_sync() IS
	'internal (Citus): create the erasure salt on the coordinator if missing and send it to every worker in this transaction';
REVOKE ALL ON FUNCTION vecphi.erasure_salt_sync() FROM PUBLIC;

CREATE OR REPLACE FUNCTION vecphi.note_erasure() RETURNS trigger
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $note$
DECLARE
	subject_type oid;
	groupid integer;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM vecphi.erasure_salt) THEN
		-- A Citus worker digests under the coordinator's salt, which
		-- track_erasure() and sync_node() bring; one of its own would make
		-- its certificates disagree with the other nodes'.
		IF pg_catalog.to_regclass('pg_catalog.pg_dist_local_group') IS NOT NULL THEN
			EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO groupid;
			IF groupid OPERATOR(pg_catalog.<>) 0 THEN
				RAISE EXCEPTION 'this Citus worker has no erasure salt'
					USING ERRCODE = '55000',
						  DETAIL = pg_catalog.format('Deletions from %s are noted under the coordinator''s salt, which has not reached this node.',
													 TG_RELID::pg_catalog.regclass),
						  HINT = 'On the coordinator, run vecphi.sync_node() for this node.';
			END IF;
		END IF;
		INSERT INTO vecphi.erasure_salt (salt)
			SELECT pg_catalog.decode(pg_catalog.replace(
				pg_catalog.gen_random_uuid()::pg_catalog.text OPERATOR(pg_catalog.||)
				pg_catalog.gen_random_uuid()::pg_catalog.text, '-', ''), 'hex')
			WHERE NOT EXISTS (SELECT 1 FROM vecphi.erasure_salt)
			ON CONFLICT DO NOTHING;
	END IF;
	IF TG_NARGS OPERATOR(pg_catalog.>) 0 THEN
		-- This runs as the extension's owner, and the table's owner may have
		-- changed the column since track_erasure() checked it.
		SELECT a.atttypid INTO subject_type FROM pg_catalog.pg_attribute a
		WHERE a.attrelid OPERATOR(pg_catalog.=) TG_RELID
		  AND a.attname OPERATOR(pg_catalog.=) TG_ARGV[0]
		  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'subject column "%" of relation % does not exist',
				TG_ARGV[0], TG_RELID::pg_catalog.regclass USING ERRCODE = '42703';
		END IF;
		IF NOT vecphi.erasure_subject_type_ok(subject_type) THEN
			RAISE EXCEPTION 'subject column "%" of relation % has type %, not a built-in type',
				TG_ARGV[0], TG_RELID::pg_catalog.regclass, subject_type::pg_catalog.regtype
				USING ERRCODE = '42804',
					  DETAIL = 'The erasure digest of a subject is computed as the extension''s owner, which must not run code of the table''s owner.',
					  HINT = 'Give the subject column a built-in type such as text, or call vecphi.track_erasure() without a subject column.';
		END IF;
		EXECUTE pg_catalog.format(
			'INSERT INTO vecphi.pending_erasure (relid, subject_digest) '
			'SELECT $1, pg_catalog.sha256(s.salt OPERATOR(pg_catalog.||) '
			'pg_catalog.convert_to(o.%I::pg_catalog.text, ''UTF8'')) '
			'FROM old_rows o, vecphi.erasure_salt s', TG_ARGV[0])
			USING TG_RELID;
	ELSE
		INSERT INTO vecphi.pending_erasure (relid) SELECT TG_RELID FROM old_rows;
	END IF;
	RETURN NULL;
END
$note$;

CREATE OR REPLACE FUNCTION vecphi.track_erasure(tbl regclass, subject_column name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $track$
DECLARE
	subject_type oid;
	distributed boolean := false;
	groupid integer;
	unsafe_triggers text;
BEGIN
	IF tbl IS NULL THEN
		RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF (SELECT relkind FROM pg_class WHERE oid = tbl) NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809';
	END IF;
	IF subject_column IS NOT NULL THEN
		SELECT atttypid INTO subject_type FROM pg_attribute
		WHERE attrelid = tbl AND attname = subject_column AND attnum > 0 AND NOT attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'column "%" of relation % does not exist', subject_column, tbl
				USING ERRCODE = '42703';
		END IF;
		IF NOT vecphi.erasure_subject_type_ok(subject_type) THEN
			RAISE EXCEPTION 'column "%" of relation % has type %, not a built-in type',
				subject_column, tbl, subject_type::regtype
				USING ERRCODE = '42804',
					  DETAIL = 'The erasure digest of a subject is computed as the extension''s owner, which must not run code of the table''s owner.',
					  HINT = 'Give the subject column a built-in type such as text.';
		END IF;
	END IF;
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
		EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d '
				'WHERE d.logicalrelid OPERATOR(pg_catalog.=) $1)'
			INTO distributed USING tbl;
	END IF;
	IF distributed THEN
		EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO groupid;
		IF groupid <> 0 THEN
			RAISE EXCEPTION 'vecphi.track_erasure() on a distributed table must run on the Citus coordinator'
				USING ERRCODE = '55000';
		END IF;
		PERFORM vecphi.erasure_salt_sync();
		unsafe_triggers := pg_catalog.current_setting('citus.enable_unsafe_triggers', true);
		PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
	END IF;
	IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'vecphi_erasure') THEN
		EXECUTE pg_catalog.format('DROP TRIGGER vecphi_erasure ON %s', tbl);
	END IF;
	EXECUTE pg_catalog.format(
		'CREATE TRIGGER vecphi_erasure AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
		'FOR EACH STATEMENT EXECUTE FUNCTION vecphi.note_erasure(%s)',
		tbl, CASE WHEN subject_column IS NULL THEN '' ELSE pg_catalog.quote_literal(subject_column) END);
	IF distributed THEN
		PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers',
									  coalesce(unsafe_triggers, 'off'), true);
	END IF;
END
$track$;

-- #16 old placements after a shard move (docs/citus.md, "Erasure").
-- citus_move_shard_placement copies a shard's live rows to the new node
-- and leaves the old placement for Citus's deferred cleanup, which drops
-- it: its blocks go back to the file system with the ciphertext of every
-- row the shard held.  vecphi.erase_orphaned_placements() on the
-- coordinator empties each such old placement in place first (a DELETE
-- of every row, then vecphi.scrub_local() once that has committed), so
-- the files Citus then unlinks hold no ciphertext.

-- On a worker: delete every row of an old placement of a shard that is no
-- longer placed on this node, with triggers off (its rows live on in the
-- new placement: they are not erasures of their subjects).  Refuses a
-- relation that is not a shard or is an active placement here.
CREATE FUNCTION vecphi.erase_orphaned_shard_rows(shard text) RETURNS bigint
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	rel regclass;
	shard_id bigint;
	here integer;
	is_shard boolean;
	active boolean;
	manual text;
	replication_role text;
	deleted bigint;
BEGIN
	IF NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r
					 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER), false) THEN
		RAISE EXCEPTION 'permission denied for function vecphi.erase_orphaned_shard_rows'
			USING ERRCODE = '42501';
	END IF;
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_placement') IS NULL THEN
		RAISE EXCEPTION 'vecphi.erase_orphaned_shard_rows() needs Citus' USING ERRCODE = '0A000';
	END IF;
	rel := pg_catalog.to_regclass(shard);
	IF rel IS NULL THEN
		RAISE EXCEPTION 'relation "%" does not exist', shard USING ERRCODE = '42P01';
	END IF;
	-- (Not from pg_class: Citus hides active shards from its scans.  The
	-- id taken from the name is confirmed below against the shard's name.)
	shard_id := pg_catalog.substring(rel::text, '_([0-9]+)"?$')::bigint;
	EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_shard s '
			'WHERE s.shardid OPERATOR(pg_catalog.=) $1 '
			'AND pg_catalog.shard_name(s.logicalrelid, s.shardid, false)::pg_catalog.regclass '
			'OPERATOR(pg_catalog.=) $2)'
		INTO is_shard USING shard_id, rel;
	IF shard_id IS NULL OR NOT is_shard THEN
		RAISE EXCEPTION '% is not a shard of a distributed table', rel USING ERRCODE = '42809';
	END IF;
	EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO here;
	EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_placement p '
			'WHERE p.shardid OPERATOR(pg_catalog.=) $1 AND p.groupid OPERATOR(pg_catalog.=) $2)'
		INTO active USING shard_id, here;
	IF active THEN
		RAISE EXCEPTION '% is an active placement on this node', rel
			USING ERRCODE = '55000',
				  DETAIL = 'Only the old placement a shard move left behind may be emptied.';
	END IF;
	manual := pg_catalog.current_setting('citus.enable_manual_changes_to_shards', true);
	replication_role := pg_catalog.current_setting('session_replication_role');
	PERFORM pg_catalog.set_config('citus.enable_manual_changes_to_shards', 'on', true);
	PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
	EXECUTE pg_catalog.format('DELETE FROM %s', rel);
	GET DIAGNOSTICS deleted = ROW_COUNT;
	PERFORM pg_catalog.set_config('session_replication_role', replication_role, true);
	PERFORM pg_catalog.set_config('citus.enable_manual_changes_to_shards', coalesce(manual, 'off'), true);
	RETURN deleted;
END
$$;
COMMENT ON FUNCTION vecphi.erase_orphaned_shard_rows(text) IS
	'internal (Citus workers, superuser only): delete every row of an old placement a shard move left on this node, before vecphi.scrub_local() erases them';
REVOKE ALL ON FUNCTION vecphi.erase_orphaned_shard_rows(text) FROM PUBLIC;

-- On the coordinator: every old placement Citus's deferred cleanup is to
-- drop (pg_dist_cleanup), emptied and scrubbed on its node, one row each.
-- Each step runs on the node in a transaction of its own
-- (master_run_on_worker), the scrub after the DELETE committed.  A row
-- with a problem (the node unreachable, the placement already dropped,
-- rows still visible to an open transaction there) is not an erasure: run
-- it again.  Superusers only.  Then CALL citus_cleanup_orphaned_resources().
CREATE FUNCTION vecphi.erase_orphaned_placements(OUT node text, OUT placement text,
	OUT rows_deleted bigint, OUT pages bigint, OUT bytes_scrubbed bigint,
	OUT complete boolean, OUT problem text)
	RETURNS SETOF record
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	r record;
	ok boolean;
	result text;
	fields text[];
	groupid integer;
BEGIN
	IF NOT coalesce((SELECT a.rolsuper FROM pg_catalog.pg_roles a
					 WHERE a.rolname OPERATOR(pg_catalog.=) CURRENT_USER), false) THEN
		RAISE EXCEPTION 'permission denied for function vecphi.erase_orphaned_placements'
			USING ERRCODE = '42501';
	END IF;
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_cleanup') IS NULL THEN
		RAISE EXCEPTION 'vecphi.erase_orphaned_placements() needs Citus' USING ERRCODE = '0A000';
	END IF;
	EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO groupid;
	IF groupid OPERATOR(pg_catalog.<>) 0 THEN
		RAISE EXCEPTION 'vecphi.erase_orphaned_placements() must run on the Citus coordinator'
			USING ERRCODE = '55000';
	END IF;
	-- object_type 1: a shard placement; policy_type 2: dropped after the
	-- operation that left it (a move, a split) succeeded.
	FOR r IN EXECUTE
		'SELECT c.object_name, n.nodename, n.nodeport FROM pg_catalog.pg_dist_cleanup c '
		'JOIN pg_catalog.pg_dist_node n ON n.groupid OPERATOR(pg_catalog.=) c.node_group_id '
		'AND n.noderole OPERATOR(pg_catalog.=) ''primary'' '
		'WHERE c.object_type OPERATOR(pg_catalog.=) 1 AND c.policy_type OPERATOR(pg_catalog.=) 2 '
		'ORDER BY c.record_id'
	LOOP
		node := r.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) r.nodeport;
		placement := r.object_name;
		rows_deleted := NULL;
		pages := NULL;
		bytes_scrubbed := NULL;
		complete := false;
		problem := NULL;
		EXECUTE 'SELECT m.success, m.result FROM pg_catalog.master_run_on_worker($1, $2, $3, false) m'
			INTO ok, result
			USING ARRAY[r.nodename], ARRAY[r.nodeport],
				  ARRAY[pg_catalog.format('SELECT vecphi.erase_orphaned_shard_rows(%L)', r.object_name)];
		IF NOT ok THEN
			problem := result;
			RETURN NEXT;
			CONTINUE;
		END IF;
		rows_deleted := result::bigint;
		EXECUTE 'SELECT m.success, m.result FROM pg_catalog.master_run_on_worker($1, $2, $3, false) m'
			INTO ok, result
			USING ARRAY[r.nodename], ARRAY[r.nodeport],
				  ARRAY[pg_catalog.format('SELECT pg_catalog.concat_ws('','', s.pages, s.bytes_scrubbed, s.complete) '
										  'FROM vecphi.scrub_local(%L) s', r.object_name)];
		IF NOT ok THEN
			problem := result;
		ELSE
			fields := pg_catalog.string_to_array(result, ',');
			pages := fields[1]::bigint;
			bytes_scrubbed := fields[2]::bigint;
			complete := fields[3]::boolean;
			IF NOT complete THEN
				problem := 'rows still visible to an open transaction on the node: run it again';
			END IF;
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;
COMMENT ON FUNCTION vecphi.erase_orphaned_placements() IS
	'Citus (superuser): empty and scrub every old shard placement awaiting Citus''s deferred drop, so its unlinked files hold no ciphertext; then CALL citus_cleanup_orphaned_resources()';
REVOKE ALL ON FUNCTION vecphi.erase_orphaned_placements() FROM PUBLIC;
