-- erasure: vecphi.scrub's report, the erasure certificate's digest,
-- vecphi.shred_tenant, and who may call them.  (The on-disk proof is in
-- the TAP tests test/t/040_erasure_heap_toast.pl and 042_shred_backup_dump.pl.)
\pset null '<null>'

SELECT vecphi.create_tenant('erase_a') > 0 AS erase_a, vecphi.create_tenant('erase_b') > 0 AS erase_b;
CREATE ROLE regress_erasure_user NOLOGIN;
CREATE ROLE regress_erasure_keyadmin NOLOGIN IN ROLE vecphi_key_admin;
CREATE ROLE regress_erasure_officer NOLOGIN IN ROLE vecphi_security_officer;

CREATE TABLE erase_notes (
	id		int PRIMARY KEY,
	tenant	text NOT NULL DEFAULT vecphi.tenant(),
	patient	text NOT NULL,
	body	etext,
	emb		evector(3)
) WITH (autovacuum_enabled = off);
SELECT vecphi.protect('erase_notes', 'tenant');
SELECT vecphi.track_erasure('erase_notes', 'patient');
CREATE INDEX erase_notes_emb ON erase_notes USING ehnsw (emb);
GRANT SELECT, INSERT, DELETE ON erase_notes TO regress_erasure_user;

---------------------------------------------------------------------------
-- vecphi.scrub: nothing to do on a new table.
---------------------------------------------------------------------------
SELECT * FROM vecphi.scrub('erase_notes');

BEGIN;
SELECT as_tenant('erase_a');
INSERT INTO erase_notes (id, patient, body, emb)
	SELECT g, 'patient_' || (g % 3), vecphi.encrypt(repeat('note ' || g || ' ', 10 + 300 * (g % 2))),
		ARRAY[g, g + 1, g + 2]::real[]
	FROM generate_series(1, 30) g;
COMMIT;
BEGIN;
SELECT as_tenant('erase_b');
INSERT INTO erase_notes (id, patient, body, emb)
	SELECT g, 'patient_b', vecphi.encrypt('b note ' || g), ARRAY[g, g, g]::real[]
	FROM generate_series(101, 110) g;
COMMIT;

-- Deleting a patient's notes notes each deletion (a salted digest, not the
-- subject) until a scrub certifies it.
DELETE FROM erase_notes WHERE patient = 'patient_1';
SELECT count(*) AS pending, count(DISTINCT subject_digest) AS subjects,
	bool_and(length(subject_digest) = 32) AS sha256_digests,
	bool_and(position('patient_1' in encode(subject_digest, 'escape')) = 0) AS no_subject_text
FROM vecphi.pending_erasure;

-- DELETE then vecphi.scrub, without VACUUM: heap and TOAST pages pruned
-- and zeroed, the ehnsw elements of the deleted rows removed.
SELECT pages > 0 AS pages, pages_scrubbed > 0 AS scrubbed, bytes_scrubbed > 0 AS bytes,
	index_elements_removed, pages_pending, complete
FROM vecphi.scrub('erase_notes');
SELECT count(*) AS pending_after_scrub FROM vecphi.pending_erasure;
-- Nothing left to do the second time.
SELECT pages_scrubbed, bytes_scrubbed, index_elements_removed, complete
FROM vecphi.scrub('erase_notes');
SELECT vecphi.index_check('erase_notes_emb');
BEGIN;
SELECT as_tenant('erase_a');
SET LOCAL enable_seqscan = off;
-- (The query is off-grid so that no two rows tie on distance.)
SELECT id FROM erase_notes ORDER BY emb <-> '[4.1,5.1,6.1]' LIMIT 3;
COMMIT;

-- DELETE then VACUUM certifies too; a VACUUM with nothing deleted finds
-- nothing to zero.
DELETE FROM erase_notes WHERE patient = 'patient_2';
VACUUM erase_notes;
SELECT count(*) AS pending_after_vacuum FROM vecphi.pending_erasure;
SELECT pages_scrubbed, bytes_scrubbed, complete FROM vecphi.scrub('erase_notes');

-- A partitioned table: deletions are noted against the parent, which a
-- VACUUM or scrub of the parent certifies.
CREATE TABLE erase_parts (id int, tenant text NOT NULL DEFAULT vecphi.tenant(),
	patient text, body etext) PARTITION BY RANGE (id);
CREATE TABLE erase_parts_1 PARTITION OF erase_parts FOR VALUES FROM (0) TO (100);
CREATE TABLE erase_parts_2 PARTITION OF erase_parts FOR VALUES FROM (100) TO (200);
SELECT vecphi.protect('erase_parts', 'tenant');
SELECT vecphi.track_erasure('erase_parts', 'patient');
BEGIN;
SELECT as_tenant('erase_a');
INSERT INTO erase_parts (id, patient, body)
	SELECT g, 'patient_' || (g % 4), vecphi.encrypt(repeat('part note ', 300)) FROM generate_series(1, 199) g;
COMMIT;
DELETE FROM erase_parts WHERE patient = 'patient_1';
SELECT count(*) AS pending FROM vecphi.pending_erasure WHERE relid = 'erase_parts'::regclass;
VACUUM erase_parts;
SELECT count(*) AS pending_after_vacuum FROM vecphi.pending_erasure WHERE relid = 'erase_parts'::regclass;
DELETE FROM erase_parts WHERE patient = 'patient_2';
SELECT pages_scrubbed > 0 AS scrubbed, complete FROM vecphi.scrub('erase_parts');
SELECT count(*) AS pending_after_scrub FROM vecphi.pending_erasure;
DROP TABLE erase_parts;

