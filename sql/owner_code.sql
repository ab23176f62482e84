-- owner_code: the owner of a protected table holds no claims, and must not
-- be able to harvest plaintext by planting code that runs inside a
-- claimant's session while the claimant's claims are in force (issue #11,
-- section 3).  Each case below: the owner installs an object (a trigger, a
-- policy, a rule, a default, a check, a domain constraint, an index
-- expression, a partition, a foreign key, a replaced function) or weakens
-- vecphi's row-level security; a claimant then reads and writes as usual;
-- then the owner looks for plaintext in its drop box (a table, a setting,
-- a large object, a sequence).  The owner must find nothing, and every
-- refusal must be in the audit log.  NOTIFY to a listening session is in
-- test/t/080_owner_code_notify.pl.

\pset null '<null>'

SELECT vecphi.create_tenant('oc_a') > 0 AS oc_a_created;
CREATE ROLE regress_oc_owner NOLOGIN;
CREATE ROLE regress_oc_app NOLOGIN;
-- The officer is a member of the owner's role, so PostgreSQL lets it
-- change the owner's tables at all.
CREATE ROLE regress_oc_officer NOLOGIN IN ROLE vecphi_security_officer, regress_oc_owner;
-- Another role of the owner's, to give the table away to.
CREATE ROLE regress_oc_owner2 NOLOGIN;
GRANT regress_oc_owner2 TO regress_oc_owner;
GRANT USAGE, CREATE ON SCHEMA public TO regress_oc_owner, regress_oc_owner2;
GRANT USAGE ON SCHEMA public TO regress_oc_app, regress_oc_officer;
INSERT INTO vecphi.role_categories VALUES ('oc_clinician', 'clinical');
CREATE TABLE oc_mark AS SELECT coalesce(max(seq), 0) AS seq FROM vecphi.audit_log;

---------------------------------------------------------------------------
-- The owner's table, protected, with the defaults and checks an ordinary
-- schema has (sequence, clock, constant, claims, a built-in check): they
-- do not stop protect().  The owner's drop boxes.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
CREATE SEQUENCE oc_ids;
CREATE DOMAIN oc_text AS etext;
CREATE TABLE oc_notes (
	id int PRIMARY KEY,
	tenant text NOT NULL DEFAULT vecphi.tenant(),
	category text NOT NULL DEFAULT 'clinical',
	serial bigint DEFAULT nextval('oc_ids'),
	made timestamptz DEFAULT now(),
	body etext,
	emb evector(3),
	extra oc_text,
	CHECK (id > 0 AND length(category) < 40)
);
SELECT vecphi.protect('oc_notes', 'tenant', 'category');
GRANT SELECT, INSERT, UPDATE, DELETE ON oc_notes TO regress_oc_app;
GRANT USAGE ON SEQUENCE oc_ids TO regress_oc_app;

CREATE TABLE oc_loot (vector text, what text);
GRANT INSERT ON oc_loot TO PUBLIC;
CREATE SEQUENCE oc_seq;
GRANT USAGE, UPDATE ON oc_seq TO PUBLIC;

