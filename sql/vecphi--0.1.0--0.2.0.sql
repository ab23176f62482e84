-- vecphi 0.1.0 -> 0.2.0.  Runs on ALTER EXTENSION vecphi UPDATE and, after
-- vecphi--0.1.0.sql, on every new CREATE EXTENSION vecphi: what is added here
-- exists in both, so the two paths cannot drift apart.  Same rules as the
-- install script: every name schema-qualified, every SECURITY DEFINER
-- function pins search_path.

\echo Use "ALTER EXTENSION vecphi UPDATE TO '0.2.0'" to load this file. \quit
