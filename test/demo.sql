-- vecphi demo, run by test/demo.sh:
--   psql -v tok_a=... -v tok_b=... -v tok_forged=... -f test/demo.sql
-- tok_a: a St Mary's clinician's token, tok_b: a County General clinician's,
-- tok_forged: County General claims signed with the wrong key.
-- Each "expected to fail" step checks that it did fail, and stops the demo
-- with an error otherwise.

\set ON_ERROR_STOP 1
\pset null '(null)'

\echo
\echo '== 1. Install vecphi and register two hospitals as tenants.'
\echo '      create_tenant() makes each one a key-encryption key (in vecphi.key_directory)'
\echo '      and a first data key, stored only wrapped in vecphi.keyring.'
CREATE EXTENSION vecphi;
SELECT vecphi.create_tenant('st_marys') AS st_marys_id,
       vecphi.create_tenant('county_general') AS county_general_id;

SELECT t.tenant, k.dek_version, k.kek_version,
       length(k.wrapped_dek) AS wrapped_dek_bytes
FROM vecphi.keyring k JOIN vecphi.tenants t USING (tenant_id)
ORDER BY t.tenant;

\echo
\echo '== 2. One shared table.  Each row belongs to the tenant of the token that wrote it;'
\echo '      vecphi.protect() ties rows to the verified tenant claim with row-level security,'
\echo '      and an ehnsw index (HNSW over the ciphertext, one graph per tenant) serves searches.'
CREATE TABLE notes (
    id        bigserial PRIMARY KEY,
    tenant    text NOT NULL DEFAULT vecphi.tenant(),
    body      etext,
    embedding evector(3)
);
SELECT vecphi.protect('notes', 'tenant');
CREATE INDEX notes_embedding_idx ON notes USING ehnsw (embedding evector_l2_ops);

-- The application connects as an ordinary role; only its token says who
-- the user is.
CREATE ROLE app NOLOGIN;
GRANT SELECT, INSERT ON notes TO app;
GRANT USAGE ON SEQUENCE notes_id_seq TO app;
\echo '      table notes(id, tenant, body etext, embedding evector(3)), its vecphi policies, role app'

\echo
\echo '== 3. St Mary''s writes its notes.  Claims last for one transaction;'
\echo '      plain text and vector literals are encrypted under St Mary''s data key on input.'
BEGIN;
SET LOCAL ROLE app;
SELECT vecphi.set_claims(:'tok_a') \g /dev/null
SELECT vecphi.tenant() AS tenant, vecphi.app_role() AS role,
       vecphi.subject() AS subject, vecphi.purpose() AS purpose;
INSERT INTO notes (body, embedding) VALUES
    ('Patient reports chest pain radiating to the left arm', '[0.9,0.1,0.0]'),
    ('Follow-up: troponin negative, discharged with aspirin',  '[0.8,0.2,0.1]'),
    ('Fractured left wrist after a fall, cast applied',         '[0.1,0.9,0.2]'),
    ('Seasonal allergies, prescribed antihistamine',            '[0.0,0.2,0.9]');
COMMIT;

\echo
\echo '== 4. County General writes its notes, in its own transaction with its own token.'
BEGIN;
SET LOCAL ROLE app;
SELECT vecphi.set_claims(:'tok_b') \g /dev/null
SELECT vecphi.tenant() AS tenant, vecphi.subject() AS subject;
INSERT INTO notes (body, embedding) VALUES
    ('Acute chest pain, ECG shows ST elevation, cath lab alerted', '[0.95,0.05,0.0]'),
    ('Type 2 diabetes review, HbA1c 7.9%',                         '[0.2,0.1,0.8]'),
    ('Ankle sprain, advised rest and ice',                          '[0.1,0.8,0.3]');
COMMIT;

\echo
\echo '== 5. What the superuser, a backup or pg_dump sees: ciphertext envelopes only.'
\echo '      (Superusers bypass row-level security, so all rows show, but nothing decrypts.)'
SELECT id, tenant, vecphi.key_id(embedding) AS key,
       left(body::text, 36) || '...' AS body,
       left(embedding::text, 36) || '...' AS embedding
FROM notes ORDER BY id;

