-- keys: tenant creation, KEK and DEK rotation, who may administer keys,
-- and what the embedded key provider leaves in vecphi.key_directory.
-- Rotation is tried on tenants of their own so the other tests' tenants
-- keep their first keys.

\pset null '<null>'

-- KEK files of a tenant in the key directory, by name, without the
-- keyring id that starts every name ("<keyring id>.<tenant>.<version>.kek").
CREATE FUNCTION kek_files(t text) RETURNS text[]
LANGUAGE sql AS $$
	SELECT coalesce(array_agg(substr(f, 18) ORDER BY f), '{}')
	FROM pg_ls_dir(current_setting('vecphi.key_directory')) AS f,
		vecphi.keyring_identity AS k
	WHERE f LIKE '%.kek' AND left(f, 18 + length(t)) = k.keyring_id || '.' || t || '.'
$$;

-- Decrypt a value as its tenant, in a subtransaction, for a one-line
-- report: the plaintext, or the error.
CREATE FUNCTION try_decrypt(v evector) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	RETURN vecphi.decrypt(v)::text;
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

---------------------------------------------------------------------------
-- create_tenant: names, duplicates, files.
---------------------------------------------------------------------------
SELECT vecphi.create_tenant('hosp_c') > 0 AS created;
SELECT kek_files('hosp_c');
SELECT expect_error($$SELECT vecphi.create_tenant('hosp_c')$$) AS duplicate;
SELECT name, expect_error_detail(format('SELECT vecphi.create_tenant(%L)', name)) AS result
FROM (VALUES ('a/b'), (''), ('../x'), ('..'), ('a b'), ('tenant.1'), ('naïve'),
	('x;rm -rf'), (repeat('t', 64))) AS t(name);
-- 63 characters is the longest name.
SELECT vecphi.create_tenant(repeat('t', 63)) > 0 AS longest_name_ok;
SELECT vecphi.create_tenant(NULL) AS strict_null;

-- A tenant created in a transaction that rolls back leaves no key file
-- and no keyring row.  Inside the transaction it is usable at once.
BEGIN;
SELECT vecphi.create_tenant('hosp_tx') > 0 AS created;
SELECT kek_files('hosp_tx') AS files_inside;
SELECT as_tenant('hosp_tx');
SELECT vecphi.key_id('[1]'::evector) AS key_inside, vecphi.decrypt('[1]'::evector) AS decrypt_inside;
ROLLBACK;
SELECT kek_files('hosp_tx') AS files_after_rollback;
SELECT count(*) AS tenant_rows FROM vecphi.tenants WHERE tenant = 'hosp_tx';

---------------------------------------------------------------------------
-- rotate_kek: re-wraps the data keys under a new KEK; no data changes.
---------------------------------------------------------------------------
CREATE TABLE key_samples (id int, v evector);
BEGIN;
SELECT as_tenant('hosp_c');
INSERT INTO key_samples VALUES (1, '[1,2,3]'), (2, '[4,5,6]');
COMMIT;
CREATE TEMP TABLE wrapped_before AS
	SELECT dek_version, wrapped_dek FROM vecphi.keyring k JOIN vecphi.tenants t USING (tenant_id)
	WHERE t.tenant = 'hosp_c';
CREATE TEMP TABLE envelopes_before AS SELECT id, v::text AS env FROM key_samples;

SELECT vecphi.rotate_kek('hosp_c') AS new_kek_version;
-- The old KEK file is destroyed after the commit; the new one is there.
SELECT kek_files('hosp_c');
SELECT kek_version, current_dek FROM vecphi.tenants WHERE tenant = 'hosp_c';
SELECT k.dek_version, k.kek_version, k.wrapped_dek <> b.wrapped_dek AS rewrapped
FROM vecphi.keyring k JOIN vecphi.tenants t USING (tenant_id)
	JOIN wrapped_before b USING (dek_version)
WHERE t.tenant = 'hosp_c' ORDER BY 1;
-- The stored values are untouched and still decrypt.
SELECT count(*) AS unchanged FROM key_samples s JOIN envelopes_before b USING (id)
WHERE s.v::text = b.env;
BEGIN;
SELECT as_tenant('hosp_c');
SELECT id, vecphi.decrypt(v), vecphi.key_id(v) FROM key_samples ORDER BY id;
COMMIT;

-- A rotation that rolls back: the new KEK file is removed, the current one
-- stays, the values still decrypt.
BEGIN;
SELECT vecphi.rotate_kek('hosp_c') AS rolled_back_version;
SELECT kek_files('hosp_c') AS files_inside;
ROLLBACK;
SELECT kek_files('hosp_c') AS files_after_rollback;
SELECT kek_version FROM vecphi.tenants WHERE tenant = 'hosp_c';
BEGIN;
SELECT as_tenant('hosp_c');
SELECT id, try_decrypt(v) FROM key_samples ORDER BY id;
COMMIT;

