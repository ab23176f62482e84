-- vecphi 0.1.0 -> 0.2.0.  Runs on ALTER EXTENSION vecphi UPDATE and, after
-- vecphi--0.1.0.sql, on every new CREATE EXTENSION vecphi: what is added here
-- exists in both, so the two paths cannot drift apart.  Same rules as the
-- install script: every name schema-qualified, every SECURITY DEFINER
-- function pins search_path.

\echo Use "ALTER EXTENSION vecphi UPDATE TO '0.2.0'" to load this file. \quit

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
