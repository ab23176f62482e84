-- etext: encrypted text.  Input that starts with "vecphi:" is read as an
-- envelope, anything else is encrypted; vecphi.encrypt(text) always
-- encrypts; vecphi.decrypt(etext) needs the owning tenant's claims.
-- Envelopes are random, so only lengths, prefixes and clear header fields
-- are printed.

\pset null '<null>'

CREATE TABLE et_samples (id int PRIMARY KEY, note text, body etext);

-- Round trips: ASCII, empty, multibyte UTF-8, a text that looks like an
-- envelope (through vecphi.encrypt), and 100 kB (stored out of line).
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO et_samples VALUES
	(1, 'ascii literal', 'Patient reports chest pain'),
	(2, 'empty literal', ''),
	(3, 'multibyte literal', 'Grüße, naïve café — 日本語の診療記録 🩺'),
	(4, 'encrypt() of envelope-like text', vecphi.encrypt('vecphi:looks like an envelope')),
	(5, '100 kB via encrypt()', vecphi.encrypt(repeat('0123456789', 10000))),
	(6, '100 kB text input', repeat('abcdefghij', 10000)::etext),
	(7, 'encrypt() of empty text', vecphi.encrypt(''));
SELECT id, note, length(vecphi.decrypt(body)) AS chars,
	octet_length(vecphi.decrypt(body)) AS bytes,
	CASE WHEN length(vecphi.decrypt(body)) <= 60 THEN vecphi.decrypt(body) END AS plaintext
FROM et_samples ORDER BY id;
SELECT vecphi.decrypt(body) = repeat('0123456789', 10000) AS long_5_exact,
	md5(vecphi.decrypt(body)) = md5(repeat('0123456789', 10000)) AS long_5_md5
FROM et_samples WHERE id = 5;
SELECT vecphi.decrypt(body) = repeat('abcdefghij', 10000) AS long_6_exact
FROM et_samples WHERE id = 6;
-- The same text encrypts differently each time.
SELECT 'same'::etext::text <> 'same'::etext::text AS nonce_differs;
COMMIT;

-- The long values went to the TOAST table, uncompressed (ciphertext does
-- not compress; storage is external).
SELECT pg_relation_size(reltoastrelid) > 0 AS toasted
FROM pg_class WHERE relname = 'et_samples';
SELECT id, pg_column_size(body) >= 100044 AS stored_uncompressed
FROM et_samples WHERE id IN (5, 6) ORDER BY id;

-- Envelope: "vecphi:" + base64 of 16-byte header, 12-byte nonce, the text's
-- bytes encrypted, 16-byte tag.  Readable without claims.
SELECT id, left(body::text, 7) AS prefix,
	octet_length(envelope_bytes(body::text)) - 44 AS payload_bytes,
	vecphi.key_id(body) AS key_id
FROM et_samples ORDER BY id;
-- Header: format 1, kind 2 (text), tenant 1, data key 1, 26 bytes.
SELECT substr(envelope_bytes(body::text), 1, 16) AS header FROM et_samples WHERE id = 1;
SELECT id, etext_send(body) = envelope_bytes(body::text) AS send_matches_text
FROM et_samples ORDER BY id;
-- The plaintext is not in the envelope.
SELECT position(convert_to('chest pain', 'UTF8') IN envelope_bytes(body::text)) AS has_plaintext
FROM et_samples WHERE id = 1;

-- Envelope text round-trips without claims, byte for byte, and decrypts.
CREATE TABLE et_copy AS SELECT id, body::text::etext AS body FROM et_samples;
SELECT count(*) AS same_bytes FROM et_samples s JOIN et_copy c USING (id)
WHERE c.body::text = s.body::text;
BEGIN;
SELECT as_tenant('hosp_a');
SELECT count(*) AS same_plaintext FROM et_samples s JOIN et_copy c USING (id)
WHERE vecphi.decrypt(c.body) = vecphi.decrypt(s.body);
COMMIT;

-- No claims: nothing encrypts or decrypts.
SELECT expect_error($$SELECT 'hello'::etext$$) AS literal_without_claims;
SELECT expect_error($$SELECT vecphi.encrypt('hello'::text)$$) AS encrypt_without_claims;
SELECT expect_error($$SELECT vecphi.decrypt(body) FROM et_samples WHERE id = 1$$) AS decrypt_without_claims;

-- The other tenant cannot decrypt.
BEGIN;
SELECT as_tenant('hosp_b');
SELECT expect_error_detail($$SELECT vecphi.decrypt(body) FROM et_samples WHERE id = 1$$) AS other_tenant;
SELECT expect_error($$SELECT vecphi.decrypt(body) FROM et_copy WHERE id = 5$$) AS other_tenant_long;
SELECT vecphi.key_id('hosp_b text'::etext) AS hosp_b_key,
	vecphi.decrypt('hosp_b text'::etext) AS hosp_b_own;
COMMIT;

-- Malformed and wrong-type envelopes.
BEGIN;
SELECT as_tenant('hosp_a');
-- "vecphi:" text is read as an envelope, so plaintext that starts with it
-- must go through vecphi.encrypt() (row 4 above).
SELECT expect_error_detail($$SELECT 'vecphi:looks like an envelope'::etext$$) AS envelope_like_literal;
SELECT expect_error_detail($$SELECT 'vecphi:garbage'::etext$$) AS garbage;
SELECT expect_error_detail($$SELECT 'vecphi:'::etext$$) AS empty_envelope;
SELECT expect_error_detail($$SELECT '[1,2,3]'::evector::text::etext$$) AS evector_as_etext;
SELECT expect_error($$SELECT left(body::text, -8)::etext FROM et_samples WHERE id = 1$$) AS truncated;
SELECT expect_error($$SELECT envelope_text(envelope_bytes(body::text) || '\x00'::bytea)::etext FROM et_samples WHERE id = 1$$) AS padded;
-- Tampering anywhere in nonce, ciphertext or tag fails authentication.
SELECT n, expect_error(format('SELECT vecphi.decrypt(%L::etext)', flip_byte(body::text, n))) AS result
FROM et_samples, unnest(ARRAY[16, 27, 28, 40, 53, 54, 69]) AS n
WHERE id = 1 ORDER BY n;
-- ... and in the header (here the byte count, which no longer matches).
SELECT expect_error_detail(format('SELECT vecphi.decrypt(%L::etext)', flip_byte(body::text, 15))) AS count_changed
FROM et_samples WHERE id = 1;
-- A flipped bit deep inside the 100 kB value.
SELECT expect_error(format('SELECT vecphi.decrypt(%L::etext)', flip_byte(body::text, 50000, 64))) AS long_tampered
FROM et_samples WHERE id = 5;
-- etext takes no type modifier.
SELECT expect_error($$CREATE TABLE et_bad (b etext(10))$$) AS typmod;
COMMIT;

DROP TABLE et_copy;