---------------------------------------------------------------------------
-- rotate_dek: new writes use the new data key; old values still decrypt.
---------------------------------------------------------------------------
SELECT vecphi.rotate_dek('hosp_c') AS new_dek_version;
SELECT kek_version, current_dek FROM vecphi.tenants WHERE tenant = 'hosp_c';
SELECT k.dek_version, k.kek_version, length(k.wrapped_dek) AS wrapped_len
FROM vecphi.keyring k JOIN vecphi.tenants t USING (tenant_id)
WHERE t.tenant = 'hosp_c' ORDER BY 1;
BEGIN;
SELECT as_tenant('hosp_c');
INSERT INTO key_samples VALUES (3, '[7,8,9]'), (4, vecphi.encrypt(ARRAY[10,11,12]::real[]));
SELECT id, vecphi.decrypt(v), vecphi.key_id(v) FROM key_samples ORDER BY id;
COMMIT;

-- A data key made in a transaction that rolls back is gone, and so is
-- anything encrypted under it: the next rotation never reuses its version
-- number (versions come from a sequence), so the old ciphertext names a
-- missing key (58P01), and never meets another key of the same number.
-- (Same backend: its key cache must not keep the rolled-back key.)
BEGIN;
SELECT vecphi.rotate_dek('hosp_c') AS rolled_back_dek;
SELECT as_tenant('hosp_c');
SELECT '[1,1,1]'::evector::text AS lost_envelope \gset
SELECT vecphi.key_id(:'lost_envelope'::evector) AS lost_key;
ROLLBACK;
SELECT vecphi.rotate_dek('hosp_c') AS dek_again;
BEGIN;
SELECT as_tenant('hosp_c');
SELECT vecphi.key_id(:'lost_envelope'::evector) AS lost_key, try_decrypt(:'lost_envelope'::evector) AS lost_value;
SELECT vecphi.key_id('[2,2,2]'::evector) AS new_key, vecphi.decrypt('[2,2,2]'::evector) AS new_value;
SELECT id, vecphi.decrypt(v), vecphi.key_id(v) FROM key_samples ORDER BY id;
COMMIT;

-- Both rotations again: KEK after several DEKs; every value still decrypts.
SELECT vecphi.rotate_kek('hosp_c') AS kek_version;
SELECT kek_files('hosp_c');
SELECT k.dek_version, k.kek_version
FROM vecphi.keyring k JOIN vecphi.tenants t USING (tenant_id)
WHERE t.tenant = 'hosp_c' ORDER BY 1;
BEGIN;
SELECT as_tenant('hosp_c');
SELECT id, vecphi.decrypt(v), vecphi.key_id(v) FROM key_samples ORDER BY id;
COMMIT;

-- Unknown and invalid tenants.
SELECT expect_error($$SELECT vecphi.rotate_kek('nobody')$$) AS rotate_kek_unknown;
SELECT expect_error($$SELECT vecphi.rotate_dek('nobody')$$) AS rotate_dek_unknown;
SELECT expect_error($$SELECT vecphi.rotate_kek('../hosp_c')$$) AS rotate_kek_invalid;
SELECT expect_error($$SELECT vecphi.rotate_dek('')$$) AS rotate_dek_invalid;

---------------------------------------------------------------------------
-- Who may administer keys: members of vecphi_key_admin, not others.
---------------------------------------------------------------------------
CREATE ROLE regress_vecphi_app NOLOGIN;
CREATE ROLE regress_vecphi_keyadmin NOLOGIN IN ROLE vecphi_key_admin;
GRANT USAGE ON SCHEMA public TO regress_vecphi_app, regress_vecphi_keyadmin;

SET ROLE regress_vecphi_app;
SELECT expect_error($$SELECT vecphi.create_tenant('hosp_evil')$$) AS app_create;
SELECT expect_error($$SELECT vecphi.rotate_kek('hosp_c')$$) AS app_rotate_kek;
SELECT expect_error($$SELECT vecphi.rotate_dek('hosp_c')$$) AS app_rotate_dek;
SELECT expect_error($$SELECT * FROM vecphi.keyring$$) AS app_read_keyring;
SELECT expect_error($$SELECT * FROM vecphi.tenants$$) AS app_read_tenants;
SELECT expect_error($$DELETE FROM vecphi.keyring$$) AS app_delete_keyring;
SELECT expect_error($$UPDATE vecphi.tenants SET current_dek = 1$$) AS app_update_tenants;
-- The app can still use its claims: key lookups need no table privileges.
BEGIN;
SELECT as_tenant('hosp_c');
SELECT vecphi.decrypt('[5,5,5]'::evector) AS app_encrypts;
COMMIT;
RESET ROLE;

