-- inputs_large: etext and evector values near the 1 GB varlena limit
-- (issue #12).  The base64 text form of an envelope over 512 MB overflowed
-- int arithmetic (pg_b64_enc_len / pg_b64_dec_len): clear errors or
-- correct results now, never an allocation of a wrapped size.  Uses about
-- 3 GB of server memory for a few seconds.

BEGIN;
SELECT as_tenant('hosp_a');
-- 540 MB of text: its envelope's text form is 720 MB, within the limit.
SELECT length(vecphi.encrypt(repeat('x', 540000000))::text) AS text_form_length;
-- 810 MB of text: its text form would pass 1 GB (54000, not XX000).
SELECT expect_error_detail($$SELECT length(vecphi.encrypt(repeat('x', 810000000))::text)$$) AS text_form_too_large;
-- Binary output has no such limit.
SELECT octet_length(etext_send(vecphi.encrypt(repeat('x', 810000000)))) AS binary_form_length;
COMMIT;

-- 720 MB of base64 (decodes to 540 MB of zero bytes: a damaged envelope).
SELECT expect_error_detail($$SELECT ('vecphi:' || repeat('A', 720000000))::etext$$) AS huge_envelope_text;
SELECT expect_error_detail($$SELECT ('vecphi:' || repeat('A', 720000000))::evector$$) AS huge_envelope_vector;
-- Plaintext over the envelope limit: 54000 with sizes, no plaintext.
BEGIN;
SELECT as_tenant('hosp_a');
SELECT expect_error_detail($$SELECT vecphi.encrypt(repeat('y', 1073741800))$$) AS too_large_to_encrypt;
COMMIT;
