-- binding: a value's ciphertext is bound to its place (table, column, row).
-- A superuser who copies row 1's ciphertext over row 2 of the same tenant
-- must not make row 2 decrypt to row 1's vector: the claimant gets XX001
-- and a denial record.

\pset null '<null>'

SELECT vecphi.create_tenant('bind_a') > 0 AS bind_a_created;
CREATE ROLE regress_bind_owner NOLOGIN;
CREATE ROLE regress_bind_app NOLOGIN;
GRANT USAGE, CREATE ON SCHEMA public TO regress_bind_owner;
GRANT USAGE ON SCHEMA public TO regress_bind_app;

SET ROLE regress_bind_owner;
CREATE TABLE bind_notes (
	id int PRIMARY KEY,
	tenant text NOT NULL DEFAULT vecphi.tenant(),
	body etext,
	emb evector(3)
);
SELECT vecphi.protect('bind_notes', 'tenant');
GRANT SELECT, INSERT, UPDATE, DELETE ON bind_notes TO regress_bind_app;
RESET ROLE;

SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
INSERT INTO bind_notes (id, body, emb) VALUES
	(1, 'patient one', '[1,1,1]'), (2, 'patient two', '[2,2,2]');
SELECT id, vecphi.decrypt(body) AS body, vecphi.decrypt(emb) AS emb FROM bind_notes ORDER BY id;
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- 1. The attack: a superuser (no claims) copies row 1's ciphertext over
-- row 2, with triggers disabled.
---------------------------------------------------------------------------
ALTER TABLE bind_notes DISABLE TRIGGER vecphi_binding;
UPDATE bind_notes SET emb = (SELECT emb FROM bind_notes WHERE id = 1),
	body = (SELECT body FROM bind_notes WHERE id = 1) WHERE id = 2;
ALTER TABLE bind_notes ENABLE ALWAYS TRIGGER vecphi_binding;
-- Row 2 must never decrypt to row 1's vector or text.
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SELECT expect_error($$SELECT vecphi.decrypt(emb) FROM bind_notes WHERE id = 2$$) AS moved_emb;
SELECT expect_error($$SELECT vecphi.decrypt(body) FROM bind_notes WHERE id = 2$$) AS moved_body;
SELECT expect_error($$SELECT id FROM bind_notes ORDER BY emb <-> '[1,1,1]' LIMIT 2$$) AS search_sees_moved;
COMMIT;
RESET ROLE;
-- The denial records of the refusals above.
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT action, outcome, detail FROM vecphi.audit_log
WHERE action = 'denial' AND detail LIKE 'ciphertext of column%bind_notes%'
ORDER BY seq;

-- In a parallel worker too (the check is PARALLEL SAFE), and the worker
-- queues its own denial record.
SELECT vecphi.audit_flush() >= 0 AS flushed;
CREATE TEMP TABLE bind_denials_before AS
SELECT count(*) AS n FROM vecphi.audit_log
WHERE action = 'denial' AND detail LIKE 'ciphertext of column%bind_notes%';
GRANT SELECT ON bind_denials_before TO PUBLIC;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_leader_participation = off;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL enable_indexscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT vecphi.decrypt(emb) FROM bind_notes WHERE id = 2;
SELECT vecphi.decrypt(emb) FROM bind_notes WHERE id = 2;
ROLLBACK;
RESET ROLE;
DO $$
BEGIN
	FOR i IN 1 .. 50 LOOP
		PERFORM vecphi.audit_flush();
		EXIT WHEN (SELECT count(*) FROM vecphi.audit_log WHERE action = 'denial'
			AND detail LIKE 'ciphertext of column%bind_notes%') > (SELECT n FROM bind_denials_before);
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
SELECT (SELECT count(*) FROM vecphi.audit_log WHERE action = 'denial'
	AND detail LIKE 'ciphertext of column%bind_notes%') - n AS new_denial_records
FROM bind_denials_before;
-- DELETE ... RETURNING cannot read the moved value either.
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SELECT expect_error($$DELETE FROM bind_notes WHERE id = 2 RETURNING vecphi.decrypt(emb)$$) AS delete_returning;
COMMIT;
RESET ROLE;
-- The same move by a superuser with the triggers on, but without claims:
-- refused at write time.
SELECT expect_error($$UPDATE bind_notes SET emb = (SELECT emb FROM bind_notes WHERE id = 1) WHERE id = 2$$) AS raw_update_without_claims;
-- Nor under session_replication_role = replica (the trigger is ALWAYS).
SET session_replication_role = replica;
SELECT expect_error($$UPDATE bind_notes SET emb = (SELECT emb FROM bind_notes WHERE id = 1) WHERE id = 2$$) AS raw_update_as_replica;
RESET session_replication_role;
-- Put row 2 right again (the superuser bypasses the read check).
ALTER TABLE bind_notes DISABLE TRIGGER vecphi_binding;
CREATE TEMP TABLE bind_saved AS SELECT id, body, emb FROM bind_notes;
ALTER TABLE bind_notes ENABLE ALWAYS TRIGGER vecphi_binding;

