-- tokens: what a claims token must carry beyond a good signature
-- (issue #11, section 6).  Duplicate member names, a required expiry, a
-- longest lifetime, audience and issuer checks, and distinct messages for
-- an expired token and a bad signature.  The token policy settings are
-- superuser-only.

\pset null '<null>'

-- A token whose header and payload are given as raw JSON text (jsonb would
-- drop a duplicate member), signed with the regression secret.
CREATE FUNCTION raw_token(header text, payload text) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT s || '.' || b64url(hmac(convert_to(s, 'UTF8'),
		convert_to('vecphi-regression-secret-0123456789abcdef', 'UTF8'), 'sha256'))
	FROM (SELECT b64url(convert_to(header, 'UTF8')) || '.' ||
		b64url(convert_to(payload, 'UTF8')) AS s) AS t
$$;

-- Unix time now, and the claims every test token starts from, without exp.
CREATE FUNCTION now_s() RETURNS bigint LANGUAGE sql STABLE AS $$
	SELECT extract(epoch FROM now())::bigint
$$;
CREATE FUNCTION base_claims() RETURNS jsonb LANGUAGE sql STABLE AS $$
	SELECT '{"tenant": "hosp_a", "role": "clinician", "sub": "dr_tok"}'::jsonb
$$;

-- Offer a token; report the tenant it set, or the error.
CREATE FUNCTION try_token(tok text) RETURNS text
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

-- ---------------------------------------------------------------------------
-- Duplicate member names: parsers disagree on which one wins (jsonb keeps
-- the last, many libraries the first), so the issuer may have vouched for
-- one value and we would act on another.  Refused at every level.
-- ---------------------------------------------------------------------------
BEGIN;
SELECT what, try_token(tok) AS result
FROM (VALUES
	('01 tenant twice', raw_token('{"alg":"HS256","typ":"JWT"}',
		format('{"tenant":"hosp_b","role":"clinician","sub":"x","exp":%s,"tenant":"hosp_a"}', now_s() + 600))),
	('02 tenant twice, escaped', raw_token('{"alg":"HS256","typ":"JWT"}',
		format('{"tenant":"hosp_b","role":"clinician","sub":"x","exp":%s,"\u0074enant":"hosp_a"}', now_s() + 600))),
	('03 exp twice', raw_token('{"alg":"HS256","typ":"JWT"}',
		format('{"exp":1,"tenant":"hosp_a","role":"clinician","sub":"x","exp":%s}', now_s() + 600))),
	('04 role twice', raw_token('{"alg":"HS256","typ":"JWT"}',
		format('{"tenant":"hosp_a","role":"billing","sub":"x","exp":%s,"role":"clinician"}', now_s() + 600))),
	('05 alg twice in header', raw_token('{"alg":"none","typ":"JWT","alg":"HS256"}',
		format('{"tenant":"hosp_a","role":"clinician","sub":"x","exp":%s}', now_s() + 600))),
	('06 typ twice in header', raw_token('{"alg":"HS256","typ":"JWT","typ":"JWT"}',
		format('{"tenant":"hosp_a","role":"clinician","sub":"x","exp":%s}', now_s() + 600))),
	('07 twice in a nested object', raw_token('{"alg":"HS256","typ":"JWT"}',
		format('{"tenant":"hosp_a","role":"clinician","sub":"x","exp":%s,"ctx":{"a":1,"a":2}}', now_s() + 600))),
	('08 same name in two objects', raw_token('{"alg":"HS256","typ":"JWT"}',
		format('{"tenant":"hosp_a","role":"clinician","sub":"x","exp":%s,"ctx":{"tenant":"hosp_b"}}', now_s() + 600))),
	('09 no duplicate', raw_token('{"alg":"HS256","typ":"JWT"}',
		format('{"tenant":"hosp_a","role":"clinician","sub":"x","exp":%s}', now_s() + 600)))
	) AS t(what, tok)
ORDER BY what;
COMMIT;

-- ---------------------------------------------------------------------------
-- exp is required unless vecphi.jwt_require_exp is off (superuser-only).
-- ---------------------------------------------------------------------------
SHOW vecphi.jwt_require_exp;
BEGIN;
SELECT try_token(test_token(base_claims())) AS no_exp;
SELECT try_token(test_token(base_claims() || jsonb_build_object('exp', now_s() + 600))) AS with_exp;
SET LOCAL vecphi.jwt_require_exp = off;
SELECT try_token(test_token(base_claims())) AS no_exp_allowed;
-- Still bounded through iat when there is one.
SELECT try_token(test_token(base_claims() || jsonb_build_object('iat', now_s() - 2 * 86400))) AS no_exp_old_iat;
COMMIT;

-- ---------------------------------------------------------------------------
-- Lifetime: exp - now, and exp - iat when iat is given, at most
-- vecphi.jwt_max_lifetime (default one day; 0 = no limit).
-- ---------------------------------------------------------------------------
SHOW vecphi.jwt_max_lifetime;
BEGIN;
SELECT what, try_token(tok) AS result
FROM (VALUES
	('01 exp in 2 days', test_token(base_claims() || jsonb_build_object('exp', now_s() + 2 * 86400))),
	('02 exp in 10 years', test_token(base_claims() || jsonb_build_object('exp', now_s() + 3650 * 86400))),
	('03 exp in 23 h', test_token(base_claims() || jsonb_build_object('exp', now_s() + 23 * 3600))),
	('04 iat 2 days ago, exp in 1 h', test_token(base_claims() || jsonb_build_object('iat', now_s() - 2 * 86400, 'exp', now_s() + 3600))),
	('05 iat now, exp in 1 h', test_token(base_claims() || jsonb_build_object('iat', now_s(), 'exp', now_s() + 3600))),
	('06 iat in 1 h', test_token(base_claims() || jsonb_build_object('iat', now_s() + 3600, 'exp', now_s() + 7200))),
	('07 iat not a number', test_token(base_claims() || jsonb_build_object('iat', 'yesterday', 'exp', now_s() + 600)))
	) AS t(what, tok)
ORDER BY what;
SET LOCAL vecphi.jwt_max_lifetime = '1h';
SELECT try_token(test_token(base_claims() || jsonb_build_object('exp', now_s() + 7200))) AS exp_in_2h_max_1h;
SELECT try_token(test_token(base_claims() || jsonb_build_object('exp', now_s() + 1800))) AS exp_in_30min_max_1h;
SET LOCAL vecphi.jwt_max_lifetime = 0;
SELECT try_token(test_token(base_claims() || jsonb_build_object('exp', now_s() + 3650 * 86400))) AS exp_in_10y_no_limit;
COMMIT;

-- ---------------------------------------------------------------------------
-- Audience and issuer.  Without vecphi.jwt_audience a token that names an
-- audience is refused (RFC 7519, 4.1.3: the server is not in it).
-- ---------------------------------------------------------------------------
SHOW vecphi.jwt_audience;
SHOW vecphi.jwt_issuer;
CREATE FUNCTION tok_with(extra jsonb) RETURNS text LANGUAGE sql STABLE AS $$
	SELECT test_token(base_claims() || jsonb_build_object('exp', now_s() + 600) || extra)
$$;
BEGIN;
SELECT try_token(tok_with('{"aud": "vecphi-db"}')) AS aud_but_none_configured;
SELECT try_token(tok_with('{"iss": "https://idp.example"}')) AS iss_not_checked;
SET LOCAL vecphi.jwt_audience = 'vecphi-db';
SET LOCAL vecphi.jwt_issuer = 'https://idp.example';
SELECT what, try_token(tok) AS result
FROM (VALUES
	('01 aud and iss match', tok_with('{"aud": "vecphi-db", "iss": "https://idp.example"}')),
	('02 aud array holds it', tok_with('{"aud": ["other", "vecphi-db"], "iss": "https://idp.example"}')),
	('03 aud other', tok_with('{"aud": "other-db", "iss": "https://idp.example"}')),
	('04 aud array without it', tok_with('{"aud": ["other", "vecphi-db2"], "iss": "https://idp.example"}')),
	('05 aud missing', tok_with('{"iss": "https://idp.example"}')),
	('06 aud a number', tok_with('{"aud": 5, "iss": "https://idp.example"}')),
	('07 aud array of numbers', tok_with('{"aud": [5, "vecphi-db"], "iss": "https://idp.example"}')),
	('08 aud empty array', tok_with('{"aud": [], "iss": "https://idp.example"}')),
	('09 aud differs in case', tok_with('{"aud": "VECPHI-DB", "iss": "https://idp.example"}')),
	('10 iss other', tok_with('{"aud": "vecphi-db", "iss": "https://evil.example"}')),
	('11 iss missing', tok_with('{"aud": "vecphi-db"}')),
	('12 iss a prefix', tok_with('{"aud": "vecphi-db", "iss": "https://idp.example/x"}')),
	('13 iss an array', tok_with('{"aud": "vecphi-db", "iss": ["https://idp.example"]}'))
	) AS t(what, tok)
ORDER BY what;
COMMIT;

-- ---------------------------------------------------------------------------
-- An expired token and a bad signature: the same SQLSTATE, different
-- messages.  A bad signature is reported as such even when the token is
-- also expired (the signature is checked first).
-- ---------------------------------------------------------------------------
BEGIN;
SELECT try_token(test_token(base_claims() || jsonb_build_object('exp', now_s() - 3600))) AS expired;
SELECT try_token(test_token(base_claims() || jsonb_build_object('exp', now_s() + 600),
	'another-secret-that-is-long-enough-0123')) AS bad_signature;
SELECT try_token(test_token(base_claims() || jsonb_build_object('exp', now_s() - 3600),
	'another-secret-that-is-long-enough-0123')) AS expired_and_bad_signature;
COMMIT;

-- ---------------------------------------------------------------------------
-- The policy settings are superuser-only: an application role cannot
-- loosen them for its own session.
-- ---------------------------------------------------------------------------
CREATE ROLE tokens_app;
SET ROLE tokens_app;
SELECT expect_error($$SET vecphi.jwt_require_exp = off$$) AS set_require_exp;
SELECT expect_error($$SET vecphi.jwt_max_lifetime = 0$$) AS set_max_lifetime;
SELECT expect_error($$SET vecphi.jwt_audience = 'x'$$) AS set_audience;
SELECT expect_error($$SET vecphi.jwt_issuer = 'x'$$) AS set_issuer;
SELECT expect_error($$SELECT set_config('vecphi.jwt_require_exp', 'off', true)$$) AS set_config_require_exp;
RESET ROLE;
DROP ROLE tokens_app;

-- ---------------------------------------------------------------------------
-- Tenant names reach key file names and key provider commands (%t): none
-- may start with "-" (an option to the command) or hold a character a
-- shell interprets.  A leading "_" is allowed.
-- ---------------------------------------------------------------------------
SELECT name, expect_error_detail(format('SELECT vecphi.create_tenant(%L)', name)) AS result
FROM (VALUES ('-rf'), ('--help'), ('-'), ('a;b'), ('$(id)'), ('`id`'), ('a|b'), ('a b'),
	('a''b'), ('a"b'), ('a\b'), ('*'), ('~root'), ('a&b')) AS t(name)
ORDER BY name;
SELECT vecphi.create_tenant('_tok_lead') > 0 AS leading_underscore_ok;
SELECT vecphi.create_tenant('tok-mid-hyphen') > 0 AS inner_hyphen_ok;
-- The table refuses such a name too, whoever writes it.
SELECT expect_error($$INSERT INTO vecphi.tenants (tenant_id, tenant) VALUES (9999, '-rf')$$) AS direct_insert;
-- And a token naming such a tenant is refused.
BEGIN;
SELECT try_token(tok_with('{"tenant": "-rf"}')) AS token_for_dash_tenant;
COMMIT;

-- ---------------------------------------------------------------------------
-- What the log hook redacts: anything shaped like a token, not names that
-- merely start like one.  It rewrites each message that goes to the server
-- log, and so also what the client gets of it (WARNING here: a NOTICE is
-- not logged by default and is left alone).
-- ---------------------------------------------------------------------------
DO $$
BEGIN
	RAISE WARNING 'token %', test_token(base_claims() || '{"exp": 1}');
	RAISE WARNING 'cut short: %', left(test_token(base_claims() || '{"exp": 1}'), 20);
	RAISE WARNING 'spaced: %.%.sig', b64url(convert_to('{ "alg": "HS256" }', 'UTF8')),
		b64url(convert_to('{ "tenant": "hosp_a" }', 'UTF8'));
	RAISE WARNING 'not tokens: eyeglass_prescriptions.public.x, eyJ, eyJshort, ewe.a.b';
	RAISE EXCEPTION 'failing with %', test_token(base_claims() || '{"exp": 1}')
		USING DETAIL = 'detail ' || test_token(base_claims() || '{"exp": 2}'),
			HINT = 'hint ' || test_token(base_claims() || '{"exp": 3}');
END
$$;