\echo
\echo '== 6. A St Mary''s clinician searches for notes like "chest pain" ([1,0,0]).'
\echo '      Only St Mary''s rows are visible, and they decrypt.'
BEGIN;
SET LOCAL ROLE app;
SELECT vecphi.set_claims(:'tok_a') \g /dev/null
-- A table this small would be scanned exactly; show the index at work.
SET LOCAL enable_seqscan = off;
SELECT id, tenant, vecphi.decrypt(body) AS note,
       round((embedding <-> '[1,0,0]')::numeric, 3) AS distance
FROM notes
ORDER BY embedding <-> '[1,0,0]'
LIMIT 3;
\echo '      The plan: the ehnsw index, with the row-level security filter on top.'
PREPARE nearest(evector) AS
    SELECT id FROM notes ORDER BY embedding <-> $1 LIMIT 3;
SET LOCAL plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE nearest('[1,0,0]');
DEALLOCATE nearest;
-- Demo check: nothing of County General is visible to this token.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM notes WHERE tenant <> 'st_marys') THEN
        RAISE EXCEPTION 'demo check failed: a St Mary''s token sees another hospital''s rows';
    END IF;
END
$$;
COMMIT;

\echo
\echo '== 7. The same search with a County General token sees only County General.'
BEGIN;
SET LOCAL ROLE app;
SELECT vecphi.set_claims(:'tok_b') \g /dev/null
SELECT id, tenant, vecphi.decrypt(body) AS note,
       round((embedding <-> '[1,0,0]')::numeric, 3) AS distance
FROM notes
ORDER BY embedding <-> '[1,0,0]'
LIMIT 3;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM notes WHERE tenant <> 'county_general') THEN
        RAISE EXCEPTION 'demo check failed: a County General token sees another hospital''s rows';
    END IF;
END
$$;
COMMIT;

\echo
\echo '== 8. Without claims the application sees no rows at all.'
SET ROLE app;
SELECT count(*) AS rows_visible_without_claims FROM notes;
RESET ROLE;

\echo
\echo '== 9. Things that must fail (errors below are expected).'
\echo '   a) The superuser, without claims, tries to decrypt:'
\set ON_ERROR_STOP 0
SELECT vecphi.decrypt(body) FROM notes WHERE tenant = 'st_marys' LIMIT 1;
\set ON_ERROR_STOP 1
\if :ERROR
\echo '      -> refused, SQLSTATE' :SQLSTATE
\else
DO $$ BEGIN RAISE EXCEPTION 'demo check failed: decrypted without claims'; END $$;
\endif

\echo '   b) The superuser, holding St Mary''s claims, tries to decrypt a County General note'
\echo '      (RLS does not stop a superuser; the tenant check on decryption does):'
BEGIN;
SELECT vecphi.set_claims(:'tok_a') \g /dev/null
\set ON_ERROR_STOP 0
SELECT vecphi.decrypt(body) FROM notes WHERE tenant = 'county_general' LIMIT 1;
\set ON_ERROR_STOP 1
\if :ERROR
\echo '      -> refused, SQLSTATE' :SQLSTATE
\else
DO $$ BEGIN RAISE EXCEPTION 'demo check failed: decrypted another tenant''s note'; END $$;
\endif
ROLLBACK;

\echo '   c) A token with County General claims but signed with the wrong key:'
BEGIN;
\set ON_ERROR_STOP 0
SELECT vecphi.set_claims(:'tok_forged');
\set ON_ERROR_STOP 1
\if :ERROR
\echo '      -> rejected, SQLSTATE' :SQLSTATE
\else
DO $$ BEGIN RAISE EXCEPTION 'demo check failed: a forged token was accepted'; END $$;
\endif
ROLLBACK;

\echo
\echo '== 10. The audit log: every search, decryption and refusal above, hash-chained'
SELECT vecphi.audit_flush() \g /dev/null
SELECT seq, tenant, app_role, action, relation, rows_returned, row_ids, outcome
FROM vecphi.audit_log WHERE action <> 'key_create' ORDER BY seq;
SELECT ok AS chain_verifies, rows_checked FROM vecphi.verify_audit();

\echo
\echo '== Done: each hospital saw and decrypted only its own notes.'
