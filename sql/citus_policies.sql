-- vecphi.values_owned_by_claimant(VARIADIC "any"): the write check protect()
-- puts in the policies of a table Citus manages (which cannot hold the
-- whole-row row_owned_by_claimant(t.*)), over the columns given: every
-- evector and etext value, in domains, arrays and composites too, must be
-- NULL or the claimant tenant's ciphertext.  (The Citus side: TAP
-- 182_citus_policies.)

CREATE TABLE cp_vals (who text, v evector(3), t etext);
BEGIN;
SELECT as_tenant('hosp_b');
INSERT INTO cp_vals VALUES ('b', '[1,2,3]', 'note of b');
COMMIT;
BEGIN;
SELECT as_tenant('hosp_a');
INSERT INTO cp_vals VALUES ('a', '[4,5,6]', 'note of a');
-- the claimant's own values, NULLs and plain values
SELECT vecphi.values_owned_by_claimant(v, t, NULL::evector, 'plain'::text, 42) AS own
FROM cp_vals WHERE who = 'a';
-- another tenant's ciphertext, as such, in an array, in a composite
SELECT vecphi.values_owned_by_claimant(v) AS b_vector,
	vecphi.values_owned_by_claimant(t) AS b_text,
	vecphi.values_owned_by_claimant('x'::text, ARRAY[v]) AS b_in_array,
	vecphi.values_owned_by_claimant(ROW(1, t)) AS b_in_row
FROM cp_vals WHERE who = 'b';
-- the same answer as the whole-row check
SELECT who, vecphi.values_owned_by_claimant(v, t) AS by_columns,
	vecphi.row_owned_by_claimant(cp_vals.*) AS by_row
FROM cp_vals ORDER BY who;
COMMIT;
-- without claims no ciphertext is anyone's
SELECT vecphi.values_owned_by_claimant(v) AS no_claims FROM cp_vals WHERE who = 'a';
DROP TABLE cp_vals;
