-- claims: vecphi.set_claims() verifies an HS256 JWT and holds its claims
-- until the end of the transaction (or of the subtransaction that set
-- them).  Bad tokens are refused with 28000 and leave no claims.  No
-- setting can forge or change the claims.

\pset null '<null>'

-- No claims outside a transaction that set them.
SELECT vecphi.tenant(), vecphi.app_role(), vecphi.subject(), vecphi.purpose(),
	vecphi.break_glass();

---------------------------------------------------------------------------
-- A valid token sets every accessor, for this transaction only.
---------------------------------------------------------------------------
BEGIN;
SELECT vecphi.set_claims(test_token(jsonb_build_object(
	'tenant', 'hosp_a', 'role', 'clinician', 'sub', 'dr_who',
	'purpose', 'treatment', 'break_glass', 'cardiac arrest in bay 4',
	'exp', extract(epoch FROM now())::bigint + 600)));
SELECT vecphi.tenant(), vecphi.app_role(), vecphi.subject(), vecphi.purpose(),
	vecphi.break_glass();
COMMIT;
-- Gone after COMMIT.
SELECT vecphi.tenant(), vecphi.app_role(), vecphi.subject();

-- Gone after ROLLBACK.
BEGIN;
SELECT as_tenant('hosp_a');
ROLLBACK;
SELECT vecphi.tenant();

-- Optional claims: no purpose, no break_glass.  (exp is required unless
-- vecphi.jwt_require_exp is off; see the tokens suite.)
BEGIN;
SELECT vecphi.set_claims(test_token('{"tenant": "hosp_b", "role": "billing", "sub": "clerk_1"}'
	|| jsonb_build_object('exp', extract(epoch FROM now())::bigint + 600)));
SELECT vecphi.tenant(), vecphi.app_role(), vecphi.subject(), vecphi.purpose(),
	vecphi.break_glass();
COMMIT;
-- Every allowed purpose.
BEGIN;
SELECT p, expect_error(format('SELECT vecphi.set_claims(%L)', test_token(
	jsonb_build_object('tenant', 'hosp_a', 'role', 'r', 'sub', 's', 'purpose', p,
		'exp', extract(epoch FROM now())::bigint + 600)))) AS result
FROM unnest(ARRAY['treatment', 'payment', 'operations']) AS p;
COMMIT;

-- A new transaction (the next client of a transaction-mode pooler) starts
-- without claims; a second set_claims() replaces the first.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT as_tenant('hosp_b');
SELECT vecphi.tenant();
COMMIT;
BEGIN;
SELECT vecphi.tenant() AS next_transaction;
COMMIT;

-- vecphi.clear_claims() drops them before the end of the transaction.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT vecphi.clear_claims();
SELECT vecphi.tenant() AS after_clear;
SELECT expect_error($$SELECT '[1,2,3]'::evector$$) AS encrypt_after_clear;
COMMIT;

-- Outside a transaction block set_claims() warns: the claims end with the
-- statement.
SELECT vecphi.set_claims(token_for('hosp_a'));
SELECT vecphi.tenant() AS after_single_statement;

---------------------------------------------------------------------------
-- Subtransactions.
---------------------------------------------------------------------------
-- Set inside a savepoint that is rolled back: gone.
BEGIN;
SAVEPOINT s1;
SELECT as_tenant('hosp_a');
ROLLBACK TO s1;
SELECT vecphi.tenant() AS after_rollback_to;
COMMIT;
-- Set inside a savepoint that is released: kept until the end of the
-- transaction, even if a later savepoint rolls back.
BEGIN;
SAVEPOINT s1;
SELECT as_tenant('hosp_a');
RELEASE s1;
SAVEPOINT s2;
ROLLBACK TO s2;
SELECT vecphi.tenant() AS after_release;
COMMIT;
-- Set before a savepoint that rolls back without touching them: kept.
BEGIN;
SELECT as_tenant('hosp_a');
SAVEPOINT s1;
SELECT 1/0;
ROLLBACK TO s1;
SELECT vecphi.tenant() AS kept;
COMMIT;
-- Replaced inside a savepoint that then rolls back: no claims at all
-- (fail closed; the earlier claims are not restored).
BEGIN;
SELECT as_tenant('hosp_a');
SAVEPOINT s1;
SELECT as_tenant('hosp_b');
ROLLBACK TO s1;
SELECT vecphi.tenant() AS after_replaced_rollback;
COMMIT;
-- Set in a nested savepoint, released into one that rolls back: gone.
BEGIN;
SAVEPOINT s1;
SAVEPOINT s2;
SELECT as_tenant('hosp_a');
RELEASE s2;
SELECT vecphi.tenant() AS after_release_s2;
ROLLBACK TO s1;
SELECT vecphi.tenant() AS after_rollback_s1;
COMMIT;

