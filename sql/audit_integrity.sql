-- audit_integrity: only vecphi marks a denial.
--
-- Any session can raise an error of SQLSTATE 42501 or 28000 itself
-- (RAISE ... USING ERRCODE in PL/pgSQL or a DO block).  Such an error must
-- never become a `denial` record, which only vecphi's own refusals write.
-- Errors of those classes that vecphi did not raise (PostgreSQL's own
-- "permission denied", a RAISE) are recorded under the distinct action
-- `permission_error`, with where the server raised them (function and
-- source file, from the error itself, never from its text) in detail.
-- vecphi's real denials are still recorded as `denial`, once.
--
-- The suite looks only at records its own backend wrote since a mark.
-- Dropped records (a full queue), the head file anchor and the key's
-- location are tested in test/t/070_audit_queue_burst.pl,
-- 071_audit_anchor.pl and 072_audit_key_location.pl.

\pset null '<null>'

SELECT vecphi.audit_flush() >= 0 AS flushed;
CREATE TABLE integ_mark (seq bigint NOT NULL);
INSERT INTO integ_mark SELECT coalesce(max(seq), 0) FROM vecphi.audit_log;

-- This backend's records since the mark (and move the mark).
CREATE FUNCTION integ_new() RETURNS TABLE (action text, outcome text, detail text)
LANGUAGE plpgsql AS $$
DECLARE
	mark bigint;
BEGIN
	SELECT m.seq INTO mark FROM integ_mark m;
	UPDATE integ_mark SET seq = (SELECT coalesce(max(l.seq), 0) FROM vecphi.audit_log l);
	RETURN QUERY SELECT l.action, l.outcome, l.detail FROM vecphi.audit_log l
		WHERE l.seq > mark AND l.backend_pid = pg_backend_pid() ORDER BY l.seq;
END$$;

CREATE ROLE regress_integ_user NOLOGIN;
GRANT USAGE ON SCHEMA public TO regress_integ_user;

---------------------------------------------------------------------------
-- Forgeries: errors of class 42501 / 28000 raised by the session's own code,
-- with messages that imitate vecphi's.
---------------------------------------------------------------------------
SET ROLE regress_integ_user;
DO $$BEGIN
	RAISE EXCEPTION 'permission denied to decrypt evector value' USING ERRCODE = '42501';
END$$;
DO $$BEGIN
	RAISE EXCEPTION 'invalid claims token' USING ERRCODE = '28000', DETAIL = 'The token has expired.';
END$$;
DO $$BEGIN
	RAISE insufficient_privilege USING MESSAGE = 'no verified claims in this transaction';
END$$;
CREATE FUNCTION pg_temp.forge(msg text, state text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION USING MESSAGE = msg, ERRCODE = state;
END$$;
-- (No CONTEXT lines: they name the session's temporary schema, pg_temp_N.)
\set SHOW_CONTEXT never
SELECT pg_temp.forge('similarity scan exceeds vecphi.max_scan_rows (1)', '42501');
SELECT pg_temp.forge('invalid claims token: The signature does not verify.', '28000');
\set SHOW_CONTEXT errors
-- Re-raised from an exception handler: the origin is still the RAISE.
DO $$BEGIN
	BEGIN
		RAISE EXCEPTION 'vecphi.audit_log is append-only: DELETE is not allowed' USING ERRCODE = '42501';
	EXCEPTION WHEN insufficient_privilege THEN
		RAISE;
	END;
END$$;
RESET ROLE;
SELECT vecphi.audit_flush() >= 0 AS flushed;
-- Not one denial; each is a permission_error raised in pl_exec.c.
SELECT count(*) FILTER (WHERE action = 'denial') AS denials,
	count(*) FILTER (WHERE action = 'permission_error') AS permission_errors,
	count(*) FILTER (WHERE action = 'permission_error'
		AND detail LIKE '% [raised in exec_stmt_raise, pl_exec.c]') AS raised_in_plpgsql,
	count(*) FILTER (WHERE outcome = 'denied') AS outcome_denied
FROM integ_new();

---------------------------------------------------------------------------
-- vecphi's own refusals are still denials, each recorded once; an error
-- PostgreSQL raises itself is a permission_error naming where it came from.
---------------------------------------------------------------------------
SET ROLE regress_integ_user;
SELECT vecphi.set_claims('not.a.token');
SELECT count(*) FROM vecphi.audit_log;
-- Caught by an exception handler: vecphi's denial is recorded all the same,
-- and a RAISE of the same text after it is not taken for it (nor hidden).
DO $$BEGIN
	BEGIN
		PERFORM vecphi.set_claims('still.not.a-token');
	EXCEPTION WHEN invalid_authorization_specification THEN
		NULL;
	END;
	RAISE EXCEPTION 'invalid claims token' USING ERRCODE = '28000';
END$$;
RESET ROLE;
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT action, outcome, detail FROM integ_new();