---------------------------------------------------------------------------
-- 2. What is stored: format 2 envelopes (bound), header 32 bytes.
---------------------------------------------------------------------------
SELECT id, get_byte(envelope_bytes(emb::text), 0) AS emb_format,
	get_byte(envelope_bytes(body::text), 0) AS body_format
FROM bind_notes ORDER BY id;
SELECT relid, binding_label, column_names, column_labels
FROM vecphi.protected_tables WHERE relid = 'bind_notes'::regclass;

---------------------------------------------------------------------------
-- 3. The claimant can still copy a value from row to row (it could write
-- the plaintext anyway): the trigger re-seals it for its new row.
---------------------------------------------------------------------------
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SELECT expect_error($$UPDATE bind_notes SET emb = '[2,2,2]', body = 'patient two' WHERE id = 2$$) AS repair_refused_by_read_check;
COMMIT;
RESET ROLE;
-- The security officer's repair: delete the moved row (superuser here).
DELETE FROM bind_notes WHERE id = 2;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
INSERT INTO bind_notes (id, body, emb) VALUES (2, 'patient two', '[2,2,2]');
INSERT INTO bind_notes (id, body, emb) SELECT 3, body, emb FROM bind_notes WHERE id = 1;
SELECT id, vecphi.decrypt(body) AS body, vecphi.decrypt(emb) AS emb FROM bind_notes ORDER BY id;
-- A primary key change re-binds under claims.
UPDATE bind_notes SET id = 4 WHERE id = 3;
SELECT id, vecphi.decrypt(emb) AS emb FROM bind_notes ORDER BY id;
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- 4. Forged header: row 1's ciphertext over row 2 with row 2's binding
-- digest written into its header.  The header check passes; GCM
-- authentication (the header is associated data) fails.
---------------------------------------------------------------------------
ALTER TABLE bind_notes DISABLE TRIGGER vecphi_binding;
UPDATE bind_notes SET emb = envelope_text(overlay(
	envelope_bytes((SELECT emb::text FROM bind_notes WHERE id = 1))
	PLACING substr(envelope_bytes(emb::text), 17, 16) FROM 17 FOR 16))::evector WHERE id = 2;
ALTER TABLE bind_notes ENABLE ALWAYS TRIGGER vecphi_binding;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SELECT expect_error_detail($$SELECT vecphi.decrypt(emb) FROM bind_notes WHERE id = 2$$) AS forged_header;
SELECT expect_error($$SELECT id FROM bind_notes ORDER BY emb <-> '[1,1,1]' LIMIT 3$$) AS forged_header_search;
COMMIT;
RESET ROLE;
-- A bound value turned back into format 1 (binding stripped): refused as
-- unbound before decryption, and would fail authentication anyway.
ALTER TABLE bind_notes DISABLE TRIGGER vecphi_binding;
UPDATE bind_notes SET emb = envelope_text(set_byte(overlay(envelope_bytes(emb::text)
	PLACING ''::bytea FROM 17 FOR 16), 0, 1))::evector WHERE id = 4;
ALTER TABLE bind_notes ENABLE ALWAYS TRIGGER vecphi_binding;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SELECT expect_error($$SELECT vecphi.decrypt(emb) FROM bind_notes WHERE id = 4$$) AS stripped_binding;
COMMIT;
RESET ROLE;
DELETE FROM bind_notes WHERE id IN (2, 4);

---------------------------------------------------------------------------
-- 5. The binding survives VACUUM FULL, CLUSTER, table and column renames.
---------------------------------------------------------------------------
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
INSERT INTO bind_notes (id, body, emb) VALUES (2, 'patient two', '[2,2,2]');
COMMIT;
RESET ROLE;
CREATE FUNCTION bind_read(tbl text, col text DEFAULT 'emb') RETURNS TABLE (id int, v real[])
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM as_tenant('bind_a');
	RETURN QUERY EXECUTE format('SELECT id, vecphi.decrypt(%I) FROM %s ORDER BY id', col, tbl);
