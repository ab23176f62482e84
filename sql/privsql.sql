-- privsql: SQL that vecphi runs with privileges other than the caller's
-- cannot be hijacked by objects the caller plants (docs/security.md,
-- "Privileged code paths").
--
-- The attacker, regress_priv_owner, is an ordinary role that owns a
-- protected table and a schema.  It plants look-alikes of every function,
-- operator and type name vecphi's internal SQL uses: operators = <= < >= +
-- ||, aggregates count(*), max, min, string_agg, functions encode, sha256,
-- convert_to, domains text, bytea, int4, int8, once in its schema put first
-- in search_path and once in pg_temp (searched first for types).  Each of
-- them calls privsql_evil.pwn(), which writes down the role it ran as and,
-- when that role is a superuser, makes the attacker a superuser.  Then the
-- attacker (or a key administrator, or the security officer, with the same
-- search_path) drives every privileged path: vecphi.scrub(), VACUUM, the
-- erasure trigger, a query through the row-level policies, the key
-- functions and the audit functions.  After each step privsql_gained()
-- shows whether the attacker is a superuser and which planted objects ran
-- as a role other than the attacker: both must stay empty, while the
-- feature still works.  (The audit writer's database-level search_path is
-- attacked in test/t/060_privsql_worker.pl.)
\pset null '<null>'

SELECT vecphi.create_tenant('priv_a') > 0 AS priv_a;
CREATE ROLE regress_priv_owner NOLOGIN;
CREATE ROLE regress_priv_keyadmin NOLOGIN IN ROLE vecphi_key_admin;
CREATE ROLE regress_priv_officer NOLOGIN IN ROLE vecphi_security_officer;
CREATE SCHEMA privsql_evil AUTHORIZATION regress_priv_owner;
GRANT USAGE ON SCHEMA privsql_evil TO PUBLIC;
GRANT CREATE ON SCHEMA public TO regress_priv_owner;
INSERT INTO vecphi.role_categories VALUES ('clinician', 'general');

-- Where the planted objects write down who ran them.
CREATE TABLE privsql_hits (obj text, ran_as text);
GRANT INSERT ON privsql_hits TO PUBLIC;

-- What the attacker gained: is it a superuser, and which planted objects
-- ran as another role?  Then back to the start.
CREATE FUNCTION privsql_gained(OUT attacker_is_superuser boolean,
							   OUT ran_as_others text)
LANGUAGE sql SET search_path = pg_catalog, public, pg_temp AS $$
	SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_priv_owner'),
		(SELECT string_agg(DISTINCT obj || ' as ' || ran_as, ', ')
		 FROM privsql_hits WHERE ran_as <> 'regress_priv_owner')
$$;
CREATE FUNCTION privsql_reset() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
	ALTER ROLE regress_priv_owner NOSUPERUSER;
	DELETE FROM privsql_hits;
END
$$;

-- Rows of tenant priv_a, and deleting them all (each call sets claims).
CREATE FUNCTION privsql_fill(n int) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
	PERFORM as_tenant('priv_a');
	INSERT INTO privsql_notes (id, patient, category, emb)
		SELECT g, 'patient_' || (g % 3), 'general', ARRAY[g, g + 1, g + 2]::real[]
		FROM generate_series(1, n) g;
END
$$;
CREATE FUNCTION privsql_delete() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM as_tenant('priv_a');
	DELETE FROM privsql_notes;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

-- The newest erasure record: certified with a subjects digest?
CREATE FUNCTION privsql_last_erasure() RETURNS text
LANGUAGE sql SET search_path = pg_catalog, public, pg_temp AS $$
	SELECT regexp_replace(detail, '^(\w+): .*?(subjects sha256:)[0-9a-f]{64}.*$', '\1 \2<hex>')
	FROM vecphi.audit_log WHERE action = 'erasure' ORDER BY seq DESC LIMIT 1
$$;

