-- migrate: the table rewrites that would encrypt every tenant's rows under
-- the claimant's one key are refused (0A000, naming
-- vecphi.migrate_column()), conversions between ciphertext typmods still
-- work, and vecphi.migrate_column() encrypts each row under its own
-- tenant's key, for the table's owner in vecphi_key_admin only.
-- (TAP 150-152 test pgvector sources, resuming after a kill, and the
-- files on disk.)

\pset null '<null>'

SELECT vecphi.create_tenant('mig_a') > 0 AS mig_a, vecphi.create_tenant('mig_b') > 0 AS mig_b;
CREATE ROLE regress_mig_owner NOLOGIN;
CREATE ROLE regress_mig_admin NOLOGIN IN ROLE vecphi_key_admin;
CREATE ROLE regress_mig_app NOLOGIN;
GRANT USAGE, CREATE ON SCHEMA public TO regress_mig_owner, regress_mig_admin;

-- A plaintext table of two tenants.
CREATE TABLE mig_docs (
	id int PRIMARY KEY,
	tenant text NOT NULL,
	emb real[],
	emb8 float8[],
	body text
);
INSERT INTO mig_docs VALUES
	(1, 'mig_a', '{1,2,3}', '{1,2,3}', 'alpha one'),
	(2, 'mig_b', '{4,5,6}', '{4,5,6}', 'beta two'),
	(3, 'mig_a', '{7,8,9}', '{7,8,9}', 'alpha three'),
	(4, 'mig_b', NULL, NULL, NULL);

-- 1. Every one-key rewrite refuses, even for a claimant of one tenant and
-- a superuser; nothing changes.
BEGIN;
SELECT as_tenant('mig_a');
ALTER TABLE mig_docs ALTER COLUMN emb TYPE evector;
ROLLBACK;
BEGIN;
SELECT as_tenant('mig_a');
ALTER TABLE mig_docs ALTER COLUMN emb TYPE evector USING emb::evector;
ROLLBACK;
BEGIN;
SELECT as_tenant('mig_a');
ALTER TABLE mig_docs ALTER COLUMN emb TYPE evector(3) USING vecphi.encrypt(emb);
ROLLBACK;
BEGIN;
SELECT as_tenant('mig_a');
ALTER TABLE mig_docs ALTER COLUMN emb8 TYPE evector USING emb8::text::evector;
ROLLBACK;
BEGIN;
SELECT as_tenant('mig_a');
ALTER TABLE mig_docs ALTER COLUMN body TYPE etext;
ROLLBACK;
BEGIN;
SELECT as_tenant('mig_a');
ALTER TABLE mig_docs ALTER COLUMN body TYPE etext USING vecphi.encrypt(body);
ROLLBACK;
-- an array or a domain over a ciphertext type is the same
CREATE DOMAIN mig_evec AS evector;
BEGIN;
SELECT as_tenant('mig_a');
ALTER TABLE mig_docs ALTER COLUMN emb TYPE mig_evec USING emb::text::evector;
ROLLBACK;
BEGIN;
SELECT as_tenant('mig_a');
ALTER TABLE mig_docs ALTER COLUMN body TYPE etext[] USING ARRAY[body]::etext[];
ROLLBACK;
-- a generated ciphertext column computed from a plaintext one
CREATE FUNCTION mig_wrap(real[]) RETURNS evector IMMUTABLE LANGUAGE sql
	AS $$ SELECT $1::text::evector $$;
BEGIN;
SELECT as_tenant('mig_a');
ALTER TABLE mig_docs ADD COLUMN e evector GENERATED ALWAYS AS (mig_wrap(emb)) STORED;
ROLLBACK;
-- the refusals were audited as denials
SELECT true AS waited FROM pg_sleep(0.2);
SELECT count(*) >= 9 AS denials_recorded FROM vecphi.audit_log
 WHERE action = 'denial' AND detail LIKE '%table rewrite into ciphertext%';
SELECT pg_typeof(emb) AS emb, pg_typeof(body) AS body FROM mig_docs LIMIT 1;