END
$$;
GRANT EXECUTE ON FUNCTION bind_read(text, text) TO regress_bind_app;
VACUUM FULL bind_notes;
CLUSTER bind_notes USING bind_notes_pkey;
ALTER TABLE bind_notes RENAME TO bind_renamed;
ALTER TABLE bind_renamed RENAME COLUMN emb TO embedding;
SELECT relid, binding_label, column_names, column_labels
FROM vecphi.protected_tables WHERE relid = 'bind_renamed'::regclass;
SET ROLE regress_bind_app;
SELECT * FROM bind_read('bind_renamed', 'embedding');
RESET ROLE;
-- A move is still detected after the renames.
ALTER TABLE bind_renamed DISABLE TRIGGER vecphi_binding;
UPDATE bind_renamed SET embedding = (SELECT embedding FROM bind_renamed WHERE id = 1) WHERE id = 2;
ALTER TABLE bind_renamed ENABLE ALWAYS TRIGGER vecphi_binding;
SET ROLE regress_bind_app;
SELECT expect_error($$SELECT * FROM bind_read('bind_renamed', 'embedding')$$) AS moved_after_rename;
RESET ROLE;
DELETE FROM bind_renamed WHERE id = 2;

-- The owner's own BEFORE trigger, firing after vecphi_binding, swaps in
-- row 1's value: the write policy refuses the row (and, were it stored,
-- the read would).
-- (The owner may no longer add such a trigger at all, see owner_code; a
-- superuser may, and the binding still catches the swap.)
CREATE FUNCTION bind_swap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.embedding := (SELECT embedding FROM bind_renamed WHERE id = 1);
	RETURN NEW;
END
$$;
SET ROLE regress_bind_owner;
SELECT expect_error($$CREATE TRIGGER zz_swap BEFORE INSERT ON bind_renamed FOR EACH ROW
	WHEN (NEW.id = 5) EXECUTE FUNCTION bind_swap()$$) ~ '^42501' AS owner_may_not_add_trigger;
RESET ROLE;
CREATE TRIGGER zz_swap BEFORE INSERT ON bind_renamed FOR EACH ROW
	WHEN (NEW.id = 5) EXECUTE FUNCTION bind_swap();
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SELECT expect_error($$INSERT INTO bind_renamed (id, body, embedding) VALUES (5, 'five', '[5,5,5]')$$) AS insert_with_swap;
SELECT count(*) AS swapped_rows_stored FROM bind_renamed WHERE id = 5;
COMMIT;
RESET ROLE;
DROP TRIGGER zz_swap ON bind_renamed;
DELETE FROM bind_renamed WHERE id = 5;

---------------------------------------------------------------------------
-- 6. A value moved to another table with the same row key and column is
-- refused too (the label differs).
---------------------------------------------------------------------------
SET ROLE regress_bind_owner;
CREATE TABLE bind_other (id int PRIMARY KEY, tenant text NOT NULL DEFAULT vecphi.tenant(),
	body etext, embedding evector(3));
SELECT vecphi.protect('bind_other', 'tenant');
GRANT SELECT ON bind_other TO regress_bind_app;
RESET ROLE;
ALTER TABLE bind_other DISABLE TRIGGER vecphi_binding;
INSERT INTO bind_other SELECT * FROM bind_renamed WHERE id = 1;
ALTER TABLE bind_other ENABLE ALWAYS TRIGGER vecphi_binding;
SET ROLE regress_bind_app;
SELECT expect_error($$SELECT * FROM bind_read('bind_other', 'embedding')$$) AS moved_to_other_table;
RESET ROLE;
-- ... and between columns of one row (body into a second etext column).
ALTER TABLE bind_renamed ADD COLUMN body2 etext;
SET ROLE regress_bind_owner;
SELECT vecphi.protect('bind_renamed', 'tenant');
RESET ROLE;
ALTER TABLE bind_renamed DISABLE TRIGGER vecphi_binding;
UPDATE bind_renamed SET body2 = body WHERE id = 1;
ALTER TABLE bind_renamed ENABLE ALWAYS TRIGGER vecphi_binding;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SELECT expect_error($$SELECT vecphi.decrypt(body2) FROM bind_renamed$$) AS moved_to_other_column;
COMMIT;
RESET ROLE;
UPDATE bind_renamed SET body2 = NULL WHERE id = 1;

---------------------------------------------------------------------------
-- 7. Existing data: a table protected after rows were written holds
-- unbound values.  Reads refuse them until the security officer binds them
-- with vecphi.bind_existing(); a value bound elsewhere is never re-bound.
---------------------------------------------------------------------------
CREATE ROLE regress_bind_officer NOLOGIN IN ROLE vecphi_security_officer;
SET ROLE regress_bind_owner;
CREATE TABLE bind_legacy (id int PRIMARY KEY, tenant text NOT NULL DEFAULT vecphi.tenant(),
	emb evector(3));
