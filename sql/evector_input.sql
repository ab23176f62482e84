-- evector_input: the evector type's text input and output, typmod, limits,
-- the envelope it stores (layout, round trips, tampering) and the real[]
-- conversions.  Ciphertext is random, so no envelope is ever printed: only
-- its length, prefix, clear header fields and what decrypts from it.

\pset null '<null>'

---------------------------------------------------------------------------
-- Valid literals encrypt under the claimant's tenant and decrypt back to
-- the same floats.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('hosp_a');
SELECT vecphi.decrypt('[1,2,3]'::evector) AS plain;
SELECT vecphi.decrypt('  [ 1.5 ,-2e3,	3.25E-1 ]  '::evector) AS spaces_exponents;
SELECT vecphi.decrypt('[-0.5,+7,1e-3,0]'::evector) AS signs;
SELECT vecphi.decrypt('[3.4e38,-3.4e38,1.17549435e-38]'::evector) AS extremes;
-- Underflow rounds to zero, as in pgvector (only overflow is an error).
SELECT vecphi.decrypt('[1e-50]'::evector) AS underflow;
-- A single dimension is fine.
SELECT vecphi.decrypt('[42]'::evector) AS one_dim;
-- The same vector encrypts differently each time (random nonce).
SELECT '[1,2,3]'::evector::text <> '[1,2,3]'::evector::text AS nonce_differs;
COMMIT;

---------------------------------------------------------------------------
-- Output is the envelope, never plaintext: "vecphi:" and base64 of
-- 16-byte header + 12-byte nonce + 4 bytes per dimension + 16-byte tag.
---------------------------------------------------------------------------
CREATE TABLE ev_samples (id int PRIMARY KEY, v evector);
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO ev_samples VALUES (1, '[1,2,3]'), (2, '[0.25,-0.5,4,8,16]');
COMMIT;

-- No claims are needed to read the envelope or its clear header fields.
SELECT id, left(v::text, 7) AS prefix, length(v::text) AS text_len,
	octet_length(envelope_bytes(v::text)) AS envelope_len,
	vector_dims(v) AS dims, vecphi.key_id(v) AS key_id
FROM ev_samples ORDER BY id;
-- Header: format 1, kind 1 (vector), reserved 0, tenant id 1 (hosp_a),
-- data key 1, 3 dimensions, all big-endian.
SELECT substr(envelope_bytes(v::text), 1, 16) AS header
FROM ev_samples WHERE id = 1;
-- The text form is exactly the binary (send) form in base64.
SELECT id, evector_send(v) = envelope_bytes(v::text) AS send_matches_text
FROM ev_samples ORDER BY id;
-- The plaintext floats (1.0f, 2.0f, 3.0f little-endian) are not in it.
SELECT position('\x0000803f'::bytea IN envelope_bytes(v::text)) AS has_1,
	position('\x00000040'::bytea IN envelope_bytes(v::text)) AS has_2,
	position('\x00004040'::bytea IN envelope_bytes(v::text)) AS has_3
FROM ev_samples WHERE id = 1;

---------------------------------------------------------------------------
-- The envelope text is accepted back as input without claims (dumps,
-- COPY), byte for byte, and still decrypts.
---------------------------------------------------------------------------
CREATE TABLE ev_copy AS SELECT id, v::text::evector AS v FROM ev_samples;
SELECT s.id, c.v::text = s.v::text AS same_bytes
FROM ev_samples s JOIN ev_copy c USING (id) ORDER BY s.id;
BEGIN;
SELECT as_tenant('hosp_a');
SELECT id, vecphi.decrypt(v) FROM ev_copy ORDER BY id;
COMMIT;