SET ROLE regress_vecphi_keyadmin;
SELECT vecphi.rotate_dek('hosp_c') AS keyadmin_rotate_dek;
SELECT vecphi.rotate_kek('hosp_c') AS keyadmin_rotate_kek;
SELECT vecphi.create_tenant('hosp_d') > 0 AS keyadmin_create;
SELECT tenant, kek_version, current_dek FROM vecphi.tenants
WHERE tenant IN ('hosp_c', 'hosp_d') ORDER BY tenant;
SELECT dek_version, kek_version FROM vecphi.keyring
WHERE tenant_id = (SELECT tenant_id FROM vecphi.tenants WHERE tenant = 'hosp_c')
ORDER BY dek_version;
-- The wrapped keys themselves stay hidden, and the tables read-only.
SELECT expect_error($$SELECT wrapped_dek FROM vecphi.keyring$$) AS keyadmin_read_wrapped;
SELECT expect_error($$DELETE FROM vecphi.keyring$$) AS keyadmin_delete;
SELECT expect_error($$UPDATE vecphi.tenants SET kek_version = 1$$) AS keyadmin_update;
RESET ROLE;
SELECT kek_files('hosp_c') AS hosp_c_files, kek_files('hosp_d') AS hosp_d_files;
BEGIN;
SELECT as_tenant('hosp_c');
SELECT id, vecphi.decrypt(v), vecphi.key_id(v) FROM key_samples ORDER BY id;
COMMIT;

-- No temporary key files are left behind (the directory also holds the
-- keyrings' owner files and the audit chain's key and head files, see
-- keys.md and audit.md).
SELECT count(*) AS tmp_files
FROM pg_ls_dir(current_setting('vecphi.key_directory')) AS f
WHERE f NOT LIKE '%.kek' AND f !~ '^[0-9a-f]{16}\.owner$' AND f <> 'audit.key' AND f !~ '^audit-head\.[0-9]+\.[0-9]+$';

---------------------------------------------------------------------------
-- Key files and subtransactions.  A rotation that is undone must leave the
-- tenant's current KEK file in place, whatever undid it.
---------------------------------------------------------------------------
-- rotate_kek inside a savepoint that is rolled back, in a transaction that
-- commits: the keyring still names KEK version 1, so its file must stay.
SELECT vecphi.create_tenant('hosp_sp') > 0 AS created;
CREATE TABLE sp_samples (v evector);
BEGIN;
SELECT as_tenant('hosp_sp');
INSERT INTO sp_samples VALUES ('[1,2,3]');
COMMIT;
BEGIN;
SAVEPOINT s;
SELECT vecphi.rotate_kek('hosp_sp') AS undone;
ROLLBACK TO s;
COMMIT;
SELECT kek_version FROM vecphi.tenants WHERE tenant = 'hosp_sp';
SELECT kek_files('hosp_sp');
BEGIN;
SELECT as_tenant('hosp_sp');
SELECT try_decrypt(v) AS after_savepoint_rollback FROM sp_samples;
COMMIT;

-- create_tenant inside a savepoint that is rolled back: no tenant, so no
-- key file may be left behind either.
BEGIN;
SAVEPOINT s;
SELECT vecphi.create_tenant('hosp_sp_new') > 0 AS undone;
ROLLBACK TO s;
COMMIT;
SELECT count(*) AS tenant_rows FROM vecphi.tenants WHERE tenant = 'hosp_sp_new';
SELECT kek_files('hosp_sp_new');

-- The same through a PL/pgSQL exception block (a subtransaction too).
SELECT vecphi.create_tenant('hosp_plpgsql') > 0 AS created;
CREATE TABLE plpgsql_samples (v evector);
BEGIN;
SELECT as_tenant('hosp_plpgsql');
INSERT INTO plpgsql_samples VALUES ('[4,5,6]');
COMMIT;
DO $$
BEGIN
	PERFORM vecphi.rotate_kek('hosp_plpgsql');
	RAISE EXCEPTION 'changed my mind';
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'rotation undone: %', SQLERRM;
END
$$;
SELECT kek_version FROM vecphi.tenants WHERE tenant = 'hosp_plpgsql';
SELECT kek_files('hosp_plpgsql');
BEGIN;
SELECT as_tenant('hosp_plpgsql');
SELECT try_decrypt(v) AS after_exception_block FROM plpgsql_samples;
COMMIT;