---------------------------------------------------------------------------
-- Refused tokens: 28000, and no claims afterwards, even when valid claims
-- were set before in the same transaction.
---------------------------------------------------------------------------
-- Each attempt runs in one transaction: good claims for hosp_a first, then
-- the bad token (in a subtransaction, which catches the error), then a
-- look at what claims are left.
CREATE FUNCTION try_after_good_claims(tok text, OUT result text, OUT tenant_after text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM vecphi.set_claims(token_for('hosp_a'));
	result := expect_error_detail(format('SELECT vecphi.set_claims(%L)', tok));
	tenant_after := coalesce(vecphi.tenant(), '(none)');
END
$$;
BEGIN;
SELECT what, r.result, r.tenant_after
FROM (VALUES
	('01 wrong secret', test_token(test_claims('hosp_a'), 'another-secret-that-is-long-enough-0123')),
	('02 alg none, unsigned', test_token(test_claims('hosp_a'), alg => 'none')),
	('03 alg none, signed', test_token(test_claims('hosp_a'), alg => 'none') || split_part(token_for('hosp_a'), '.', 3)),
	('04 alg HS512', test_token(test_claims('hosp_a'), alg => 'HS512')),
	('05 alg hs256 (case)', test_token(test_claims('hosp_a'), alg => 'hs256')),
	('06 payload swapped', split_part(token_for('hosp_a'), '.', 1) || '.' ||
		split_part(token_for('hosp_b'), '.', 2) || '.' || split_part(token_for('hosp_a'), '.', 3)),
	('07 signature of other token', split_part(token_for('hosp_b'), '.', 1) || '.' ||
		split_part(token_for('hosp_b'), '.', 2) || '.' ||
		split_part(test_token(test_claims('hosp_b') || '{"x": 1}'), '.', 3)),
	('08 signature truncated', left(token_for('hosp_a'), -2)),
	('09 signature empty', left(token_for('hosp_a'), -43)),
	('10 expired 1 h ago', test_token(test_claims('hosp_a') || jsonb_build_object('exp', extract(epoch FROM now())::bigint - 3600))),
	('11 expired 2 min ago', test_token(test_claims('hosp_a') || jsonb_build_object('exp', extract(epoch FROM now())::bigint - 120))),
	('12 not valid for 1 h', test_token(test_claims('hosp_a') || jsonb_build_object('nbf', extract(epoch FROM now())::bigint + 3600))),
	('13 exp not a number', test_token(test_claims('hosp_a') || '{"exp": "tomorrow"}')),
	('14 exp negative', test_token(test_claims('hosp_a') || '{"exp": -5}')),
	('15 exp zero', test_token(test_claims('hosp_a') || '{"exp": 0}')),
	('16 no tenant', test_token(test_claims('hosp_a') - 'tenant')),
	('17 no role', test_token(test_claims('hosp_a') - 'role')),
	('18 no sub', test_token(test_claims('hosp_a') - 'sub')),
	('19 tenant a number', test_token(test_claims('hosp_a') || '{"tenant": 1}')),
	('20 tenant null', test_token(test_claims('hosp_a') || '{"tenant": null}')),
	('21 tenant array', test_token(test_claims('hosp_a') || '{"tenant": ["hosp_a"]}')),
	('22 tenant empty', test_token(test_claims('hosp_a') || '{"tenant": ""}')),
	('23 tenant with /', test_token(test_claims('hosp_a') || '{"tenant": "hosp_a/x"}')),
	('24 tenant ..', test_token(test_claims('hosp_a') || '{"tenant": ".."}')),
	('25 tenant ../hosp_a', test_token(test_claims('hosp_a') || '{"tenant": "../hosp_a"}')),
	('26 tenant 64 chars', test_token(test_claims('hosp_a') || jsonb_build_object('tenant', repeat('a', 64)))),
	('27 role empty', test_token(test_claims('hosp_a') || '{"role": ""}')),
	('28 sub too long', test_token(test_claims('hosp_a') || jsonb_build_object('sub', repeat('s', 257)))),
	('29 purpose marketing', test_token(test_claims('hosp_a') || '{"purpose": "marketing"}')),
	('30 purpose Treatment', test_token(test_claims('hosp_a') || '{"purpose": "Treatment"}')),
	('31 break_glass not a string', test_token(test_claims('hosp_a') || '{"break_glass": true}')),
	('32 payload an array', test_token('["hosp_a"]')),
	('33 empty string', ''),
	('34 one part', 'abc'),
	('35 two parts', 'a.b'),
	('36 four parts', token_for('hosp_a') || '.x'),
	('37 not base64url', '!!!.???.***'),
	('38 padded base64', replace(token_for('hosp_a'), '.', '=.')),
	('39 header not JSON', b64url('not json') || '.' || split_part(token_for('hosp_a'), '.', 2) || '.' || split_part(token_for('hosp_a'), '.', 3)),
	('40 longer than 8192', token_for('hosp_a') || repeat('A', 8200)),
	('41 leading space', ' ' || token_for('hosp_a')),
	('42 trailing newline', token_for('hosp_a') || E'\n')
	) AS t(what, tok),
	LATERAL try_after_good_claims(tok) AS r
ORDER BY what;
COMMIT;

-- Accepted edge cases: expired less than the 30 s clock-skew allowance
-- ago, nbf within the allowance, nbf in the past, the longest tenant name,
-- claims vecphi does not use.
BEGIN;
SELECT what, expect_error(format('SELECT vecphi.set_claims(%L)', tok)) AS result
FROM (VALUES
	('exp 10 s ago', test_token(test_claims('hosp_a') || jsonb_build_object('exp', extract(epoch FROM now())::bigint - 10))),
	('nbf in 10 s', test_token(test_claims('hosp_a') || jsonb_build_object('nbf', extract(epoch FROM now())::bigint + 10))),
	('nbf 1 h ago', test_token(test_claims('hosp_a') || jsonb_build_object('nbf', extract(epoch FROM now())::bigint - 3600))),
	('tenant of 63 chars', test_token(test_claims('hosp_a') || jsonb_build_object('tenant', repeat('a', 63)))),
	('extra claims', test_token(test_claims('hosp_a') || jsonb_build_object('iat', extract(epoch FROM now())::bigint, 'iss', 'idp', 'jti', 'x')))
	) AS t(what, tok)
ORDER BY what;
COMMIT;

-- Claims whose token expires during the transaction stop working at the
-- next statement.  The token expired 27 s ago, inside the 30 s allowance;
-- 5 s later it is past it.
BEGIN;
SELECT vecphi.set_claims(test_token(test_claims('hosp_a') ||
	jsonb_build_object('exp', extract(epoch FROM now())::bigint - 27)));
SELECT vecphi.tenant() AS before_expiry;
SELECT pg_sleep(5);
SELECT expect_error($$SELECT vecphi.tenant()$$) AS after_expiry;
SELECT vecphi.tenant() AS dropped;
COMMIT;

-- A refused token after good claims, called directly: the transaction
-- aborts, and a later transaction has no claims.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT vecphi.set_claims(test_token(test_claims('hosp_b'), 'wrong-secret-wrong-secret-wrong-secret'));
ROLLBACK;
SELECT vecphi.tenant();

-- A tenant with valid claims but no keys: the claims are set (they are
-- verified, not looked up), and encryption fails naming the tenant.
BEGIN;
SELECT as_tenant('ghost');
SELECT expect_error_detail($$SELECT '[1,2,3]'::evector$$) AS ghost_encrypt;
COMMIT;

---------------------------------------------------------------------------
-- Nothing a client can SET changes the claims or the settings behind them.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('hosp_a');
SELECT expect_error($$SET vecphi.tenant = 'hosp_b'$$) AS set_tenant;
SELECT expect_error($$SET LOCAL vecphi.tenant = 'hosp_b'$$) AS set_local_tenant;
SELECT expect_error($$SELECT set_config('vecphi.tenant', 'hosp_b', true)$$) AS set_config_tenant;
SELECT expect_error($$SELECT set_config('vecphi.claims', '{"tenant": "hosp_b"}', false)$$) AS set_config_claims;
SELECT expect_error($$SET vecphi.jwt_secret_file = '/dev/null'$$) AS set_secret_file;
SELECT expect_error($$SET vecphi.key_directory = '/tmp'$$) AS set_key_directory;
SELECT expect_error($$SET vecphi.kek_command = 'echo 00'$$) AS set_kek_command;
SELECT expect_error($$RESET ALL$$) AS reset_all;
SELECT vecphi.tenant(), vecphi.subject();
COMMIT;

-- SET ROLE does not change or drop the claims; a non-superuser cannot read
-- the key settings.
CREATE ROLE regress_vecphi_claims NOLOGIN;
GRANT USAGE ON SCHEMA public TO regress_vecphi_claims;
BEGIN;
SELECT as_tenant('hosp_a');
SET LOCAL ROLE regress_vecphi_claims;
SELECT current_user, vecphi.tenant(), vecphi.subject();
SELECT expect_error($$SELECT current_setting('vecphi.key_directory')$$) AS read_key_directory;
SELECT expect_error($$SELECT current_setting('vecphi.jwt_secret_file')$$) AS read_secret_file;
-- A plain role can verify its own token and use its claims.
SELECT vecphi.set_claims(token_for('hosp_b'));
SELECT vecphi.tenant(), vecphi.decrypt('[4,5,6]'::evector);
RESET ROLE;
SELECT current_user <> 'regress_vecphi_claims' AS role_reset, vecphi.tenant();
COMMIT;
DROP OWNED BY regress_vecphi_claims;
DROP ROLE regress_vecphi_claims;
-- A NULL token is a failed attempt like any other: refused with 28000,
-- and the claims set before it in the transaction are gone.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT expect_error($$SELECT vecphi.set_claims(NULL)$$) AS null_token;
SELECT vecphi.tenant() AS after_null_token;
COMMIT;
DROP FUNCTION try_after_good_claims(text);