---------------------------------------------------------------------------
-- Claims: encrypting and decrypting need them; the other tenant's claims
-- do not decrypt.
---------------------------------------------------------------------------
SELECT expect_error($$SELECT '[1,2,3]'::evector$$) AS literal_without_claims;
SELECT expect_error($$SELECT vecphi.encrypt(ARRAY[1,2,3]::real[])$$) AS encrypt_without_claims;
SELECT expect_error($$SELECT vecphi.decrypt(v) FROM ev_samples WHERE id = 1$$) AS decrypt_without_claims;
BEGIN;
SELECT as_tenant('hosp_b');
SELECT expect_error_detail($$SELECT vecphi.decrypt(v) FROM ev_samples WHERE id = 1$$) AS other_tenant;
-- hosp_b's own values are encrypted under hosp_b's key.
SELECT vecphi.key_id('[1,2,3]'::evector) AS hosp_b_key;
COMMIT;

---------------------------------------------------------------------------
-- Typmod: evector(n) checks the dimension count of literals, envelopes and
-- casts.
---------------------------------------------------------------------------
SELECT expect_error($$CREATE TABLE ev_bad (v evector(0))$$) AS typmod_0;
SELECT expect_error($$CREATE TABLE ev_bad (v evector(-1))$$) AS typmod_negative;
SELECT expect_error($$CREATE TABLE ev_bad (v evector(16001))$$) AS typmod_16001;
SELECT expect_error($$CREATE TABLE ev_bad (v evector(3, 4))$$) AS typmod_two;
CREATE TABLE ev_typmod (id int, v evector(3));
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'ev_typmod'::regclass AND attname = 'v';
SELECT format_type('evector'::regtype, 16000) AS max_typmod;
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO ev_typmod VALUES (1, '[1,2,3]');
SELECT expect_error($$INSERT INTO ev_typmod VALUES (2, '[1,2]')$$) AS literal_too_short;
SELECT expect_error($$INSERT INTO ev_typmod VALUES (2, '[1,2,3,4]')$$) AS literal_too_long;
SELECT expect_error($$SELECT '[1,2]'::evector(3)$$) AS cast_literal;
SELECT vecphi.decrypt('[1,2]'::evector(2)) AS cast_literal_ok;
-- An envelope of 5 dimensions into evector(3), as text and as a value.
SELECT expect_error(format('INSERT INTO ev_typmod VALUES (2, %L)', v::text)) AS envelope_text_into_3
FROM ev_samples WHERE id = 2;
SELECT expect_error($$INSERT INTO ev_typmod SELECT 2, v FROM ev_samples WHERE id = 2$$) AS envelope_into_3;
SELECT expect_error($$SELECT v::evector(2) FROM ev_samples WHERE id = 1$$) AS cast_value;
SELECT vecphi.decrypt(v::evector(3)) AS cast_value_ok FROM ev_samples WHERE id = 1;
INSERT INTO ev_typmod SELECT 3, v FROM ev_samples WHERE id = 1;
SELECT id, vecphi.decrypt(v) FROM ev_typmod ORDER BY id;
COMMIT;

---------------------------------------------------------------------------
-- Limits: 1 to 16000 dimensions; no NaN, no infinity, no overflow.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('hosp_a');
SELECT vector_dims(('[' || array_to_string(array_fill(1, ARRAY[16000]), ',') || ']')::evector) AS dims_16000;
SELECT vector_dims(('[' || array_to_string(array_fill(1, ARRAY[16000]), ',') || ']')::evector(16000)) AS typmod_16000;
SELECT expect_error($$SELECT ('[' || array_to_string(array_fill(1, ARRAY[16001]), ',') || ']')::evector$$) AS dims_16001;
SELECT expect_error($$SELECT vecphi.encrypt(array_fill(1::real, ARRAY[16001]))$$) AS encrypt_16001;
-- 16000 dimensions stored (out of line) and read back.
INSERT INTO ev_samples VALUES (3, ('[' || array_to_string(array_fill(0.5, ARRAY[16000]), ',') || ']')::evector);
SELECT vector_dims(v), array_length(vecphi.decrypt(v), 1) AS len,
	(SELECT sum(x) FROM unnest(vecphi.decrypt(v)) AS x) AS total
