-- vecphi 0.1.0 -> 0.2.0.  Runs on ALTER EXTENSION vecphi UPDATE and, after
-- vecphi--0.1.0.sql, on every new CREATE EXTENSION vecphi: what is added here
-- exists in both, so the two paths cannot drift apart.  Same rules as the
-- install script: every name schema-qualified, every SECURITY DEFINER
-- function pins search_path.

\echo Use "ALTER EXTENSION vecphi UPDATE TO '0.2.0'" to load this file. \quit

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