---------------------------------------------------------------------------
-- The attacker's table, tracked for erasure, and its planted objects.
---------------------------------------------------------------------------
SET ROLE regress_priv_owner;
CREATE TABLE privsql_notes (
	id			int PRIMARY KEY,
	tenant		text NOT NULL DEFAULT vecphi.tenant(),
	patient		text NOT NULL,
	category	text NOT NULL,
	emb			evector(3)
) WITH (autovacuum_enabled = off);
SELECT vecphi.protect('privsql_notes', 'tenant', 'category');
RESET ROLE;
-- track_erasure creates a trigger on vecphi.note_erasure(), which only a
-- superuser may use: the DBA tracks the application's table.
SELECT vecphi.track_erasure('privsql_notes', 'patient');
SET ROLE regress_priv_owner;

CREATE FUNCTION privsql_evil.pwn(obj pg_catalog.text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
	INSERT INTO public.privsql_hits VALUES (obj, CURRENT_USER);
	IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r
		WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
		EXECUTE 'ALTER ROLE regress_priv_owner SUPERUSER';
	END IF;
	RETURN true;
END
$$;

-- Operators: each gives the right answer, after calling pwn().
CREATE FUNCTION privsql_evil.op_eq_oid(oid, oid) RETURNS boolean LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('= (oid, oid)'); RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
CREATE OPERATOR privsql_evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = privsql_evil.op_eq_oid);
CREATE FUNCTION privsql_evil.op_eq_text(text, text) RETURNS boolean LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('= (text, text)'); RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
CREATE OPERATOR privsql_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = privsql_evil.op_eq_text);
CREATE FUNCTION privsql_evil.op_eq_int4(int4, int4) RETURNS boolean LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('= (int4, int4)'); RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
CREATE OPERATOR privsql_evil.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = privsql_evil.op_eq_int4);
CREATE FUNCTION privsql_evil.op_le_int8(int8, int8) RETURNS boolean LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('<= (int8, int8)'); RETURN $1 OPERATOR(pg_catalog.<=) $2; END$$;
CREATE OPERATOR privsql_evil.<= (LEFTARG = int8, RIGHTARG = int8, FUNCTION = privsql_evil.op_le_int8);
CREATE FUNCTION privsql_evil.op_lt_int8(int8, int8) RETURNS boolean LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('< (int8, int8)'); RETURN $1 OPERATOR(pg_catalog.<) $2; END$$;
CREATE OPERATOR privsql_evil.< (LEFTARG = int8, RIGHTARG = int8, FUNCTION = privsql_evil.op_lt_int8);
CREATE FUNCTION privsql_evil.op_ge_tstz(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('>= (timestamptz, timestamptz)'); RETURN $1 OPERATOR(pg_catalog.>=) $2; END$$;
CREATE OPERATOR privsql_evil.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = privsql_evil.op_ge_tstz);
CREATE FUNCTION privsql_evil.op_plus_int4(int4, int4) RETURNS int4 LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('+ (int4, int4)'); RETURN $1 OPERATOR(pg_catalog.+) $2; END$$;
CREATE OPERATOR privsql_evil.+ (LEFTARG = int4, RIGHTARG = int4, FUNCTION = privsql_evil.op_plus_int4);
CREATE FUNCTION privsql_evil.op_plus_int84(int8, int4) RETURNS int8 LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('+ (int8, int4)'); RETURN $1 OPERATOR(pg_catalog.+) $2; END$$;
CREATE OPERATOR privsql_evil.+ (LEFTARG = int8, RIGHTARG = int4, FUNCTION = privsql_evil.op_plus_int84);
CREATE FUNCTION privsql_evil.op_cat_bytea(bytea, bytea) RETURNS bytea LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('|| (bytea, bytea)'); RETURN $1 OPERATOR(pg_catalog.||) $2; END$$;
CREATE OPERATOR privsql_evil.|| (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = privsql_evil.op_cat_bytea);
CREATE FUNCTION privsql_evil.op_cat_text(text, text) RETURNS text LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('|| (text, text)'); RETURN $1 OPERATOR(pg_catalog.||) $2; END$$;
CREATE OPERATOR privsql_evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = privsql_evil.op_cat_text);

-- Functions.
CREATE FUNCTION privsql_evil.encode(bytea, text) RETURNS text LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('encode'); RETURN pg_catalog.encode($1, $2); END$$;
CREATE FUNCTION privsql_evil.sha256(bytea) RETURNS bytea LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('sha256'); RETURN pg_catalog.sha256($1); END$$;
CREATE FUNCTION privsql_evil.convert_to(text, name) RETURNS bytea LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('convert_to'); RETURN pg_catalog.convert_to($1, $2); END$$;