-- Copies everything the caller's claims show of oc_notes into the drop box
-- (SECURITY DEFINER: runs as the owner, but with the caller's claims).
CREATE FUNCTION oc_harvest(tag text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
	INSERT INTO oc_loot
	SELECT tag, id || ': ' || vecphi.decrypt(body) || ' ' || vecphi.decrypt(emb)::text FROM oc_notes;
	RETURN true;
EXCEPTION WHEN OTHERS THEN
	RETURN true;			-- never disturb the claimant
END
$$;
-- Puts one decrypted value into the drop box.
CREATE FUNCTION oc_leak(tag text, v etext) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
	INSERT INTO oc_loot VALUES (tag, vecphi.decrypt(v));
	RETURN true;
EXCEPTION WHEN OTHERS THEN
	RETURN true;
END
$$;
RESET ROLE;

-- The claimant's ordinary work: a new note, then a read of its notes.
CREATE FUNCTION oc_work(i int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM vecphi.set_claims(token_for('oc_a', 'oc_clinician'));
	INSERT INTO oc_notes (id, body, emb, extra)
	VALUES (i, vecphi.encrypt('note ' || i), format('[%s,0,0]', i)::evector,
			vecphi.encrypt('extra ' || i)::oc_text);
	RETURN (SELECT string_agg(vecphi.decrypt(body), ', ' ORDER BY id) FROM oc_notes);
END
$$;
-- Messages name each function with a digest of its definition, which
-- varies with object ids: masked here.
CREATE FUNCTION oc_mask(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT regexp_replace(t, '\(definition [0-9a-f]+\)', '(definition ...)', 'g')
$$;
-- What the owner found under a tag.
CREATE FUNCTION oc_found(tag text) RETURNS TABLE (vector text, what text)
LANGUAGE sql AS $$ SELECT vector, what FROM oc_loot WHERE vector = tag ORDER BY what $$;

SET ROLE regress_oc_app;
BEGIN;
SELECT oc_work(1);
COMMIT;
RESET ROLE;
-- Without claims the owner sees nothing of its own table.
SET ROLE regress_oc_owner;
SELECT count(*) AS owner_sees FROM oc_notes;
RESET ROLE;

---------------------------------------------------------------------------
-- 1. A trigger (SECURITY INVOKER) copying the new row's plaintext.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
CREATE FUNCTION oc_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO oc_loot VALUES ('trigger', vecphi.decrypt(NEW.body));
	RETURN NEW;
END
$$;
SELECT oc_mask(expect_error_detail($$CREATE TRIGGER oc_spy AFTER INSERT ON oc_notes
	FOR EACH ROW EXECUTE FUNCTION oc_trg()$$)) AS create_trigger;
SELECT expect_error($$CREATE CONSTRAINT TRIGGER oc_spy_c AFTER INSERT ON oc_notes
	FOR EACH ROW EXECUTE FUNCTION oc_trg()$$) AS create_constraint_trigger;
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT oc_work(2);
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('trigger');
RESET ROLE;

---------------------------------------------------------------------------
-- 2. A SECURITY DEFINER trigger harvesting every row the claimant sees.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
CREATE FUNCTION oc_trg_sd() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
	PERFORM oc_harvest('secdef trigger');
	RETURN NULL;
END
$$;
SELECT expect_error($$CREATE TRIGGER oc_spy_sd AFTER INSERT ON oc_notes
	FOR EACH STATEMENT EXECUTE FUNCTION oc_trg_sd()$$) AS create_secdef_trigger;
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT oc_work(3);
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('secdef trigger');
RESET ROLE;

---------------------------------------------------------------------------
-- 3. A restrictive policy whose expression calls the owner's function on
-- every decrypted row; and a permissive one.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
SELECT expect_error($$CREATE POLICY oc_spy ON oc_notes AS RESTRICTIVE FOR SELECT
	USING (oc_leak('policy', body))$$) AS create_restrictive_policy;
SELECT expect_error($$CREATE POLICY oc_spy2 ON oc_notes AS PERMISSIVE FOR SELECT
	USING (oc_leak('permissive policy', body))$$) AS create_permissive_policy;
-- A policy with no code in it changes nothing vecphi relies on: allowed.
SELECT expect_error($$CREATE POLICY oc_plain ON oc_notes AS RESTRICTIVE FOR DELETE
	USING (id > 0)$$) AS create_plain_policy;
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT oc_work(4);
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('policy');
SELECT * FROM oc_found('permissive policy');
RESET ROLE;

---------------------------------------------------------------------------
-- 4. A rule: rule actions run with the owner's rights, but under the
-- claimant's claims.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
SELECT expect_error($$CREATE RULE oc_rule AS ON INSERT TO oc_notes
	DO ALSO INSERT INTO oc_loot VALUES ('rule', vecphi.decrypt(NEW.body))$$) AS create_rule;
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT oc_work(5);
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('rule');
RESET ROLE;

---------------------------------------------------------------------------
-- 5. A column default calling the owner's function, which reads the whole
-- table under the claimant's claims; and a default that sends plaintext
-- out through a setting every session can read (pg_stat_activity).
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
CREATE FUNCTION oc_default() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
	PERFORM oc_harvest('default');
	RETURN now();
END
$$;
CREATE FUNCTION oc_default_setting() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('application_name',
		(SELECT string_agg(vecphi.decrypt(body), ',' ORDER BY id) FROM oc_notes), false);
	RETURN 'clinical';
EXCEPTION WHEN OTHERS THEN
	RETURN 'clinical';
END
$$;
SELECT expect_error($$ALTER TABLE oc_notes ALTER COLUMN made SET DEFAULT oc_default()$$) AS set_default;
SELECT expect_error($$ALTER TABLE oc_notes ALTER COLUMN category SET DEFAULT oc_default_setting()$$) AS set_default_setting;
SELECT expect_error($$ALTER TABLE oc_notes ADD COLUMN spy text DEFAULT oc_default_setting()$$) AS add_column_default;
CREATE FUNCTION oc_gen(v etext) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	PERFORM oc_leak('generated', v);
	RETURN true;
END
$$;
SELECT expect_error($$ALTER TABLE oc_notes ADD COLUMN spy2 boolean
	GENERATED ALWAYS AS (oc_gen(body)) STORED$$) AS add_generated_column;
-- Plain defaults stay the owner's business.
SELECT expect_error($$ALTER TABLE oc_notes ADD COLUMN plain_col timestamptz DEFAULT clock_timestamp()$$) AS add_plain_column;
SELECT expect_error($$ALTER TABLE oc_notes ALTER COLUMN plain_col SET DEFAULT '2026-01-01'$$) AS set_plain_default;
RESET ROLE;
SET application_name = 'oc_before';
SET ROLE regress_oc_app;
BEGIN;
SELECT oc_work(6);
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('default');
SELECT * FROM oc_found('generated');
SELECT application_name AS owner_reads_application_name
FROM pg_stat_activity WHERE pid = pg_backend_pid();
RESET ROLE;
RESET application_name;

---------------------------------------------------------------------------
-- 6. A check constraint sending plaintext out as a large object the owner
-- can read later.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
CREATE FUNCTION oc_check_lo(v etext) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
	PERFORM lo_from_bytea(0, convert_to(vecphi.decrypt(v), 'UTF8'));
	RETURN true;
EXCEPTION WHEN OTHERS THEN
	RETURN true;
END
$$;
SELECT expect_error($$ALTER TABLE oc_notes ADD CONSTRAINT oc_chk CHECK (oc_check_lo(body))$$) AS add_check;
SELECT expect_error($$ALTER TABLE oc_notes ADD CONSTRAINT oc_chk2 CHECK (oc_leak('check', body)) NOT VALID$$) AS add_check_not_valid;
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT oc_work(7);
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('check');
SELECT convert_from(lo_get(m.oid), 'UTF8') AS owner_reads_large_object
FROM pg_largeobject_metadata m WHERE m.lomowner = 'regress_oc_owner'::regrole ORDER BY 1;
RESET ROLE;

---------------------------------------------------------------------------
-- 7. A constraint added to a domain a column already uses (harmless when
-- protect() ran), and a column retyped to a domain with such a check.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
SELECT expect_error($$ALTER DOMAIN oc_text ADD CONSTRAINT oc_spy CHECK (oc_leak('domain', VALUE))$$) AS alter_domain;
CREATE DOMAIN oc_spy_text AS etext CHECK (oc_leak('retyped domain', VALUE));
SELECT expect_error($$ALTER TABLE oc_notes ALTER COLUMN extra TYPE oc_spy_text$$) AS retype_to_domain;
SELECT expect_error($$ALTER TABLE oc_notes ADD COLUMN extra2 oc_spy_text$$) AS add_domain_column;
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT oc_work(8);
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('domain');
SELECT * FROM oc_found('retyped domain');
RESET ROLE;

---------------------------------------------------------------------------
-- 8. An index expression ("immutable", yet it calls out) and an index
-- predicate; the channel is a sequence, which no rollback undoes.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
CREATE FUNCTION oc_idx(v etext) RETURNS int
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	PERFORM setval('oc_seq', length(vecphi.decrypt(v)) * 1000 + ascii(right(vecphi.decrypt(v), 1)));
	PERFORM oc_leak('index', v);
	RETURN 0;
EXCEPTION WHEN OTHERS THEN
	RETURN 0;
END
$$;
SELECT expect_error($$CREATE INDEX oc_spy_idx ON oc_notes ((oc_idx(body)))$$) AS index_expression;
SELECT expect_error($$CREATE INDEX oc_spy_pred ON oc_notes (id) WHERE oc_idx(extra) = 0$$) AS index_predicate;
-- CREATE INDEX CONCURRENTLY commits on its own: refused before it starts.
CREATE INDEX CONCURRENTLY oc_spy_cic ON oc_notes ((oc_idx(body)));
-- Plain indexes (columns, built-in immutable expressions) are fine.
SELECT expect_error($$CREATE INDEX oc_plain_idx ON oc_notes (category, (lower(tenant)))$$) AS plain_index;
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT oc_work(9);
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('index');
SELECT last_value AS owner_reads_sequence FROM oc_seq;
RESET ROLE;

---------------------------------------------------------------------------
-- 9. A new partition of a protected partitioned table, or an unprotected
-- table attached as one, with the owner's trigger: rows the claimant
-- routes there run it.  A table inheriting from a protected table.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
CREATE TABLE oc_parts (id int, tenant text NOT NULL DEFAULT vecphi.tenant(), body etext)
	PARTITION BY RANGE (id);
CREATE TABLE oc_parts_1 PARTITION OF oc_parts FOR VALUES FROM (0) TO (100);
SELECT vecphi.protect('oc_parts', 'tenant');
GRANT SELECT, INSERT ON oc_parts TO regress_oc_app;
CREATE FUNCTION oc_part_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO oc_loot VALUES ('partition', vecphi.decrypt(NEW.body));
	RETURN NEW;
END
$$;
SELECT expect_error($$CREATE TABLE oc_parts_2 PARTITION OF oc_parts FOR VALUES FROM (100) TO (200)$$) AS create_partition;
SELECT expect_error($$CREATE TRIGGER oc_spy AFTER INSERT ON oc_parts_2 FOR EACH ROW EXECUTE FUNCTION oc_part_trg()$$) IS NOT NULL AS trigger_on_partition;
CREATE TABLE oc_parts_3 (id int, tenant text NOT NULL DEFAULT vecphi.tenant(), body etext);
CREATE TRIGGER oc_spy AFTER INSERT ON oc_parts_3 FOR EACH ROW EXECUTE FUNCTION oc_part_trg();
SELECT expect_error($$ALTER TABLE oc_parts ATTACH PARTITION oc_parts_3 FOR VALUES FROM (200) TO (300)$$) AS attach_partition;
SELECT expect_error($$CREATE TABLE oc_child () INHERITS (oc_notes)$$) AS inherit;
-- A protected table may become a partition (create it, protect it, attach
-- it); a protected table may not become the child of an unprotected one,
-- whose queries would read its rows without its policies.
CREATE TABLE oc_parts_4 (id int, tenant text NOT NULL DEFAULT vecphi.tenant(), body etext);
SELECT vecphi.protect('oc_parts_4', 'tenant');
ALTER TABLE oc_parts ATTACH PARTITION oc_parts_4 FOR VALUES FROM (400) TO (500);
CREATE TABLE oc_open_parent (id int, tenant text, body etext);
CREATE TABLE oc_lone (id int, tenant text NOT NULL DEFAULT vecphi.tenant(), body etext);
SELECT vecphi.protect('oc_lone', 'tenant');
SELECT expect_error($$ALTER TABLE oc_lone INHERIT oc_open_parent$$) AS inherit_from_unprotected;
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT vecphi.set_claims(token_for('oc_a', 'oc_clinician'));
SELECT expect_error($$INSERT INTO oc_parts (id, body) VALUES (150, vecphi.encrypt('routed 150'))$$) IS NOT NULL AS insert_150;
SELECT expect_error($$INSERT INTO oc_parts (id, body) VALUES (250, vecphi.encrypt('routed 250'))$$) IS NOT NULL AS insert_250;
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('partition');
RESET ROLE;

---------------------------------------------------------------------------
-- 10. A foreign key from the owner's table with ON DELETE CASCADE: the
-- claimant's DELETE runs the owner's trigger on the referencing table.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
CREATE FUNCTION oc_fk_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM oc_harvest('fk cascade');
	RETURN NULL;
END
$$;
SELECT expect_error($$CREATE TABLE oc_refs (note_id int REFERENCES oc_notes (id) ON DELETE CASCADE)$$) AS fk_cascade_table;
SELECT expect_error($$CREATE TRIGGER oc_spy AFTER DELETE ON oc_refs FOR EACH STATEMENT EXECUTE FUNCTION oc_fk_trg()$$) IS NOT NULL AS trigger_on_referencing;
SELECT expect_error($$INSERT INTO oc_refs VALUES (1)$$) IS NOT NULL AS reference_row_1;
-- A plain foreign key (no action) to the protected table, or from it, is fine.
CREATE TABLE oc_refs_plain (note_id int REFERENCES oc_notes (id));
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT vecphi.set_claims(token_for('oc_a', 'oc_clinician'));
DELETE FROM oc_notes WHERE id = 1;
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('fk cascade');
RESET ROLE;

---------------------------------------------------------------------------
-- 11. Replacing a function an approved object uses.  The owner's table has
-- a check calling the owner's function: protect() by the owner refuses
-- and names it; the security officer vouches for it; then the owner
-- replaces the function's body.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
CREATE FUNCTION oc_nonempty(v etext) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT v IS NOT NULL $$;
-- A SQL-standard body records what it calls: the callee is tracked too.
CREATE FUNCTION oc_inner(v etext) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE FUNCTION oc_outer(v etext) RETURNS boolean LANGUAGE sql IMMUTABLE
BEGIN ATOMIC
	SELECT oc_inner(v);
END;
CREATE TABLE oc_vouched (id int, tenant text NOT NULL DEFAULT vecphi.tenant(),
	body etext CHECK (oc_nonempty(body)) CHECK (oc_outer(body)));
SELECT oc_mask(expect_error_detail($$SELECT vecphi.protect('oc_vouched', 'tenant')$$)) AS owner_protects_owner_code;
GRANT SELECT, INSERT ON oc_vouched TO regress_oc_app;
RESET ROLE;
SET ROLE regress_oc_officer;
SELECT vecphi.protect('oc_vouched', 'tenant');
RESET ROLE;
-- What the officer vouched for.
SELECT oc_mask(unnest(vecphi.owner_code('oc_vouched'))) AS owner_code;
SET ROLE regress_oc_owner;
SELECT oc_mask(expect_error_detail($q$CREATE OR REPLACE FUNCTION oc_nonempty(v etext) RETURNS boolean
	LANGUAGE sql IMMUTABLE AS $b$ SELECT oc_leak('replaced function', v) $b$$q$)) AS replace_function;
SELECT expect_error($$ALTER FUNCTION oc_nonempty(etext) SECURITY DEFINER$$) AS alter_function;
SELECT expect_error($q$CREATE OR REPLACE FUNCTION oc_inner(v etext) RETURNS boolean
	LANGUAGE sql IMMUTABLE AS $b$ SELECT oc_leak('replaced callee', v) $b$$q$) AS replace_callee;
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT vecphi.set_claims(token_for('oc_a', 'oc_clinician'));
INSERT INTO oc_vouched (id, body) VALUES (1, vecphi.encrypt('vouched 1'));
COMMIT;
SET ROLE regress_oc_owner;
SELECT * FROM oc_found('replaced function');
SELECT * FROM oc_found('replaced callee');
RESET ROLE;

---------------------------------------------------------------------------
-- 12. Taking vecphi's protection off or weakening it: no more FORCE, RLS
-- off, vecphi's policies dropped or altered, protect() again without the
-- category column, vecphi's erasure trigger disabled, the table renamed
-- (so that a view of the owner's could take its name) or given away.
---------------------------------------------------------------------------
-- (track_erasure() needs EXECUTE on vecphi.note_erasure(), which only a
-- superuser has today.)
SELECT vecphi.track_erasure('oc_notes');
SET ROLE regress_oc_owner;
SELECT oc_mask(expect_error_detail($$ALTER TABLE oc_notes NO FORCE ROW LEVEL SECURITY$$)) AS no_force_rls;
SELECT expect_error($$ALTER TABLE oc_notes DISABLE ROW LEVEL SECURITY$$) AS disable_rls;
SELECT expect_error($$DROP POLICY vecphi_select ON oc_notes$$) AS drop_vecphi_policy;
SELECT expect_error($$ALTER POLICY vecphi_select ON oc_notes USING (true)$$) AS alter_vecphi_policy;
SELECT expect_error($$ALTER POLICY vecphi_select ON oc_notes RENAME TO oc_was_vecphi$$) AS rename_vecphi_policy;
-- What the owner sees now without claims (on 0.1.0: every row, once RLS
-- is off or vecphi_select is gone).
SELECT count(*) AS owner_sees FROM oc_notes;
RESET ROLE;
SELECT relrowsecurity, relforcerowsecurity,
	(SELECT string_agg(polname, ',' ORDER BY polname) FROM pg_policy WHERE polrelid = 'oc_notes'::regclass) AS policies
FROM pg_class WHERE oid = 'oc_notes'::regclass;
SET ROLE regress_oc_owner;
SELECT oc_mask(expect_error_detail($$SELECT vecphi.protect('oc_notes', 'tenant')$$)) AS reprotect_without_category;
RESET ROLE;
-- What a claimant whose role is granted no category sees (on 0.1.0, after
-- protect() without the category column: every row of its tenant).
SET ROLE regress_oc_app;
BEGIN;
SELECT vecphi.set_claims(token_for('oc_a', 'oc_billing'));
SELECT count(*) AS billing_sees FROM oc_notes;
COMMIT;
RESET ROLE;
SET ROLE regress_oc_owner;
SELECT expect_error($$ALTER TABLE oc_notes DISABLE TRIGGER vecphi_erasure$$) AS disable_vecphi_trigger;
SELECT expect_error($$ALTER TABLE oc_notes DISABLE TRIGGER USER$$) AS disable_user_triggers;
SELECT expect_error($$DROP TRIGGER vecphi_erasure ON oc_notes$$) AS drop_vecphi_trigger;
SELECT expect_error($$ALTER TABLE oc_notes DROP COLUMN category CASCADE$$) AS drop_category_column;
SELECT expect_error($$ALTER TABLE oc_notes SET (vacuum_index_cleanup = off)$$) AS keep_deleted_index_elements;
SELECT expect_error($$ALTER TABLE oc_notes RENAME TO oc_notes_real$$) AS rename_table;
SELECT expect_error($$ALTER TABLE oc_notes OWNER TO regress_oc_owner2$$) AS give_away;
-- A policy named like vecphi's on another table does not make it protected.
CREATE TABLE oc_fake (id int, tenant text);
SELECT expect_error($$CREATE POLICY vecphi_select ON oc_fake USING (true)$$) AS fake_vecphi_policy;
-- Harmless changes are still the owner's: protect() again with the same
-- arguments, a plain column, a comment.
SELECT vecphi.protect('oc_notes', 'tenant', 'category');
ALTER TABLE oc_notes ADD COLUMN note_kind text;
ALTER TABLE oc_notes SET (fillfactor = 90);
COMMENT ON TABLE oc_notes IS 'notes';
RESET ROLE;
SELECT relrowsecurity, relforcerowsecurity,
	(SELECT string_agg(polname, ',' ORDER BY polname) FROM pg_policy WHERE polrelid = 'oc_notes'::regclass) AS policies,
	(SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'oc_notes'::regclass AND tgname = 'vecphi_erasure') AS erasure_trigger
FROM pg_class WHERE oid = 'oc_notes'::regclass;

---------------------------------------------------------------------------
-- 13. The security officer may make such changes, and each is audited.
-- After it, the owner may neither change nor disable what was approved,
-- but may remove it.
---------------------------------------------------------------------------
SET ROLE regress_oc_officer;
CREATE TRIGGER oc_officer_trg BEFORE UPDATE ON oc_notes
	FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
RESET ROLE;
SET ROLE regress_oc_owner;
SELECT expect_error($$ALTER TABLE oc_notes DISABLE TRIGGER oc_officer_trg$$) AS owner_disables_approved;
DROP TRIGGER oc_officer_trg ON oc_notes;
RESET ROLE;

---------------------------------------------------------------------------
-- What the owner found, in all: nothing.  The claimant's notes are intact.
---------------------------------------------------------------------------
SET ROLE regress_oc_owner;
SELECT count(*) AS loot_rows FROM oc_loot;
RESET ROLE;
SET ROLE regress_oc_app;
BEGIN;
SELECT vecphi.set_claims(token_for('oc_a', 'oc_clinician'));
SELECT string_agg(vecphi.decrypt(body), ', ' ORDER BY id) AS claimant_notes FROM oc_notes;
COMMIT;
RESET ROLE;

-- Every refusal and every approved change is in the audit log.
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT action, outcome, db_user, relation, left(oc_mask(detail), 150) AS detail
FROM vecphi.audit_log
WHERE seq > (SELECT seq FROM oc_mark)
  AND (action = 'protected_ddl' OR detail LIKE '%protected table%' OR detail LIKE '%code that would run%'
	   OR detail LIKE '%CONCURRENTLY%'
	   OR detail LIKE '%weaken the protection%')
ORDER BY seq;

---------------------------------------------------------------------------
-- Clean up.
---------------------------------------------------------------------------
SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE lomowner = 'regress_oc_owner'::regrole;
DROP TABLE oc_notes, oc_parts, oc_parts_3, oc_vouched, oc_loot, oc_fake, oc_mark, oc_lone, oc_open_parent CASCADE;
DROP TABLE IF EXISTS oc_parts_2, oc_refs, oc_refs_plain, oc_child;
DROP FUNCTION oc_work(int), oc_found(text), oc_mask(text);
DELETE FROM vecphi.role_categories WHERE app_role = 'oc_clinician';
DROP OWNED BY regress_oc_owner, regress_oc_owner2, regress_oc_app, regress_oc_officer;
DROP ROLE regress_oc_owner, regress_oc_owner2, regress_oc_app, regress_oc_officer;
