-- setup: install vecphi and the helpers every later regression test uses.
--
-- pg_regress runs all the tests of the Makefile's REGRESS list one after
-- another in one database, so what this file creates (the extension, the
-- helper functions and the tenants hosp_a and hosp_b) is there for them.
-- pgcrypto is installed by pg_regress (--load-extension=pgcrypto); it signs
-- the test tokens.

\pset null '<null>'

CREATE EXTENSION vecphi;
SELECT extname, extversion FROM pg_extension WHERE extname = 'vecphi';

-- Everything internal is in schema vecphi; the types, operators and
-- distance functions are in the extension's schema, here public.
SELECT t.typname, n.nspname
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typname IN ('evector', 'etext') ORDER BY 1;
SELECT c.relname, n.nspname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname IN ('tenants', 'keyring') ORDER BY 1;

-- Base64url (RFC 4648, section 5) without padding.  encode(..., 'base64')
-- breaks lines every 76 characters, so newlines go as well.
CREATE FUNCTION b64url(data bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
	SELECT rtrim(translate(encode(data, 'base64'), E'+/\n', '-_'), '=')
$$;

-- A compact JWT for payload.  alg 'HS256' (the default) and 'HS512' are
-- signed with HMAC-SHA-256 / -512 under secret; alg 'none' gets the empty
-- signature of an unsigned token.  The default secret is the one the
-- regression server trusts (test/run_tests.sh).
CREATE FUNCTION test_token(payload jsonb,
	secret text DEFAULT 'vecphi-regression-secret-0123456789abcdef',
	alg text DEFAULT 'HS256') RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
	signing_input text;
BEGIN
	signing_input := b64url(convert_to(jsonb_build_object('alg', alg, 'typ', 'JWT')::text, 'UTF8'))
		|| '.' || b64url(convert_to(payload::text, 'UTF8'));
	RETURN signing_input || '.' || CASE alg
		WHEN 'none' THEN ''
		WHEN 'HS512' THEN b64url(hmac(convert_to(signing_input, 'UTF8'), convert_to(secret, 'UTF8'), 'sha512'))
		ELSE b64url(hmac(convert_to(signing_input, 'UTF8'), convert_to(secret, 'UTF8'), 'sha256'))
	END;
END
$$;

-- Payload of an ordinary token: tenant, role, sub, purpose treatment and
-- an expiry one hour from now.
CREATE FUNCTION test_claims(tenant text, role text DEFAULT 'clinician')
RETURNS jsonb LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('tenant', tenant, 'role', role,
		'sub', 'dr_' || tenant, 'purpose', 'treatment',
		'exp', extract(epoch FROM now())::bigint + 3600)
$$;

-- A valid token for a tenant.
CREATE FUNCTION token_for(tenant text, role text DEFAULT 'clinician')
RETURNS text LANGUAGE sql STABLE AS $$
	SELECT test_token(test_claims(tenant, role))
$$;

-- Set claims for a tenant for the rest of the current transaction and
-- return the verified tenant claim (prints better than set_claims' void).
CREATE FUNCTION as_tenant(tenant text, role text DEFAULT 'clinician')
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM vecphi.set_claims(token_for(tenant, role));
	RETURN vecphi.tenant();
END
$$;

-- Run a statement and report its SQLSTATE and message, or 'no error'.  The
-- statement runs in a subtransaction, so an expected error does not abort
-- the surrounding transaction (and the claims set in it stay).
CREATE FUNCTION expect_error(sql text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	EXECUTE sql;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- The same, with the error's DETAIL appended when it has one.
CREATE FUNCTION expect_error_detail(sql text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	state text;
	msg text;
	detail text;
BEGIN
	EXECUTE sql;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL;
	RETURN state || ': ' || msg || coalesce(' | ' || nullif(detail, ''), '');
END
$$;

-- The raw envelope bytes of a value's text form "vecphi:<base64>".
CREATE FUNCTION envelope_bytes(envelope text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
	SELECT decode(substr(envelope, 8), 'base64')
$$;

-- Text form of raw envelope bytes.
CREATE FUNCTION envelope_text(raw bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
	SELECT 'vecphi:' || translate(encode(raw, 'base64'), E'\n', '')
$$;

-- The envelope text with byte n (0-based) XORed with mask.
CREATE FUNCTION flip_byte(envelope text, n int, mask int DEFAULT 1) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
	SELECT envelope_text(set_byte(envelope_bytes(envelope), n,
		get_byte(envelope_bytes(envelope), n) # mask))
$$;

-- The test tokens are well formed: three base64url parts, no padding.
SELECT token_for('hosp_a') ~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$' AS token_shape;

-- Two tenants.  create_tenant returns the new tenant's id.
SELECT vecphi.create_tenant('hosp_a') AS hosp_a_id;
SELECT vecphi.create_tenant('hosp_b') AS hosp_b_id;
SELECT tenant_id, tenant, kek_version, current_dek FROM vecphi.tenants ORDER BY tenant_id;
-- One wrapped data key each (RFC 5649 wrap of 32 bytes is 40 bytes).
SELECT tenant_id, dek_version, kek_version, length(wrapped_dek) AS wrapped_len
FROM vecphi.keyring ORDER BY tenant_id, dek_version;

-- The embedded provider wrote one KEK file per tenant: 64 hex digits and a
-- newline.  (The directory also holds the audit key and head files, made
-- by the audit writer at its own pace: see audit.md.)
SELECT substr(f, 18) AS kek_file,
	pg_read_file(current_setting('vecphi.key_directory') || '/' || f) ~ '^[0-9a-f]{64}\n$' AS is_64_hex
FROM pg_ls_dir(current_setting('vecphi.key_directory')) AS f
WHERE f LIKE (SELECT keyring_id FROM vecphi.keyring_identity) || '.%.kek' ORDER BY f;

-- The helpers work: claims for hosp_a, an encrypted value, an error report.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT vecphi.decrypt('[1,2,3]'::evector);
SELECT expect_error($$SELECT '[1,2'::evector$$);
COMMIT;