-- Two rotations in one transaction that rolls back: KEK version 1 is still
-- the current one, so its file must survive.
SELECT vecphi.create_tenant('hosp_twice') > 0 AS created;
CREATE TABLE twice_samples (v evector);
BEGIN;
SELECT as_tenant('hosp_twice');
INSERT INTO twice_samples VALUES ('[7,8,9]');
COMMIT;
BEGIN;
SELECT vecphi.rotate_kek('hosp_twice') AS first;
SELECT vecphi.rotate_kek('hosp_twice') AS second;
ROLLBACK;
SELECT kek_version FROM vecphi.tenants WHERE tenant = 'hosp_twice';
SELECT kek_files('hosp_twice');
BEGIN;
SELECT as_tenant('hosp_twice');
SELECT try_decrypt(v) AS after_double_rollback FROM twice_samples;
COMMIT;
-- Two rotations in one transaction that commits: only the last KEK is left.
SELECT vecphi.create_tenant('hosp_twice_ok') > 0 AS created;
BEGIN;
SELECT as_tenant('hosp_twice_ok');
INSERT INTO twice_samples VALUES ('[1,1,2]');
COMMIT;
BEGIN;
SELECT vecphi.rotate_kek('hosp_twice_ok') AS first;
SELECT vecphi.rotate_kek('hosp_twice_ok') AS second;
COMMIT;
SELECT kek_files('hosp_twice_ok');
BEGIN;
SELECT as_tenant('hosp_twice_ok');
SELECT try_decrypt(v) AS after_double_commit FROM twice_samples
WHERE vecphi.key_id(v) LIKE 'hosp_twice_ok/%';
COMMIT;

-- Savepoints that commit, and mixtures.  One tenant, one value, checked
-- after each step: the KEK version the keyring names, the files, the value.
SELECT vecphi.create_tenant('hosp_mix') > 0 AS created;
CREATE TABLE mix_samples (v evector);
BEGIN;
SELECT as_tenant('hosp_mix');
INSERT INTO mix_samples VALUES ('[3,1,4]');
COMMIT;
CREATE FUNCTION mix_state(OUT kek_version int, OUT files text[], OUT value text)
LANGUAGE plpgsql AS $$
BEGIN
	SELECT t.kek_version INTO kek_version FROM vecphi.tenants t WHERE tenant = 'hosp_mix';
	files := kek_files('hosp_mix');
	PERFORM vecphi.set_claims(token_for('hosp_mix'));
	SELECT try_decrypt(v) INTO value FROM mix_samples;
END
$$;
-- A rotation in a released savepoint counts.
BEGIN;
SAVEPOINT s;
SELECT vecphi.rotate_kek('hosp_mix') AS rotated;
RELEASE s;
COMMIT;
BEGIN; SELECT * FROM mix_state(); COMMIT;
-- A rotation in a released savepoint of a transaction that rolls back
-- does not.
BEGIN;
SAVEPOINT s;
SELECT vecphi.rotate_kek('hosp_mix') AS rotated;
RELEASE s;
ROLLBACK;
BEGIN; SELECT * FROM mix_state(); COMMIT;
-- Two rotations, the second undone by ROLLBACK TO: the first one counts.
BEGIN;
SELECT vecphi.rotate_kek('hosp_mix') AS first;
SAVEPOINT s;
SELECT vecphi.rotate_kek('hosp_mix') AS second;
ROLLBACK TO s;
COMMIT;
BEGIN; SELECT * FROM mix_state(); COMMIT;
-- Two rotations, the first in a savepoint that is released, then both
-- rolled back with the transaction.
BEGIN;
SAVEPOINT s;
SELECT vecphi.rotate_kek('hosp_mix') AS first;
RELEASE s;
SELECT vecphi.rotate_kek('hosp_mix') AS second;
ROLLBACK;
BEGIN; SELECT * FROM mix_state(); COMMIT;
-- Three rotations in one transaction that commits: only the last file.
BEGIN;
SELECT vecphi.rotate_kek('hosp_mix'), vecphi.rotate_kek('hosp_mix'),
	vecphi.rotate_kek('hosp_mix');
COMMIT;
BEGIN; SELECT * FROM mix_state(); COMMIT;
-- A KEK file of the version before the current one, as a crash between a
-- rotation's commit and the file's removal would leave it: the next
-- rotation removes it.
DO $$
BEGIN
	EXECUTE format('COPY (SELECT %L) TO %L', repeat('0', 64),
		current_setting('vecphi.key_directory') || '/'
		|| (SELECT keyring_id FROM vecphi.keyring_identity) || '.hosp_mix.5.kek');
END
$$;
SELECT kek_files('hosp_mix') AS with_leftover;
SELECT vecphi.rotate_kek('hosp_mix') AS rotated;
BEGIN; SELECT * FROM mix_state(); COMMIT;

DROP TABLE key_samples, sp_samples, plpgsql_samples, twice_samples, mix_samples;
DROP FUNCTION mix_state();
DROP OWNED BY regress_vecphi_app, regress_vecphi_keyadmin;
DROP ROLE regress_vecphi_app, regress_vecphi_keyadmin;