GRANT SELECT, INSERT ON bind_legacy TO regress_bind_app;
RESET ROLE;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
INSERT INTO bind_legacy (id, emb) VALUES (1, '[1,0,0]'), (2, '[0,1,0]');
COMMIT;
RESET ROLE;
SELECT id, get_byte(envelope_bytes(emb::text), 0) AS format FROM bind_legacy ORDER BY id;
SET ROLE regress_bind_owner;
SELECT vecphi.protect('bind_legacy', 'tenant');
RESET ROLE;
SET ROLE regress_bind_app;
SELECT expect_error_detail($$SELECT * FROM bind_read('bind_legacy')$$) AS unbound_refused;
-- Not for the application, nor the table owner.
SELECT expect_error($$SELECT vecphi.bind_existing('bind_legacy')$$) AS app_binds;
RESET ROLE;
SET ROLE regress_bind_owner;
SELECT expect_error($$SELECT vecphi.bind_existing('bind_legacy')$$) AS owner_binds;
RESET ROLE;
SET ROLE regress_bind_officer;
SELECT vecphi.bind_existing('bind_legacy') AS values_bound;
SELECT vecphi.bind_existing('bind_legacy') AS values_bound_again;
RESET ROLE;
SELECT id, get_byte(envelope_bytes(emb::text), 0) AS format FROM bind_legacy ORDER BY id;
SET ROLE regress_bind_app;
SELECT * FROM bind_read('bind_legacy');
RESET ROLE;
SELECT action, outcome, rows_returned, detail FROM vecphi.audit_log
WHERE action = 'bind' ORDER BY seq;
-- Laundering: a bound value moved, then bind_existing: refused, nothing changed.
ALTER TABLE bind_legacy DISABLE TRIGGER vecphi_binding;
UPDATE bind_legacy SET emb = (SELECT emb FROM bind_legacy WHERE id = 1) WHERE id = 2;
ALTER TABLE bind_legacy ENABLE ALWAYS TRIGGER vecphi_binding;
SET ROLE regress_bind_officer;
SELECT expect_error($$SELECT vecphi.bind_existing('bind_legacy')$$) AS launder_refused;
RESET ROLE;

-- bind_existing maintains the table's ehnsw index (new row versions).
SET ROLE regress_bind_owner;
CREATE TABLE bind_legacy2 (id int PRIMARY KEY, tenant text NOT NULL DEFAULT vecphi.tenant(),
	emb evector(3));
CREATE INDEX bind_legacy2_emb ON bind_legacy2 USING ehnsw (emb);
GRANT SELECT, INSERT ON bind_legacy2 TO regress_bind_app;
RESET ROLE;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
INSERT INTO bind_legacy2 (id, emb) SELECT g, ARRAY[g, 0, 0]::real[] FROM generate_series(1, 20) g;
COMMIT;
RESET ROLE;
SET ROLE regress_bind_owner;
SELECT vecphi.protect('bind_legacy2', 'tenant');
RESET ROLE;
SET ROLE regress_bind_officer;
SELECT vecphi.bind_existing('bind_legacy2') AS values_bound;
RESET ROLE;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SET LOCAL enable_seqscan = off;
SELECT id FROM bind_legacy2 ORDER BY emb <-> '[3.1,0,0]' LIMIT 3;
COMMIT;
RESET ROLE;
SELECT vecphi.index_check('bind_legacy2_emb') AS index_ok;
-- A value moved under an ehnsw index: the index scan hands the heap row to
-- the policy, which refuses it.
ALTER TABLE bind_legacy2 DISABLE TRIGGER vecphi_binding;
UPDATE bind_legacy2 SET emb = (SELECT emb FROM bind_legacy2 WHERE id = 3) WHERE id = 7;
ALTER TABLE bind_legacy2 ENABLE ALWAYS TRIGGER vecphi_binding;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SET LOCAL enable_seqscan = off;
SET LOCAL plan_cache_mode = force_generic_plan;
PREPARE bind_near(evector) AS SELECT id FROM bind_legacy2 ORDER BY emb <-> $1 LIMIT 3;
EXPLAIN (COSTS OFF) EXECUTE bind_near('[3.1,0,0]');
SELECT expect_error($$EXECUTE bind_near('[3.1,0,0]')$$) AS index_scan_meets_moved;
COMMIT;
DEALLOCATE bind_near;
RESET ROLE;

