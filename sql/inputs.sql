-- inputs: no error raised on the way into or out of evector and etext may
-- carry plaintext (issue #12).
--
-- 1. Decrypted text that is not valid in the database encoding (sealed in
--    a LATIN1 or SQL_ASCII database and restored here, simulated by a
--    binary-coercible cast from bytea) is refused without its bytes.
-- 2. COPY's error context ("column body: <value>") is the plaintext of a
--    failing etext or evector input: it is cut from the error.

\pset null '<null>'

CREATE TABLE in_samples (id int PRIMARY KEY, body etext);
CREATE CAST (bytea AS text) WITHOUT FUNCTION;
BEGIN;
SELECT as_tenant('hosp_a');
-- "café olé" in LATIN1: 0xe9 starts a three-byte UTF-8 sequence, so the
-- core's message would show "0xe9 0x20 0x6f" (é, space, o).
INSERT INTO in_samples VALUES
	(1, vecphi.encrypt('\x636166e9206f6ce9'::bytea::text)),
	(2, vecphi.encrypt('\x7365637265740061'::bytea::text));
COMMIT;
DROP CAST (bytea AS text);

BEGIN;
SELECT as_tenant('hosp_a');
SELECT expect_error_detail($$SELECT vecphi.decrypt(body) FROM in_samples WHERE id = 1$$) AS latin1_plaintext;
SELECT expect_error_detail($$SELECT vecphi.decrypt(body) FROM in_samples WHERE id = 2$$) AS nul_in_plaintext;
-- Neither message nor detail has any of the plaintext's bytes, in any form.
CREATE TEMP TABLE in_errors AS
SELECT expect_error_detail(format('SELECT vecphi.decrypt(body) FROM in_samples WHERE id = %s', id)) AS e
FROM in_samples;
SELECT count(*) FILTER (WHERE e ~* '0x|caf|ol|secret|\\x') AS leaking, count(*) AS errors
FROM in_errors;
COMMIT;

-- COPY of plaintext without claims fails in etext_in and evector_in; the
-- error context names table, line and column but not the value.
CREATE TABLE in_copy (id int, body etext, v evector);
CREATE FUNCTION copy_error(data text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	msg text;
	ctx text;
BEGIN
	EXECUTE format('COPY in_copy FROM PROGRAM %L', 'printf ''' || data || '''');
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, ctx = PG_EXCEPTION_CONTEXT;
	-- Only the COPY line of the context: PL/pgSQL's lines depend on nothing
	-- of interest here.
	RETURN SQLSTATE || ': ' || msg || ' | ' ||
		coalesce((SELECT string_agg(l, ' / ') FROM regexp_split_to_table(ctx, E'\n') l
				  WHERE l LIKE 'COPY %'), '<no COPY context>');
END
$$;
SELECT copy_error('1\tPatient reports chest pain\t\\N\n') AS etext_no_claims;
SELECT copy_error('1\t\\N\t[0.25,0.5,0.75]\n') AS evector_no_claims;
BEGIN;
SELECT as_tenant('hosp_a');
SELECT copy_error('1\t\\N\t[0.25,0.5,oops]\n') AS evector_syntax;
SELECT copy_error('1\t\\N\t[0.25,NaN,0.75]\n') AS evector_nan;
-- Text that starts with "vecphi:" is read as an envelope; when it is not
-- one it may well be plaintext, so its value is cut too.
SELECT copy_error('1\tvecphi: call Mr Quokka back\t\\N\n') AS envelope_like_plaintext;
SELECT copy_error('1\t\\N\tvecphi:AAAA\n') AS damaged_envelope;
-- A good row still loads.
SELECT copy_error('7\tfine text\t[1,2,3]\n') AS good_row;
SELECT id, vecphi.decrypt(body) AS body, vecphi.decrypt(v) AS v FROM in_copy;
COMMIT;

DROP FUNCTION copy_error(text);
DROP TABLE in_copy;
DROP TABLE in_samples;
