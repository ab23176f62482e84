-- claims_json: a token whose JSON holds a number PostgreSQL's numeric
-- type cannot hold (beyond 10^131071, or more than 16383 decimal places)
-- is refused as a bad token (28000, logged and audited as a rejection)
-- like any other.  Found while writing the fuzz_claims target: the token's
-- JSON went through jsonb_in, whose numeric input raised 22003 "value
-- overflows numeric format", for the header before the signature was
-- checked, so an unsigned token was neither refused as a token nor
-- recorded as a denial.  The claims are now read from PostgreSQL's JSON
-- parser directly (numbers with strtod), as fuzz_claims runs them.

-- A token from header and payload JSON text, signed with the regression
-- secret, or with a wrong signature when good is false.
CREATE FUNCTION cj_token(header text, payload text, good boolean DEFAULT true) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT s || '.' || b64url(hmac(convert_to(s, 'UTF8'),
		convert_to(CASE WHEN good THEN 'vecphi-regression-secret-0123456789abcdef'
			ELSE 'not-the-regression-secret-0123456789abcdef' END, 'UTF8'), 'sha256'))
	FROM (SELECT b64url(convert_to(header, 'UTF8')) || '.' ||
		b64url(convert_to(payload, 'UTF8')) AS s) AS t
$$;

CREATE FUNCTION cj_try(tok text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	r text;
BEGIN
	r := expect_error_detail(format('SELECT vecphi.set_claims(%L)', tok));
	IF r = 'no error' THEN
		r := 'accepted: ' || vecphi.tenant();
	END IF;
	RETURN r;
END
$$;

CREATE FUNCTION cj_payload(extra text) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT format('{"tenant":"hosp_a","role":"clinician","sub":"dr_cj","exp":%s%s}',
		extract(epoch FROM now())::bigint + 600, extra)
$$;

-- The refusal of an unsigned token with such a number is a denial in the
-- audit log, as for any bad token.
CREATE TEMP TABLE cj_mark AS SELECT coalesce(max(seq), 0) AS seq FROM vecphi.audit_log;
BEGIN;
SELECT cj_try(cj_token('{"alg":"HS256","typ":"JWT","x":1e200000}', cj_payload(''), false));
ROLLBACK;
SELECT vecphi.audit_flush() >= 0 AS flushed;
SELECT count(*) AS denials_recorded FROM vecphi.audit_log, cj_mark
WHERE audit_log.seq > cj_mark.seq AND action = 'denial'
	AND detail LIKE '%signature does not verify%';
DROP TABLE cj_mark;

BEGIN;
SELECT what, cj_try(tok) AS result
FROM (VALUES
	('01 unsigned, huge number in header',
		cj_token('{"alg":"HS256","typ":"JWT","x":1e200000}', cj_payload(''), false)),
	('02 unsigned, tiny number in header',
		cj_token('{"alg":"HS256","typ":"JWT","x":1e-20000}', cj_payload(''), false)),
	('03 unsigned, huge number in payload',
		cj_token('{"alg":"HS256","typ":"JWT"}', cj_payload(',"x":9e999999'), false)),
	('04 signed, huge exp',
		cj_token('{"alg":"HS256","typ":"JWT"}',
			'{"tenant":"hosp_a","role":"clinician","sub":"dr_cj","exp":1e200000}')),
	('05 signed, huge nbf',
		cj_token('{"alg":"HS256","typ":"JWT"}', cj_payload(',"nbf":1e200000'))),
	('06 signed, iat with 20000 decimal places',
		cj_token('{"alg":"HS256","typ":"JWT"}', cj_payload(',"iat":1e-20000'))),
	('07 signed, huge number in a member nobody reads',
		cj_token('{"alg":"HS256","typ":"JWT"}', cj_payload(',"x":[1e200000]'))),
	('08 signed, exp in exponent form',
		cj_token('{"alg":"HS256","typ":"JWT"}',
			format('{"tenant":"hosp_a","role":"clinician","sub":"dr_cj","exp":%se0}',
				extract(epoch FROM now())::bigint + 600)))
) AS t(what, tok)
ORDER BY what;
ROLLBACK;

DROP FUNCTION cj_token(text, text, boolean);
DROP FUNCTION cj_try(text);
DROP FUNCTION cj_payload(text);