-- Aggregates: the final function runs even over no rows.
CREATE FUNCTION privsql_evil.count_step(int8) RETURNS int8 LANGUAGE sql AS
	$$SELECT $1 OPERATOR(pg_catalog.+) 1$$;
CREATE FUNCTION privsql_evil.agg_final(int8) RETURNS int8 LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('aggregate (int8)'); RETURN $1; END$$;
CREATE AGGREGATE privsql_evil.count(*) (SFUNC = privsql_evil.count_step, STYPE = int8,
	INITCOND = '0', FINALFUNC = privsql_evil.agg_final);
CREATE FUNCTION privsql_evil.max_step(int8, int8) RETURNS int8 LANGUAGE sql AS
	$$SELECT pg_catalog.int8larger($1, $2)$$;
CREATE AGGREGATE privsql_evil.max(int8) (SFUNC = privsql_evil.max_step, STYPE = int8,
	FINALFUNC = privsql_evil.agg_final);
CREATE FUNCTION privsql_evil.min_step(int8, int8) RETURNS int8 LANGUAGE sql AS
	$$SELECT pg_catalog.int8smaller($1, $2)$$;
CREATE AGGREGATE privsql_evil.min(int8) (SFUNC = privsql_evil.min_step, STYPE = int8,
	FINALFUNC = privsql_evil.agg_final);
CREATE FUNCTION privsql_evil.max4_step(int4, int4) RETURNS int4 LANGUAGE sql AS
	$$SELECT pg_catalog.int4larger($1, $2)$$;
CREATE FUNCTION privsql_evil.agg4_final(int4) RETURNS int4 LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('aggregate (int4)'); RETURN $1; END$$;
CREATE AGGREGATE privsql_evil.max(int4) (SFUNC = privsql_evil.max4_step, STYPE = int4,
	FINALFUNC = privsql_evil.agg4_final);
CREATE FUNCTION privsql_evil.sagg_step(bytea, bytea, bytea) RETURNS bytea LANGUAGE sql AS
	$$SELECT CASE WHEN $1 IS NULL THEN $2 ELSE $1 OPERATOR(pg_catalog.||) $3 OPERATOR(pg_catalog.||) $2 END$$;
CREATE FUNCTION privsql_evil.sagg_final(bytea) RETURNS bytea LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('string_agg'); RETURN $1; END$$;
CREATE AGGREGATE privsql_evil.string_agg(bytea, bytea) (SFUNC = privsql_evil.sagg_step,
	STYPE = bytea, FINALFUNC = privsql_evil.sagg_final);

-- Types named in SQL text.
CREATE DOMAIN privsql_evil.text AS pg_catalog.text CHECK (privsql_evil.pwn('privsql_evil.text'));
CREATE DOMAIN privsql_evil.bytea AS pg_catalog.bytea CHECK (privsql_evil.pwn('privsql_evil.bytea'));
CREATE DOMAIN privsql_evil.int8 AS pg_catalog.int8 CHECK (privsql_evil.pwn('privsql_evil.int8'));
CREATE DOMAIN privsql_evil.int4 AS pg_catalog.int4 CHECK (privsql_evil.pwn('privsql_evil.int4'));