FROM ev_samples WHERE id = 3;
SELECT expect_error($$SELECT '[]'::evector$$) AS empty;
SELECT expect_error($$SELECT '[ ]'::evector$$) AS empty_spaces;
SELECT expect_error_detail($$SELECT '[1,NaN,3]'::evector$$) AS nan;
SELECT expect_error($$SELECT '[nan]'::evector$$) AS nan_lower;
SELECT expect_error_detail($$SELECT '[Infinity]'::evector$$) AS infinity;
SELECT expect_error($$SELECT '[1,-inf]'::evector$$) AS minus_inf;
SELECT expect_error($$SELECT '[1e39]'::evector$$) AS overflow;
SELECT expect_error($$SELECT '[2,-1e39]'::evector$$) AS overflow_negative;
SELECT expect_error($$SELECT vecphi.encrypt(ARRAY['NaN', 1]::real[])$$) AS encrypt_nan;
SELECT expect_error($$SELECT vecphi.encrypt(ARRAY['Infinity']::real[])$$) AS encrypt_inf;
COMMIT;

---------------------------------------------------------------------------
-- Malformed literals: 22P02, and the message never echoes the literal.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('hosp_a');
SELECT lit, expect_error_detail(format('SELECT %L::evector', lit)) AS result
FROM (VALUES ('1,2'), ('[1,,2]'), ('[1,2'), ('[1 2]'), ('[1,2]x'), ('[1,2],'),
	(''), ('   '), ('[1,]'), ('[,1]'), ('[a]'), ('[1;2]'), ('{1,2}'), ('(1,2)'),
	('[[1,2]]'), (' vecphi:AAAA'), ('VECPHI:AAAA')) AS t(lit);
COMMIT;

---------------------------------------------------------------------------
-- Damaged envelope text.  Structure is checked on input (no claims
-- needed); authentication on decryption.  No alteration ever decrypts.
---------------------------------------------------------------------------
-- Not base64, or not a whole number of base64 groups: 22P02.
SELECT expect_error_detail($$SELECT 'vecphi:!!!'::evector$$) AS not_base64;
SELECT expect_error($$SELECT (v::text || 'A')::evector FROM ev_samples WHERE id = 1$$) AS extra_char;
SELECT expect_error($$SELECT left(v::text, -1)::evector FROM ev_samples WHERE id = 1$$) AS chopped_1_char;
SELECT expect_error($$SELECT ('vecphi: ' || substr(v::text, 8))::evector FROM ev_samples WHERE id = 1$$) AS embedded_space;
-- Valid base64 but no whole envelope: XX001.
SELECT expect_error_detail($$SELECT 'vecphi:'::evector$$) AS empty_envelope;
SELECT expect_error_detail($$SELECT left(v::text, -8)::evector FROM ev_samples WHERE id = 1$$) AS truncated;
SELECT expect_error_detail($$SELECT envelope_text(envelope_bytes(v::text) || '\x00'::bytea)::evector FROM ev_samples WHERE id = 1$$) AS padded;
SELECT expect_error_detail($$SELECT envelope_text(substr(envelope_bytes(v::text), 1, 20))::evector FROM ev_samples WHERE id = 1$$) AS header_only;
-- An etext envelope is not an evector.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT expect_error_detail($$SELECT vecphi.encrypt('hello')::text::evector$$) AS etext_as_evector;
COMMIT;

