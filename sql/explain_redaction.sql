-- explain_redaction: EXPLAIN never shows a claims token (issue #15).  A
-- token written as a literal, or passed to a prepared statement that
-- EXPLAIN EXECUTE plans with it as a constant, is replaced by <token> in
-- every output format (&lt;token&gt; in XML, which must stay well formed;
-- explain_redaction_1.out: a server built without libxml cannot check that).

SELECT token_for('hosp_a') AS tok \gset

EXPLAIN (VERBOSE, COSTS OFF) SELECT vecphi.set_claims(:'tok');

PREPARE with_token(text) AS SELECT vecphi.set_claims($1), $1 IS NOT NULL;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE with_token(:'tok');
EXPLAIN (VERBOSE, COSTS OFF, FORMAT JSON) EXECUTE with_token(:'tok');
EXPLAIN (VERBOSE, COSTS OFF, FORMAT YAML) EXECUTE with_token(:'tok');
DEALLOCATE with_token;

-- Run through SPI (a function that EXPLAINs), the output is redacted too.
CREATE FUNCTION explain_lines(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	line text;
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF, FORMAT XML) ' || q LOOP
		RETURN NEXT line;
	END LOOP;
END
$$;
SELECT xml_is_well_formed_document(l) AS well_formed,
	   l LIKE '%&lt;token&gt;%' AS redacted,
	   strpos(l, :'tok') = 0 AS no_token
FROM explain_lines(format('SELECT vecphi.set_claims(%L)', :'tok')) AS l;
DROP FUNCTION explain_lines(text);

-- EXPLAIN ANALYZE runs the statement: the claims are set all the same.
BEGIN;
EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT vecphi.set_claims(:'tok');
SELECT vecphi.tenant();
ROLLBACK;