---------------------------------------------------------------------------
-- 7b. A partitioned table: values are bound to the partitioned table's
-- label, so a row may move between partitions; a move between rows is
-- refused whether the query names the parent or the partition.
---------------------------------------------------------------------------
SET ROLE regress_bind_owner;
CREATE TABLE bind_parts (id int, tenant text NOT NULL DEFAULT vecphi.tenant(),
	emb evector(3), PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE bind_parts_1 PARTITION OF bind_parts FOR VALUES FROM (0) TO (100);
CREATE TABLE bind_parts_2 PARTITION OF bind_parts FOR VALUES FROM (100) TO (200);
SELECT vecphi.protect('bind_parts', 'tenant');
GRANT SELECT, INSERT, UPDATE ON bind_parts, bind_parts_1, bind_parts_2 TO regress_bind_app;
RESET ROLE;
SELECT tgrelid::regclass, tgenabled FROM pg_trigger
WHERE tgname = 'vecphi_binding' AND tgrelid::regclass::text LIKE 'bind_parts%' ORDER BY 1;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
INSERT INTO bind_parts (id, emb) VALUES (1, '[1,0,0]'), (2, '[2,0,0]'), (101, '[101,0,0]');
UPDATE bind_parts SET id = 150 WHERE id = 2;
SELECT tableoid::regclass, id, vecphi.decrypt(emb) FROM bind_parts ORDER BY id;
COMMIT;
RESET ROLE;
ALTER TABLE bind_parts_1 DISABLE TRIGGER vecphi_binding;
UPDATE bind_parts_1 SET emb = (SELECT emb FROM bind_parts WHERE id = 101) WHERE id = 1;
ALTER TABLE bind_parts_1 ENABLE ALWAYS TRIGGER vecphi_binding;
SET ROLE regress_bind_app;
BEGIN;
SELECT as_tenant('bind_a');
SELECT expect_error($$SELECT vecphi.decrypt(emb) FROM bind_parts WHERE id = 1$$) AS via_parent;
SELECT expect_error($$SELECT vecphi.decrypt(emb) FROM bind_parts_1 WHERE id = 1$$) AS via_partition;
COMMIT;
RESET ROLE;

---------------------------------------------------------------------------
-- 7c. A role that bypasses row-level security (here a superuser) with one
-- tenant's claims cannot bind another tenant's value into a row.
---------------------------------------------------------------------------
SELECT vecphi.create_tenant('bind_b') > 0 AS bind_b_created;
BEGIN;
SELECT as_tenant('bind_b');
CREATE TEMP TABLE bind_b_value AS SELECT '[9,9,9]'::evector(3) AS emb;
COMMIT;
BEGIN;
SELECT as_tenant('bind_a');
SELECT expect_error($$INSERT INTO bind_renamed (id, tenant, embedding) SELECT 7, 'bind_a', emb FROM bind_b_value$$) AS other_tenant_by_superuser;
COMMIT;

---------------------------------------------------------------------------
-- 8. Labels: fixed once set; a chosen one needs the security officer; a
-- table without a primary key is bound to table and column only.
---------------------------------------------------------------------------
SET ROLE regress_bind_owner;
SELECT expect_error($$SELECT vecphi.protect('bind_other', 'tenant', NULL, 'public.other_label')$$) AS relabel;
CREATE TABLE bind_sub (id int PRIMARY KEY, tenant text, emb evector(3));
SELECT expect_error($$SELECT vecphi.protect('bind_sub', 'tenant', NULL, 'public.bind_sub_replica')$$) AS chosen_label_by_owner;
CREATE TABLE bind_nokey (tenant text, emb evector(3));
SELECT vecphi.protect('bind_nokey', 'tenant');
RESET ROLE;
SELECT expect_error($$SELECT vecphi.protect('bind_sub', 'tenant', NULL, 'public.bind_notes')$$) AS label_in_use;
SELECT vecphi.protect('bind_sub', 'tenant', NULL, 'public.bind_sub_replica');
SELECT binding_label FROM vecphi.protected_tables WHERE relid = 'bind_sub'::regclass;
-- Dropping a table frees its label.
DROP TABLE bind_sub;
SELECT count(*) AS left_behind FROM vecphi.protected_tables WHERE binding_label = 'public.bind_sub_replica';

---------------------------------------------------------------------------
-- Clean up.
---------------------------------------------------------------------------
DROP TABLE bind_renamed, bind_other, bind_legacy, bind_legacy2, bind_parts, bind_nokey;
DROP FUNCTION bind_read(text, text);
DROP OWNED BY regress_bind_owner, regress_bind_app, regress_bind_officer;
DROP ROLE regress_bind_owner, regress_bind_app, regress_bind_officer;