-- The same types in pg_temp, planted for a step and dropped after it
-- (they would capture this script's own type names otherwise).
CREATE FUNCTION plant_temp_domains() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
	CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (privsql_evil.pwn('pg_temp.text'));
	CREATE DOMAIN pg_temp.bytea AS pg_catalog.bytea CHECK (privsql_evil.pwn('pg_temp.bytea'));
	CREATE DOMAIN pg_temp.int8 AS pg_catalog.int8 CHECK (privsql_evil.pwn('pg_temp.int8'));
	CREATE DOMAIN pg_temp.int4 AS pg_catalog.int4 CHECK (privsql_evil.pwn('pg_temp.int4'));
END
$$;
CREATE FUNCTION drop_temp_domains() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
	DROP DOMAIN pg_temp.text, pg_temp.bytea, pg_temp.int8, pg_temp.int4;
END
$$;
RESET ROLE;
GRANT EXECUTE ON FUNCTION plant_temp_domains(), drop_temp_domains() TO PUBLIC;

-- The planted objects work (as the attacker itself, which gains nothing).
SET ROLE regress_priv_owner;
SET search_path = privsql_evil, pg_catalog, public;
SELECT 1::oid = 1::oid AS planted_eq;
RESET search_path;
RESET ROLE;
SELECT * FROM privsql_gained();
SELECT obj, ran_as FROM privsql_hits;
SELECT privsql_reset();

---------------------------------------------------------------------------
-- 1. vecphi.scrub(), planted objects in the attacker's schema.
---------------------------------------------------------------------------
SET ROLE regress_priv_owner;
BEGIN;
SELECT privsql_fill(30);
SELECT privsql_delete() AS deleted;
COMMIT;
SET search_path = privsql_evil, pg_catalog, public;
SELECT pages_scrubbed > 0 AS scrubbed, complete FROM vecphi.scrub('privsql_notes');
RESET search_path;
RESET ROLE;
SELECT * FROM privsql_gained();
SELECT privsql_last_erasure();
SELECT pg_catalog.count(*) AS pending FROM vecphi.pending_erasure;
SELECT privsql_reset();

---------------------------------------------------------------------------
-- 2. vecphi.scrub(), planted types in pg_temp.
---------------------------------------------------------------------------
SET ROLE regress_priv_owner;
BEGIN;
SELECT privsql_fill(30);
SELECT privsql_delete() AS deleted;
COMMIT;
SELECT plant_temp_domains();
SET search_path = public;
SELECT pages_scrubbed > 0 AS scrubbed, complete FROM vecphi.scrub('privsql_notes');
SELECT drop_temp_domains();
RESET search_path;
RESET ROLE;
SELECT * FROM privsql_gained();
SELECT privsql_last_erasure();
SELECT privsql_reset();

---------------------------------------------------------------------------
-- 3. VACUUM, planted objects in the attacker's schema and in pg_temp.
---------------------------------------------------------------------------
SET ROLE regress_priv_owner;
BEGIN;
SELECT privsql_fill(30);
SELECT privsql_delete() AS deleted;
COMMIT;
SET search_path = privsql_evil, pg_catalog, public;
VACUUM privsql_notes;
RESET search_path;
RESET ROLE;
SELECT * FROM privsql_gained();
SELECT privsql_last_erasure();
SELECT privsql_reset();

SET ROLE regress_priv_owner;
BEGIN;
SELECT privsql_fill(30);
SELECT privsql_delete() AS deleted;
COMMIT;
SELECT plant_temp_domains();
SET search_path = public;
VACUUM privsql_notes;
SELECT drop_temp_domains();
RESET search_path;
RESET ROLE;
SELECT * FROM privsql_gained();
SELECT privsql_last_erasure();
SELECT privsql_reset();

---------------------------------------------------------------------------
-- 4. The erasure trigger (vecphi.note_erasure, SECURITY DEFINER) and the
--    row-level policies (vecphi.allowed_categories, SECURITY DEFINER),
--    planted objects in the attacker's schema and in pg_temp.
---------------------------------------------------------------------------
SET ROLE regress_priv_owner;
BEGIN;
SELECT privsql_fill(6);
COMMIT;
SELECT plant_temp_domains();
BEGIN;
SELECT as_tenant('priv_a');
SET LOCAL search_path = privsql_evil, pg_catalog, public;
SELECT pg_catalog.count(*) AS visible FROM privsql_notes;
DELETE FROM privsql_notes WHERE id OPERATOR(pg_catalog.<) 4;
COMMIT;
SELECT drop_temp_domains();
RESET ROLE;
SELECT * FROM privsql_gained();
SELECT pg_catalog.count(*) AS pending FROM vecphi.pending_erasure;
SELECT privsql_reset();

-- The owner makes the subject column a type of its own, with a cast to
-- text that runs its code: the trigger, running as the extension's owner,
-- must not use it.
SET ROLE regress_priv_owner;
CREATE TYPE privsql_evil.subject AS (v pg_catalog.text);
CREATE FUNCTION privsql_evil.subject_text(privsql_evil.subject) RETURNS pg_catalog.text
LANGUAGE plpgsql AS
	$$BEGIN PERFORM privsql_evil.pwn('CAST (subject AS text)'); RETURN ($1).v; END$$;
CREATE CAST (privsql_evil.subject AS pg_catalog.text)
	WITH FUNCTION privsql_evil.subject_text(privsql_evil.subject);
ALTER TABLE privsql_notes ALTER COLUMN patient TYPE privsql_evil.subject
	USING ROW(patient)::privsql_evil.subject;
BEGIN;
SELECT expect_error('SELECT privsql_delete()') AS delete_refused;
COMMIT;
ALTER TABLE privsql_notes ALTER COLUMN patient TYPE pg_catalog.text USING (patient).v;
RESET ROLE;
SELECT * FROM privsql_gained();
SELECT privsql_reset();
-- Nor can a column of such a type be tracked.
CREATE TABLE privsql_typed (id int, who privsql_evil.subject);
SELECT expect_error($$SELECT vecphi.track_erasure('privsql_typed', 'who')$$);
DROP TABLE privsql_typed;
-- A built-in type other than text is fine.
SET ROLE regress_priv_owner;
ALTER TABLE privsql_notes ALTER COLUMN patient TYPE pg_catalog.varchar;
BEGIN;
SELECT privsql_delete() AS deleted;
COMMIT;
SELECT pages_scrubbed > 0 AS scrubbed, complete FROM vecphi.scrub('privsql_notes');
ALTER TABLE privsql_notes ALTER COLUMN patient TYPE pg_catalog.text;
RESET ROLE;
SELECT privsql_last_erasure();
SELECT * FROM privsql_gained();
SELECT privsql_reset();

---------------------------------------------------------------------------
-- 5. Key administration (SECURITY DEFINER), as a key administrator with
--    the planted objects on its search_path and in pg_temp.
---------------------------------------------------------------------------
SET ROLE regress_priv_keyadmin;
SELECT plant_temp_domains();
SET search_path = privsql_evil, pg_catalog, public;
SELECT vecphi.create_tenant('priv_k') > 0 AS created;
SELECT vecphi.rotate_dek('priv_k') > 1 AS dek_rotated;
SELECT vecphi.rotate_kek('priv_k') AS kek;
SELECT vecphi.shred_tenant('priv_k') AS deks_dropped;
RESET search_path;
SELECT drop_temp_domains();
-- An error inside a privileged section leaves the caller's user and
-- search_path in force.
SET search_path = public, privsql_evil;
SELECT expect_error($$SELECT vecphi.rotate_dek('priv_nobody')$$);
SELECT current_user, current_setting('search_path') AS search_path;
RESET search_path;
RESET ROLE;
SELECT * FROM privsql_gained();
SELECT privsql_reset();

---------------------------------------------------------------------------
-- 6. The audit functions, as the security officer with the planted
--    objects on its search_path and in pg_temp: nothing runs, the answers
--    are vecphi's.
---------------------------------------------------------------------------
SELECT vecphi.audit_flush() >= 0 AS flushed;
SET ROLE regress_priv_officer;
SELECT plant_temp_domains();
SET search_path = privsql_evil, pg_catalog, public;
SELECT ok, problem FROM vecphi.verify_audit();
SELECT row_hash ~ '^[0-9a-f]{64}$' AS head_hash FROM vecphi.audit_head();
SELECT vecphi.purge_audit() AS purged;
SELECT vecphi.erasure_digest(ARRAY['patient_1']) ~ '^sha256:[0-9a-f]{64}$' AS digest;
RESET search_path;
SELECT drop_temp_domains();
RESET ROLE;
SELECT * FROM privsql_gained();
SELECT privsql_reset();

-- Clean up.
DROP TABLE privsql_notes;
SET client_min_messages = warning;
DROP SCHEMA privsql_evil CASCADE;
RESET client_min_messages;
DROP FUNCTION privsql_gained(), privsql_reset(), privsql_fill(int),
	privsql_delete(), privsql_last_erasure();
DROP TABLE privsql_hits;
DELETE FROM vecphi.role_categories WHERE app_role = 'clinician' AND category = 'general';
REVOKE CREATE ON SCHEMA public FROM regress_priv_owner;
DROP FUNCTION plant_temp_domains(), drop_temp_domains();
DROP ROLE regress_priv_owner, regress_priv_keyadmin, regress_priv_officer;