-- 2. Ciphertext to ciphertext still converts (typmods), with or without a
-- USING that is the column itself; a USING that computes anything else
-- from another column does not.
CREATE TABLE mig_enc (id int, tenant text, e evector(3), p real[]);
BEGIN;
SELECT as_tenant('mig_a');
INSERT INTO mig_enc VALUES (1, 'mig_a', '[1,2,3]', '{9,9,9}');
COMMIT;
ALTER TABLE mig_enc ALTER COLUMN e TYPE evector;
ALTER TABLE mig_enc ALTER COLUMN e TYPE evector(3) USING e::evector(3);
ALTER TABLE mig_enc ALTER COLUMN e TYPE evector USING (e);
BEGIN;
SELECT as_tenant('mig_a');
ALTER TABLE mig_enc ALTER COLUMN e TYPE evector USING p::text::evector;
ROLLBACK;
-- the envelope round trip through text is fine; a cast through any other
-- type (whose cast function could be anyone's) is not
ALTER TABLE mig_enc ALTER COLUMN e TYPE evector USING e::text::evector;
ALTER TABLE mig_enc ALTER COLUMN e TYPE evector USING e::text::varchar::evector;
-- adding an ordinary ciphertext column, or a plaintext one, is fine
ALTER TABLE mig_enc ADD COLUMN e2 evector, ADD COLUMN n int GENERATED ALWAYS AS (id + 1) STORED;
-- converting ciphertext to its text form is not encryption
ALTER TABLE mig_enc ALTER COLUMN e2 TYPE text;
DROP TABLE mig_enc;

-- 3. Who may migrate.  Not the owner: refused.
ALTER TABLE mig_docs OWNER TO regress_mig_owner;
GRANT EXECUTE ON PROCEDURE vecphi.migrate_column(regclass, name, name, integer) TO regress_mig_owner;
GRANT EXECUTE ON FUNCTION vecphi.migrate_start(regclass, name, name),
	vecphi.migrate_batch(regclass, name, integer) TO regress_mig_owner, regress_mig_app;
SET ROLE regress_mig_admin;
CALL vecphi.migrate_column('mig_docs', 'emb', 'tenant');
RESET ROLE;
-- The owner who is not a key administrator: refused, even when granted
-- EXECUTE (the functions check the caller themselves).
SET ROLE regress_mig_owner;
CALL vecphi.migrate_column('mig_docs', 'emb', 'tenant');
SELECT vecphi.migrate_start('mig_docs', 'emb', 'tenant');
RESET ROLE;
-- An app role with a claim for mig_a cannot call them at all, let alone
-- plant rows under mig_b's key.
SET ROLE regress_mig_app;
BEGIN;
SELECT as_tenant('mig_a');
CALL vecphi.migrate_column('mig_docs', 'emb', 'tenant');
ROLLBACK;
BEGIN;
SELECT as_tenant('mig_a');
SELECT vecphi.migrate_batch('mig_docs', 'emb', 10);
ROLLBACK;
RESET ROLE;
SELECT count(*) AS migrations FROM vecphi.migrations;
SELECT pg_typeof(emb) AS emb FROM mig_docs LIMIT 1;

-- 4. The owner in vecphi_key_admin migrates real[] (batches of 2) and
-- text; each row under its own tenant's key.
ALTER TABLE mig_docs OWNER TO regress_mig_admin;
-- While another role may write to the table it refuses: the app role
-- (token for mig_a) could insert a row naming mig_b and have the
-- migration encrypt it under mig_b's key.  Reading is fine.
GRANT SELECT, INSERT ON mig_docs TO regress_mig_app;
GRANT UPDATE (tenant) ON mig_docs TO PUBLIC;
SET ROLE regress_mig_admin;
CALL vecphi.migrate_column('mig_docs', 'emb', 'tenant', 2);
RESET ROLE;
REVOKE INSERT ON mig_docs FROM regress_mig_app;
REVOKE UPDATE (tenant) ON mig_docs FROM PUBLIC;
SET ROLE regress_mig_admin;
CALL vecphi.migrate_column('mig_docs', 'emb', 'tenant', 2);
CALL vecphi.migrate_column('mig_docs', 'body', 'tenant');
-- called again: nothing to do
CALL vecphi.migrate_column('mig_docs', 'emb', 'tenant');
SELECT table_name, column_name, tenant_column, source_type, target_type,
	rows_done, rows_left, batches, finished IS NOT NULL AS finished,
	scrubbed IS NOT NULL AS scrubbed, migrated_by
  FROM vecphi.migrations ORDER BY column_name;
RESET ROLE;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'mig_docs'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT id, tenant, vecphi.key_id(emb) ~ ('^' || tenant || '/') AS emb_own_key,
	vecphi.key_id(body) ~ ('^' || tenant || '/') AS body_own_key
  FROM mig_docs ORDER BY id;
BEGIN;
SELECT as_tenant('mig_a');
SELECT id, vecphi.decrypt(emb) AS emb, vecphi.decrypt(body) AS body
  FROM mig_docs WHERE tenant = 'mig_a' ORDER BY id;
COMMIT;
BEGIN;
SELECT as_tenant('mig_b');
SELECT id, vecphi.decrypt(emb) AS emb, vecphi.decrypt(body) AS body
  FROM mig_docs WHERE tenant = 'mig_b' AND emb IS NOT NULL ORDER BY id;
COMMIT;
SELECT true AS waited FROM pg_sleep(0.2);
SELECT count(*) > 0 AS key_migrate_recorded FROM vecphi.audit_log WHERE action = 'key_migrate';

-- 5. A row whose tenant has no keys stops the migration, naming the
-- tenant; the batches before it stay; once the tenant exists it resumes.
CREATE TABLE mig_more (id int PRIMARY KEY, tenant text, emb float8[]);
INSERT INTO mig_more SELECT g, CASE WHEN g = 5 THEN 'mig_c' ELSE 'mig_a' END,
	ARRAY[g, g + 0.5, g + 0.25] FROM generate_series(1, 8) g;
ALTER TABLE mig_more OWNER TO regress_mig_admin;
SET ROLE regress_mig_admin;
CALL vecphi.migrate_column('mig_more', 'emb', 'tenant', 2);
SELECT rows_done, rows_left, finished IS NULL AS unfinished FROM vecphi.migrations
 WHERE table_name = 'public.mig_more';
SELECT count(*) FILTER (WHERE vecphi_migrating_emb IS NOT NULL) AS encrypted,
	count(*) FILTER (WHERE emb IS NOT NULL) AS plaintext FROM mig_more;
RESET ROLE;
SELECT vecphi.create_tenant('mig_c') > 0 AS mig_c;
SET ROLE regress_mig_admin;
CALL vecphi.migrate_column('mig_more', 'emb', 'tenant', 2);
RESET ROLE;
SELECT count(*) AS rows, count(DISTINCT vecphi.key_id(emb)) AS keys FROM mig_more;
BEGIN;
SELECT as_tenant('mig_c');
SELECT id, vecphi.decrypt(emb) FROM mig_more WHERE tenant = 'mig_c';
COMMIT;

-- 6. Other refusals: an unknown column, a type it does not migrate, a
-- protected table (migrate first, then protect).
SET ROLE regress_mig_admin;
CREATE TABLE mig_bad (id int, tenant text NOT NULL DEFAULT vecphi.tenant(), n int, e evector, p real[]);
CALL vecphi.migrate_column('mig_bad', 'nope', 'tenant');
CALL vecphi.migrate_column('mig_bad', 'n', 'tenant');
CALL vecphi.migrate_column('mig_bad', 'e', 'tenant');
CALL vecphi.migrate_column('mig_bad', 'p', 'p');
RESET ROLE;
SELECT vecphi.protect('mig_bad', 'tenant');
SET ROLE regress_mig_admin;
CALL vecphi.migrate_column('mig_bad', 'p', 'tenant');
RESET ROLE;
SELECT count(*) AS migrations_of_mig_bad FROM vecphi.migrations WHERE table_name = 'public.mig_bad';
-- row-level security forced on the owner: the owner would not see every
-- row, and the finish would drop the plaintext of the rows it did not see
CREATE TABLE mig_rls (id int, tenant text, emb real[]);
ALTER TABLE mig_rls OWNER TO regress_mig_admin;
ALTER TABLE mig_rls ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
SET ROLE regress_mig_admin;
CALL vecphi.migrate_column('mig_rls', 'emb', 'tenant');
RESET ROLE;
DROP TABLE mig_rls;
-- an owner's trigger that keeps the plaintext: refused, not looped on
CREATE TABLE mig_trig (id int, tenant text, emb real[]);
INSERT INTO mig_trig VALUES (1, 'mig_a', '{1,2}');
CREATE FUNCTION mig_keep() RETURNS trigger LANGUAGE plpgsql
	AS $$BEGIN NEW.emb := OLD.emb; RETURN NEW; END$$;
CREATE TRIGGER mig_keep BEFORE UPDATE ON mig_trig FOR EACH ROW EXECUTE FUNCTION mig_keep();
ALTER TABLE mig_trig OWNER TO regress_mig_admin;
SET ROLE regress_mig_admin;
CALL vecphi.migrate_column('mig_trig', 'emb', 'tenant');
RESET ROLE;
SELECT count(*) AS plaintext_kept FROM mig_trig WHERE emb IS NOT NULL;
DROP TABLE mig_trig;
DROP FUNCTION mig_keep();

DROP TABLE mig_docs, mig_more, mig_bad;

DROP FUNCTION mig_wrap(real[]);
DROP DOMAIN mig_evec;
DELETE FROM vecphi.migrations;
REVOKE ALL ON PROCEDURE vecphi.migrate_column(regclass, name, name, integer) FROM regress_mig_owner;
REVOKE ALL ON FUNCTION vecphi.migrate_start(regclass, name, name),
	vecphi.migrate_batch(regclass, name, integer) FROM regress_mig_owner, regress_mig_app;
REVOKE ALL ON SCHEMA public FROM regress_mig_owner, regress_mig_admin;
DROP ROLE regress_mig_owner, regress_mig_admin, regress_mig_app;