-- A table without tracking is scrubbed all the same.
CREATE TABLE erase_plain (id int, body etext);
SELECT pages, complete FROM vecphi.scrub('erase_plain');

-- Errors.
CREATE VIEW erase_view AS SELECT 1 AS x;
SELECT expect_error($$SELECT vecphi.scrub('erase_view')$$);
SELECT vecphi.scrub(NULL) IS NULL AS strict;
SELECT expect_error($$SELECT vecphi.track_erasure('erase_notes', 'no_such_column')$$);
SELECT expect_error($$SELECT vecphi.track_erasure('erase_view', 'x')$$);
SET ROLE regress_erasure_user;
SELECT expect_error($$SELECT vecphi.scrub('erase_notes')$$);
SELECT expect_error($$SELECT vecphi.erasure_digest(ARRAY['patient_1'])$$);
SELECT expect_error($$SET vecphi.scrub_on_vacuum = off$$);
SELECT expect_error($$SELECT * FROM vecphi.pending_erasure$$);
RESET ROLE;

---------------------------------------------------------------------------
-- The certificate's digest: the security officer recomputes it from the
-- subject ids; order and repetition do not matter.
---------------------------------------------------------------------------
SET ROLE regress_erasure_officer;
SELECT vecphi.erasure_digest(ARRAY['patient_1']) ~ '^sha256:[0-9a-f]{64}$' AS digest_shape;
SELECT vecphi.erasure_digest(ARRAY['patient_1', 'patient_2'])
	= vecphi.erasure_digest(ARRAY['patient_2', 'patient_1', 'patient_1']) AS order_free;
SELECT vecphi.erasure_digest(ARRAY['patient_1'])
	<> vecphi.erasure_digest(ARRAY['patient_2']) AS distinct_subjects;
RESET ROLE;

---------------------------------------------------------------------------
-- vecphi.shred_tenant
---------------------------------------------------------------------------
CREATE FUNCTION erase_kek_files(t text) RETURNS text[]
LANGUAGE sql AS $$
	SELECT coalesce(array_agg(substr(f, 18) ORDER BY f), '{}')
	FROM pg_ls_dir(current_setting('vecphi.key_directory')) AS f,
		vecphi.keyring_identity AS k
	WHERE f LIKE '%.kek' AND left(f, 18 + length(t)) = k.keyring_id || '.' || t || '.'
$$;
SELECT erase_kek_files('erase_a') AS before_shred;

SET ROLE regress_erasure_user;
SELECT expect_error($$SELECT vecphi.shred_tenant('erase_a')$$);
RESET ROLE;
SET ROLE regress_erasure_keyadmin;
SELECT expect_error($$SELECT vecphi.shred_tenant('no_such_tenant')$$);
SELECT expect_error($$SELECT vecphi.shred_tenant('bad name')$$);
SELECT vecphi.shred_tenant('erase_a') AS data_keys_dropped;
SELECT tenant, kek_version, data_keys FROM vecphi.shredded_tenants;
RESET ROLE;
-- The key file goes when the shred commits.
SELECT erase_kek_files('erase_a') AS after_shred, erase_kek_files('erase_b') AS erase_b_keeps;
SELECT count(*) AS erase_a_wrapped_keys FROM vecphi.keyring WHERE tenant_id =
	(SELECT tenant_id FROM vecphi.tenants WHERE tenant = 'erase_a');

-- Nothing of erase_a's can be decrypted or written any more.
BEGIN;
SELECT as_tenant('erase_a');
SELECT expect_error_detail($$SELECT vecphi.decrypt(body) FROM erase_notes WHERE id = 3$$);
SELECT expect_error($$SELECT vecphi.decrypt(emb) FROM erase_notes WHERE id = 3$$);
SELECT expect_error($$INSERT INTO erase_notes (id, patient, emb) VALUES (99, 'p', '[1,2,3]')$$);
COMMIT;
SELECT expect_error($$SELECT vecphi.rotate_dek('erase_a')$$);
SELECT expect_error($$SELECT vecphi.rotate_kek('erase_a')$$);
SELECT expect_error($$SELECT vecphi.create_tenant('erase_a')$$);
-- Shredding again repeats the destruction and drops nothing more.
SELECT vecphi.shred_tenant('erase_a') AS again;

-- erase_b is untouched.
BEGIN;
SELECT as_tenant('erase_b');
SELECT vecphi.decrypt(body) FROM erase_notes WHERE id = 101;
SET LOCAL enable_seqscan = off;
SELECT id FROM erase_notes ORDER BY emb <-> '[105.2,105.2,105.2]' LIMIT 3;
COMMIT;

-- The shredded tenant's rows can be removed, and its index elements,
-- without its key; REINDEX leaves its values out.
REINDEX INDEX erase_notes_emb;
DELETE FROM erase_notes WHERE tenant = 'erase_a';
VACUUM erase_notes;
SELECT vecphi.index_check('erase_notes_emb');
SELECT count(*) AS left_rows FROM erase_notes;

DROP TABLE erase_notes, erase_plain;
DROP VIEW erase_view;
DROP FUNCTION erase_kek_files(text);
DROP ROLE regress_erasure_user, regress_erasure_keyadmin, regress_erasure_officer;