-- Every single-bit change, at every byte of a 3-dimension envelope, in the
-- low and the high bit: what each part of the envelope reports.  Nothing
-- decrypts.  (Bytes 0-15 header, 16-27 nonce, 28-39 ciphertext, 40-55 tag.)
BEGIN;
SELECT as_tenant('hosp_a');
WITH e AS (SELECT v::text AS env FROM ev_samples WHERE id = 1),
attempts AS (
	SELECT n, mask,
		CASE WHEN n = 0 THEN '0 format' WHEN n = 1 THEN '1 kind'
			WHEN n < 4 THEN '2 reserved' WHEN n < 8 THEN '3 tenant id'
			WHEN n < 12 THEN '4 data key' WHEN n < 16 THEN '5 count'
			WHEN n < 28 THEN '6 nonce' WHEN n < 40 THEN '7 ciphertext'
			ELSE '8 tag' END AS part,
		expect_error(format('SELECT vecphi.decrypt(%L::evector)', flip_byte(env, n, mask))) AS result
	FROM e, generate_series(0, 55) AS n, unnest(ARRAY[1, 128]) AS mask)
SELECT part, regexp_replace(result, 'data key \d+', 'data key N') AS result, count(*)
FROM attempts GROUP BY 1, 2 ORDER BY 1, 2;
COMMIT;

-- Relabelling is caught: hosp_a's envelope with its tenant id changed to
-- hosp_b's (2) does not decrypt for hosp_b; an etext envelope of 12 bytes
-- relabelled as a 3-dimension evector (same size) does not decrypt either.
BEGIN;
SELECT as_tenant('hosp_b');
SELECT expect_error_detail(format('SELECT vecphi.decrypt(%L::evector)', flip_byte(v::text, 7, 3))) AS relabelled_tenant
FROM ev_samples WHERE id = 1;
COMMIT;
BEGIN;
SELECT as_tenant('hosp_a');
SELECT vecphi.decrypt(vecphi.encrypt('abcdefghijkl')) AS etext_12_bytes;
SELECT expect_error_detail(format('SELECT vecphi.decrypt(%L::evector)',
	envelope_text(set_byte(set_byte(envelope_bytes(vecphi.encrypt('abcdefghijkl')::text), 1, 1), 15, 3)))) AS relabelled_kind;
-- Swapping the tags of two envelopes of the same key and size.
SELECT expect_error(format('SELECT vecphi.decrypt(%L::evector)',
	envelope_text(overlay(envelope_bytes(a::text) PLACING substr(envelope_bytes(b::text), 41, 16) FROM 41)))) AS swapped_tag
FROM (SELECT '[1,2,3]'::evector AS a, '[1,2,3]'::evector AS b) AS t;
COMMIT;

---------------------------------------------------------------------------
-- real[] to evector: vecphi.encrypt() and the assignment cast.
---------------------------------------------------------------------------
BEGIN;
SELECT as_tenant('hosp_a');
SELECT vecphi.decrypt(vecphi.encrypt(ARRAY[1.5, -2, 3]::real[])) AS encrypt;
SELECT vecphi.decrypt(ARRAY[1,2]::real[]::evector) AS explicit_cast;
INSERT INTO ev_samples VALUES (4, ARRAY[4,5,6]::real[]);
SELECT vecphi.decrypt(v) AS assignment_cast FROM ev_samples WHERE id = 4;
SELECT vecphi.decrypt(vecphi.encrypt('[0:2]={7,8,9}'::real[])) AS lower_bound_0;
SELECT expect_error($$SELECT vecphi.encrypt(ARRAY[1, NULL, 3]::real[])$$) AS with_null;
SELECT expect_error($$SELECT vecphi.encrypt(ARRAY[[1,2],[3,4]]::real[])$$) AS two_dimensional;
SELECT expect_error($$SELECT vecphi.encrypt('{}'::real[])$$) AS empty_array;
SELECT expect_error($$SELECT ARRAY[1,2]::real[]::evector(3)$$) AS cast_typmod;
-- No implicit cast: an evector column does not take a real[] expression
-- silently in a comparison context.
SELECT expect_error($$SELECT ARRAY[1,2]::real[] = '[1,2]'::evector$$) AS no_implicit_cast;
COMMIT;

DROP TABLE ev_copy, ev_typmod;
