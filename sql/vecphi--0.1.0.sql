-- vecphi 0.1.0: encrypted vectors and text, envelope keys, signed claims,
-- distance operators.
--
-- Types, operators and distance functions live in the extension's schema
-- (normally public) so they work without touching search_path, as
-- pgvector's do; everything internal lives in schema vecphi.

\echo Use "CREATE EXTENSION vecphi" to load this file. \quit

CREATE SCHEMA vecphi;
COMMENT ON SCHEMA vecphi IS 'vecphi internals: keyring, claims, decryption';

-- Roles.  Created here when missing; they are cluster-wide, so a second
-- database reuses them.
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'vecphi_key_admin') THEN
		CREATE ROLE vecphi_key_admin NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'vecphi_security_officer') THEN
		CREATE ROLE vecphi_security_officer NOLOGIN;
	END IF;
END
$roles$;

GRANT USAGE ON SCHEMA vecphi TO PUBLIC;

---------------------------------------------------------------------------
-- Keyring.  The C code reads these tables directly (no SQL, no permission
-- check) when it needs a data key; SQL access is for key administrators.
---------------------------------------------------------------------------

CREATE TABLE vecphi.tenants (
	tenant_id	integer PRIMARY KEY CHECK (tenant_id > 0),
	tenant		text NOT NULL UNIQUE
		CHECK (tenant ~ '^[A-Za-z0-9_-]{1,63}$')
		-- never an option to a key provider's command (%t)
		CONSTRAINT tenants_tenant_no_leading_hyphen
			CHECK (pg_catalog.left(tenant, 1) OPERATOR(pg_catalog.<>) '-'),
	kek_version	integer NOT NULL DEFAULT 1 CHECK (kek_version > 0),
	current_dek	integer NOT NULL DEFAULT 1 CHECK (current_dek > 0),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE vecphi.tenants IS
	'one row per tenant: its KEK version at the key provider and its current data key';

CREATE TABLE vecphi.keyring (
	tenant_id	integer NOT NULL REFERENCES vecphi.tenants (tenant_id),
	dek_version	integer NOT NULL CHECK (dek_version > 0),
	kek_version	integer NOT NULL CHECK (kek_version > 0),
	wrapped_dek	bytea NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (tenant_id, dek_version)
);
COMMENT ON TABLE vecphi.keyring IS
	'data keys (DEKs), stored only wrapped (AES-256 key wrap with padding, RFC 5649) by the tenant''s KEK';

-- pg_dump must carry the keyring so that a restore into a fresh cluster can
-- decrypt with the same KEKs.  The wrapped keys are useless without them.
SELECT pg_catalog.pg_extension_config_dump('vecphi.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('vecphi.keyring', '');

REVOKE ALL ON vecphi.tenants, vecphi.keyring FROM PUBLIC;
GRANT SELECT ON vecphi.tenants TO vecphi_key_admin;
GRANT SELECT (tenant_id, dek_version, kek_version, created_at) ON vecphi.keyring TO vecphi_key_admin;

-- Tenant ids and data key versions are handed out by these sequences, never
-- by max() + 1: a sequence does not roll back, so an id or version given to
-- a create_tenant() or rotate_dek() whose transaction aborted (or died in a
-- crash) is never given again, while index entries of rows written under it
-- may remain (index entries do not roll back; docs/keys.md).  Data key
-- versions are therefore increasing per tenant but not consecutive; a new
-- tenant's first data key is version 1 (its id is new).  Dumped, so a
-- restore continues past every value the source gave out.  Only the
-- extension's owner (the key functions are SECURITY DEFINER) may use or
-- move them.
CREATE SEQUENCE vecphi.tenant_ids AS integer MINVALUE 1 NO CYCLE;
CREATE SEQUENCE vecphi.dek_versions AS integer MINVALUE 1 START 2 NO CYCLE;
COMMENT ON SEQUENCE vecphi.tenant_ids IS
	'tenant ids: never reused, even after a rolled-back or crashed create_tenant';
COMMENT ON SEQUENCE vecphi.dek_versions IS
	'data key versions after the first: never reused, even after a rolled-back or crashed rotate_dek';
SELECT pg_catalog.pg_extension_config_dump('vecphi.tenant_ids', '');
SELECT pg_catalog.pg_extension_config_dump('vecphi.dek_versions', '');
REVOKE ALL ON SEQUENCE vecphi.tenant_ids, vecphi.dek_versions FROM PUBLIC;

-- The keyring's identity: a random id made by the first key administration
-- (vecphi.create_tenant or vecphi.keyring_id), naming the KEK files
-- ("<keyring id>.<tenant>.<version>.kek") and passed to key provider
-- commands as %k.  Dumped, so a restore carries it (docs/keys.md, "Moving
-- a keyring").  Empty at CREATE EXTENSION, so the dumped row restores
-- without a clash.
CREATE TABLE vecphi.keyring_identity (
	singleton	boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	keyring_id	text NOT NULL CHECK (keyring_id ~ '^[0-9a-f]{16}$'),
	forked_from	text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE vecphi.keyring_identity IS
	'the id of this database''s keyring: it names the KEK files of the embedded provider and is %k in key provider commands';
SELECT pg_catalog.pg_extension_config_dump('vecphi.keyring_identity', '');
REVOKE ALL ON vecphi.keyring_identity FROM PUBLIC;
GRANT SELECT ON vecphi.keyring_identity TO vecphi_key_admin;

CREATE FUNCTION vecphi.keyring_id() RETURNS text
	AS 'MODULE_PATHNAME', 'vecphi_keyring_id'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION vecphi.keyring_id() IS
	'the id of this database''s keyring, made now if there is none yet (to name key files brought to vecphi.create_tenant)';

CREATE FUNCTION vecphi.fork_keyring() RETURNS text
	AS 'MODULE_PATHNAME', 'vecphi_fork_keyring'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION vecphi.fork_keyring() IS
	'give this database a keyring of its own: a new id and a copy of every live tenant''s current KEK file (embedded provider); for a restored copy that must rotate and shred independently; returns the new id';

CREATE FUNCTION vecphi.adopt_keyring() RETURNS text
	AS 'MODULE_PATHNAME', 'vecphi_adopt_keyring'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION vecphi.adopt_keyring() IS
	'superuser only: make this database the owner of its keyring''s key files (after moving the keyring to another database or cluster); the previous owner can no longer use them; returns the id';

REVOKE ALL ON FUNCTION vecphi.keyring_id(), vecphi.fork_keyring(),
	vecphi.adopt_keyring() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.keyring_id(), vecphi.fork_keyring() TO vecphi_key_admin;

CREATE FUNCTION vecphi.create_tenant(tenant text) RETURNS integer
	AS 'MODULE_PATHNAME', 'vecphi_create_tenant'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION vecphi.create_tenant(text) IS
	'register a tenant: obtain its KEK from the key provider (the embedded provider generates one) and create its first data key; returns the tenant id';

CREATE FUNCTION vecphi.rotate_kek(tenant text) RETURNS integer
	AS 'MODULE_PATHNAME', 'vecphi_rotate_kek'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION vecphi.rotate_kek(text) IS
	're-wrap every data key of the tenant under a new KEK version; no data is rewritten; returns the new KEK version';

CREATE FUNCTION vecphi.rotate_dek(tenant text) RETURNS integer
	AS 'MODULE_PATHNAME', 'vecphi_rotate_dek'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION vecphi.rotate_dek(text) IS
	'create a new data key for the tenant''s new writes; older data keys still decrypt; returns the new data key version';

REVOKE ALL ON FUNCTION vecphi.create_tenant(text), vecphi.rotate_kek(text),
	vecphi.rotate_dek(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.create_tenant(text), vecphi.rotate_kek(text),
	vecphi.rotate_dek(text) TO vecphi_key_admin;

---------------------------------------------------------------------------
-- Claims (minimal form: HS256 tokens, transaction scope)
---------------------------------------------------------------------------

CREATE FUNCTION vecphi.set_claims(token text) RETURNS void
	AS 'MODULE_PATHNAME', 'vecphi_set_claims'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.set_claims(text) IS
	'verify a signed JWT (HS256, vecphi.jwt_secret_file) and hold its claims until the end of the current transaction';

CREATE FUNCTION vecphi.clear_claims() RETURNS void
	AS 'MODULE_PATHNAME', 'vecphi_clear_claims'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.clear_claims() IS
	'drop the verified claims before the end of the transaction';

CREATE FUNCTION vecphi.tenant() RETURNS text
	AS 'MODULE_PATHNAME', 'vecphi_claim_tenant'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.tenant() IS 'verified tenant claim, or NULL';

CREATE FUNCTION vecphi.app_role() RETURNS text
	AS 'MODULE_PATHNAME', 'vecphi_claim_role'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.app_role() IS 'verified application role claim, or NULL';

CREATE FUNCTION vecphi.subject() RETURNS text
	AS 'MODULE_PATHNAME', 'vecphi_claim_subject'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.subject() IS 'verified subject (sub) claim, or NULL';

CREATE FUNCTION vecphi.purpose() RETURNS text
	AS 'MODULE_PATHNAME', 'vecphi_claim_purpose'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.purpose() IS 'verified purpose claim, or NULL';

CREATE FUNCTION vecphi.break_glass() RETURNS text
	AS 'MODULE_PATHNAME', 'vecphi_claim_break_glass'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.break_glass() IS 'verified break-glass reason, or NULL';

---------------------------------------------------------------------------
-- evector: encrypted vector
---------------------------------------------------------------------------

CREATE TYPE evector;

CREATE FUNCTION evector_in(cstring, oid, integer) RETURNS evector
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION evector_in(cstring, oid, integer) IS
	'''[1,2,3]'' encrypts under the claimant tenant''s current data key; an envelope is checked and kept';

CREATE FUNCTION evector_out(evector) RETURNS cstring
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION evector_out(evector) IS 'ciphertext envelope as text (never plaintext)';

CREATE FUNCTION evector_typmod_in(cstring[]) RETURNS integer
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION evector_typmod_in(cstring[]) IS 'evector(n) dimension modifier';

CREATE FUNCTION evector_typmod_out(integer) RETURNS cstring
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION evector_typmod_out(integer) IS 'evector(n) dimension modifier';

CREATE FUNCTION evector_recv(internal, oid, integer) RETURNS evector
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION evector_recv(internal, oid, integer) IS 'binary input: the raw envelope, checked';

CREATE FUNCTION evector_send(evector) RETURNS bytea
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION evector_send(evector) IS 'binary output: the raw envelope';

-- Ciphertext does not compress: store out of line without trying.
CREATE TYPE evector (
	INPUT = evector_in,
	OUTPUT = evector_out,
	TYPMOD_IN = evector_typmod_in,
	TYPMOD_OUT = evector_typmod_out,
	RECEIVE = evector_recv,
	SEND = evector_send,
	STORAGE = external,
	ALIGNMENT = int4
);
COMMENT ON TYPE evector IS 'vector encrypted with AES-256-GCM under its tenant''s data key';

CREATE FUNCTION evector(evector, integer, boolean) RETURNS evector
	AS 'MODULE_PATHNAME', 'evector_typmod_cast'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION evector(evector, integer, boolean) IS 'check an evector against evector(n)';

CREATE CAST (evector AS evector) WITH FUNCTION evector(evector, integer, boolean) AS IMPLICIT;

CREATE FUNCTION vecphi.encrypt(real[]) RETURNS evector
	AS 'MODULE_PATHNAME', 'vecphi_encrypt_vector'
	LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.encrypt(real[]) IS
	'encrypt a vector under the claimant tenant''s current data key';

CREATE CAST (real[] AS evector) WITH FUNCTION vecphi.encrypt(real[]) AS ASSIGNMENT;

CREATE FUNCTION vecphi.decrypt(evector) RETURNS real[]
	AS 'MODULE_PATHNAME', 'vecphi_decrypt_vector'
	LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.decrypt(evector) IS
	'decrypt a vector; needs the claims of the tenant that owns it';

CREATE FUNCTION vector_dims(evector) RETURNS integer
	AS 'MODULE_PATHNAME', 'evector_dims'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vector_dims(evector) IS
	'number of dimensions (stored in the clear, authenticated, in the envelope header)';

CREATE FUNCTION vecphi.key_id(evector) RETURNS text
	AS 'MODULE_PATHNAME', 'evector_key_id'
	LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.key_id(evector) IS
	'tenant and data key version the value is encrypted under, as tenant/version';

---------------------------------------------------------------------------
-- etext: encrypted text (the chunk beside the vector)
---------------------------------------------------------------------------

CREATE TYPE etext;

CREATE FUNCTION etext_in(cstring) RETURNS etext
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION etext_in(cstring) IS
	'text encrypts under the claimant tenant''s current data key; text starting with vecphi: is read as an envelope';

CREATE FUNCTION etext_out(etext) RETURNS cstring
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION etext_out(etext) IS 'ciphertext envelope as text (never plaintext)';

CREATE FUNCTION etext_recv(internal) RETURNS etext
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION etext_recv(internal) IS 'binary input: the raw envelope, checked';

CREATE FUNCTION etext_send(etext) RETURNS bytea
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION etext_send(etext) IS 'binary output: the raw envelope';

CREATE TYPE etext (
	INPUT = etext_in,
	OUTPUT = etext_out,
	RECEIVE = etext_recv,
	SEND = etext_send,
	STORAGE = external,
	ALIGNMENT = int4
);
COMMENT ON TYPE etext IS 'text encrypted with AES-256-GCM under its tenant''s data key';

CREATE FUNCTION vecphi.encrypt(text) RETURNS etext
	AS 'MODULE_PATHNAME', 'vecphi_encrypt_text'
	LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.encrypt(text) IS
	'encrypt text under the claimant tenant''s current data key (never read as an envelope)';

CREATE FUNCTION vecphi.decrypt(etext) RETURNS text
	AS 'MODULE_PATHNAME', 'vecphi_decrypt_text'
	LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.decrypt(etext) IS
	'decrypt text; needs the claims of the tenant that owns it';

CREATE FUNCTION vecphi.key_id(etext) RETURNS text
	AS 'MODULE_PATHNAME', 'etext_key_id'
	LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.key_id(etext) IS
	'tenant and data key version the value is encrypted under, as tenant/version';

---------------------------------------------------------------------------
-- Distances.  Both operands are decrypted in backend memory; each needs the
-- claims of its tenant.  Not LEAKPROOF: an error can reveal that a value
-- belongs to another tenant.  COST 500: a call detoasts, authenticates and decrypts
-- (at least) one envelope, hundreds of simple operators' worth, which
-- lets the planner weigh a sequential scan against an ehnsw index fairly.
---------------------------------------------------------------------------

CREATE FUNCTION l2_distance(evector, evector) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_l2_distance'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION l2_distance(evector, evector) IS 'Euclidean distance';

CREATE FUNCTION cosine_distance(evector, evector) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_cosine_distance'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION cosine_distance(evector, evector) IS
	'1 - cosine similarity; NaN when either vector is zero, as pgvector';

CREATE FUNCTION inner_product(evector, evector) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_inner_product'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION inner_product(evector, evector) IS 'inner product';

CREATE FUNCTION vecphi.negative_inner_product(evector, evector) RETURNS float8
	AS 'MODULE_PATHNAME', 'evector_negative_inner_product'
	LANGUAGE C STABLE STRICT PARALLEL SAFE COST 500;
COMMENT ON FUNCTION vecphi.negative_inner_product(evector, evector) IS
	'negative inner product, the <#> operator';

CREATE OPERATOR <-> (
	LEFTARG = evector, RIGHTARG = evector, FUNCTION = l2_distance,
	COMMUTATOR = '<->'
);
COMMENT ON OPERATOR <-> (evector, evector) IS 'Euclidean distance';

CREATE OPERATOR <=> (
	LEFTARG = evector, RIGHTARG = evector, FUNCTION = cosine_distance,
	COMMUTATOR = '<=>'
);
COMMENT ON OPERATOR <=> (evector, evector) IS 'cosine distance';

CREATE OPERATOR <#> (
	LEFTARG = evector, RIGHTARG = evector, FUNCTION = vecphi.negative_inner_product,
	COMMUTATOR = '<#>'
);
COMMENT ON OPERATOR <#> (evector, evector) IS 'negative inner product';

---------------------------------------------------------------------------
-- ehnsw: HNSW index over encrypted vectors, one graph per tenant
---------------------------------------------------------------------------

CREATE FUNCTION vecphi.ehnsw_handler(internal) RETURNS index_am_handler
	AS 'MODULE_PATHNAME', 'ehnsw_handler'
	LANGUAGE C STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.ehnsw_handler(internal) IS 'ehnsw index access method handler';

CREATE ACCESS METHOD ehnsw TYPE INDEX HANDLER vecphi.ehnsw_handler;
COMMENT ON ACCESS METHOD ehnsw IS
	'HNSW over encrypted vectors: pages hold only ciphertext, each tenant has its own graph';

CREATE FUNCTION vecphi.ehnsw_metric_l2(internal) RETURNS integer
	AS 'MODULE_PATHNAME', 'ehnsw_metric_l2'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.ehnsw_metric_l2(internal) IS 'ehnsw support: Euclidean distance';

CREATE FUNCTION vecphi.ehnsw_metric_cosine(internal) RETURNS integer
	AS 'MODULE_PATHNAME', 'ehnsw_metric_cosine'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.ehnsw_metric_cosine(internal) IS 'ehnsw support: cosine distance';

CREATE FUNCTION vecphi.ehnsw_metric_ip(internal) RETURNS integer
	AS 'MODULE_PATHNAME', 'ehnsw_metric_ip'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.ehnsw_metric_ip(internal) IS 'ehnsw support: negative inner product';

CREATE OPERATOR CLASS evector_l2_ops
	DEFAULT FOR TYPE evector USING ehnsw AS
	OPERATOR 1 <-> (evector, evector) FOR ORDER BY float_ops,
	FUNCTION 1 vecphi.ehnsw_metric_l2(internal);

CREATE OPERATOR CLASS evector_cosine_ops
	FOR TYPE evector USING ehnsw AS
	OPERATOR 1 <=> (evector, evector) FOR ORDER BY float_ops,
	FUNCTION 1 vecphi.ehnsw_metric_cosine(internal);

CREATE OPERATOR CLASS evector_ip_ops
	FOR TYPE evector USING ehnsw AS
	OPERATOR 1 <#> (evector, evector) FOR ORDER BY float_ops,
	FUNCTION 1 vecphi.ehnsw_metric_ip(internal);

CREATE FUNCTION vecphi.index_check(index regclass) RETURNS boolean
	AS 'MODULE_PATHNAME', 'vecphi_index_check'
	LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION vecphi.index_check(regclass) IS
	'verify the structure of an ehnsw index (edges within one tenant, valid entry points); raises XX002 on the first problem';

---------------------------------------------------------------------------
-- Row-level security tied to the verified claims
---------------------------------------------------------------------------

CREATE TABLE vecphi.role_categories (
	app_role	text NOT NULL CHECK (app_role <> ''),
	category	text NOT NULL CHECK (category <> ''),
	PRIMARY KEY (app_role, category)
);
COMMENT ON TABLE vecphi.role_categories IS
	'which categories of rows each application role (the role claim) may see; managed by vecphi_security_officer';
SELECT pg_catalog.pg_extension_config_dump('vecphi.role_categories', '');
REVOKE ALL ON vecphi.role_categories FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON vecphi.role_categories TO vecphi_security_officer;

CREATE FUNCTION vecphi.allowed_categories() RETURNS text[]
	LANGUAGE sql STABLE PARALLEL SAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $$
		SELECT coalesce(pg_catalog.array_agg(category ORDER BY category), '{}'::pg_catalog.text[])
		FROM vecphi.role_categories
		WHERE app_role OPERATOR(pg_catalog.=) vecphi.app_role()
	$$;
COMMENT ON FUNCTION vecphi.allowed_categories() IS
	'categories the claimant''s role is granted in vecphi.role_categories (empty without claims)';

CREATE FUNCTION vecphi.owned_by_claimant(evector) RETURNS boolean
	AS 'MODULE_PATHNAME', 'evector_owned_by_claimant'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.owned_by_claimant(evector) IS
	'true when the value is NULL or encrypted under the claimant''s tenant (reads the authenticated header; decrypts nothing)';

CREATE FUNCTION vecphi.owned_by_claimant(etext) RETURNS boolean
	AS 'MODULE_PATHNAME', 'etext_owned_by_claimant'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.owned_by_claimant(etext) IS
	'true when the value is NULL or encrypted under the claimant''s tenant (reads the authenticated header; decrypts nothing)';

CREATE FUNCTION vecphi.row_owned_by_claimant(record) RETURNS boolean
	AS 'MODULE_PATHNAME', 'vecphi_row_owned_by_claimant'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.row_owned_by_claimant(record) IS
	'true when every evector and etext value in the row (domains, arrays and composites included) is NULL or the claimant tenant''s ciphertext';

-- Owner code on protected tables (docs/security.md, "Who may change a
-- protected table"): protect() calls protect_check() before it changes
-- anything; the DDL of protected tables is checked by a ProcessUtility hook.
CREATE FUNCTION vecphi.protect_check(tbl regclass, tenant_column name, category_column name)
RETURNS void
	AS 'MODULE_PATHNAME', 'vecphi_protect_check'
	LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.protect_check(regclass, name, name) IS
	'run by vecphi.protect(): lock the table tree, refuse owner code (unless the security officer vouches for it, audited) and a protection weaker than the current one';

CREATE FUNCTION vecphi.owner_code(tbl regclass) RETURNS text[]
	AS 'MODULE_PATHNAME', 'vecphi_owner_code'
	LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vecphi.owner_code(regclass) IS
	'objects of the table whose code would run in claimants'' sessions (triggers, rules, policies, defaults, checks, domains, index expressions, unprotected inheritors, cascading foreign keys) and the functions they call';
---------------------------------------------------------------------------
-- Ciphertext bound to its place (issue #11, section 4; src/binding.c).
-- Every evector and etext value of a protected table is sealed for its
-- table (binding_label), column and row (primary key), in the
-- authenticated header.  The label is the table's qualified name at
-- protect() time and never changes: RENAME keeps the OID (regclass),
-- pg_dump carries the row (regclass dumps as a name, restores to the new
-- OID), pg_upgrade keeps relation OIDs.
---------------------------------------------------------------------------

CREATE TABLE vecphi.protected_tables (
	relid			regclass PRIMARY KEY,
	binding_label	text NOT NULL UNIQUE CHECK (binding_label <> ''),
	column_names	name[] NOT NULL DEFAULT '{}',
	column_labels	text[] NOT NULL DEFAULT '{}',
	protected_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK (pg_catalog.cardinality(column_names) = pg_catalog.cardinality(column_labels))
);
COMMENT ON TABLE vecphi.protected_tables IS
	'tables under vecphi.protect(): the label their ciphertext is bound to, and the label of each ciphertext column (its name at protect() time, kept across RENAME COLUMN)';
SELECT pg_catalog.pg_extension_config_dump('vecphi.protected_tables', '');
REVOKE ALL ON vecphi.protected_tables FROM PUBLIC;
GRANT SELECT ON vecphi.protected_tables TO PUBLIC;

CREATE FUNCTION vecphi.register_binding(tbl regclass, binding_label text)
RETURNS text
	AS 'MODULE_PATHNAME', 'vecphi_register_binding'
	LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.register_binding(regclass, text) IS
	'called by vecphi.protect(): register the table''s binding label (its qualified name unless given; another label needs vecphi_security_officer) and ciphertext columns; table owner only';

CREATE FUNCTION vecphi.bind_row() RETURNS trigger
	AS 'MODULE_PATHNAME', 'vecphi_bind_row'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.bind_row() IS
	'row trigger of protected tables: bind every evector and etext value to its table, column and row (re-seal under the writer''s claims when needed)';

-- COST 1000: evaluated after the tenant and category tests of a policy.
CREATE FUNCTION vecphi.row_bound(record) RETURNS boolean
	AS 'MODULE_PATHNAME', 'vecphi_row_bound'
	LANGUAGE C STABLE PARALLEL SAFE COST 1000;
COMMENT ON FUNCTION vecphi.row_bound(record) IS
	'policy check: every evector and etext value of the protected table''s row is bound to that row (headers only); raises XX001 with a denial record otherwise';

CREATE FUNCTION vecphi.bind_existing(tbl regclass) RETURNS bigint
	AS 'MODULE_PATHNAME', 'vecphi_bind_existing'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.bind_existing(regclass) IS
	'bind the unbound evector and etext values already in a protected table to the rows they are in (keyring, no claims); refuses values bound elsewhere; audited; returns the values bound';
REVOKE ALL ON FUNCTION vecphi.bind_existing(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.bind_existing(regclass) TO vecphi_security_officer, vecphi_key_admin;

-- A dropped table's binding goes with it (its label becomes free).
CREATE FUNCTION vecphi.forget_dropped_tables() RETURNS event_trigger
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $forget$
BEGIN
	DELETE FROM vecphi.protected_tables p
	USING pg_catalog.pg_event_trigger_dropped_objects() d
	WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
	  AND d.objsubid OPERATOR(pg_catalog.=) 0
	  AND p.relid::pg_catalog.oid OPERATOR(pg_catalog.=) d.objid;
END
$forget$;
COMMENT ON FUNCTION vecphi.forget_dropped_tables() IS
	'sql_drop event trigger: remove dropped tables from vecphi.protected_tables';
REVOKE ALL ON FUNCTION vecphi.forget_dropped_tables() FROM PUBLIC;
CREATE EVENT TRIGGER vecphi_forget_dropped_tables ON sql_drop
	EXECUTE FUNCTION vecphi.forget_dropped_tables();

CREATE FUNCTION vecphi.protect(tbl regclass, tenant_column name,
							   category_column name DEFAULT NULL,
							   binding_label text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $protect$
DECLARE
	visible text;
	writable text;
	bound_visible text;
	part record;
	pol record;
	colname name;
	coltype regtype;
	kind "char";
BEGIN
	IF tbl IS NULL OR tenant_column IS NULL THEN
		RAISE EXCEPTION 'table and tenant column must not be NULL' USING ERRCODE = '22004';
	END IF;
	SELECT relkind INTO kind FROM pg_class WHERE oid = tbl;
	IF kind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809';
	END IF;
	FOREACH colname IN ARRAY ARRAY[tenant_column, category_column] LOOP
		CONTINUE WHEN colname IS NULL;
		SELECT atttypid::regtype INTO coltype FROM pg_attribute
		WHERE attrelid = tbl AND attname = colname AND attnum > 0 AND NOT attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'column "%" of relation % does not exist', colname, tbl
				USING ERRCODE = '42703';
		END IF;
		IF coltype NOT IN ('text'::regtype, 'character varying'::regtype) THEN
			RAISE EXCEPTION 'column "%" of relation % has type %, not text', colname, tbl, coltype
				USING ERRCODE = '42804',
					  DETAIL = 'Tenant and category columns are compared with the text claims.';
		END IF;
	END LOOP;

	-- Owner code and weakening: refused (or vouched for by the security
	-- officer) before anything changes; locks the table and its inheritors.
	PERFORM vecphi.protect_check(tbl, tenant_column, category_column);

	-- (SELECT ...) makes each claim an init plan: evaluated once per
	-- statement, not once per row.
	visible := format('%I = (SELECT vecphi.tenant())', tenant_column);
	IF category_column IS NOT NULL THEN
		visible := visible || format(
			' AND ((SELECT vecphi.break_glass()) IS NOT NULL'
			' OR %I = ANY ((SELECT vecphi.allowed_categories())::text[]))', category_column);
	END IF;

	-- A partitioned table's partitions are tables of their own: a query
	-- naming a partition directly sees only the partition's policies.
	-- Partitions attached later need protect() too.
	FOR part IN
		SELECT relid FROM pg_partition_tree(tbl)
		UNION SELECT tbl
	LOOP
		-- Writes must carry only the claimant's ciphertext: every evector or
		-- etext value in the new row, whatever column, domain or array.
		writable := visible || format(' AND vecphi.row_owned_by_claimant(%I.*)',
									  (SELECT relname FROM pg_class WHERE oid = part.relid));
		-- Binding (section 4): rows read or written must hold ciphertext
		-- bound to them (row_bound last: tenant and ownership first).
		bound_visible := visible || format(' AND vecphi.row_bound(%I.*)',
										   (SELECT relname FROM pg_class WHERE oid = part.relid));
		writable := writable || format(' AND vecphi.row_bound(%I.*)',
									   (SELECT relname FROM pg_class WHERE oid = part.relid));

		EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part.relid::regclass);
		EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', part.relid::regclass);
		-- VACUUM must always clean the indexes, so that a deleted row's
		-- ciphertext leaves ehnsw pages too; by default PostgreSQL skips
		-- index cleanup when few pages have dead rows.
		IF (SELECT relkind FROM pg_class WHERE oid = part.relid) = 'r' THEN
			EXECUTE format('ALTER TABLE %s SET (vacuum_index_cleanup = on)', part.relid::regclass);
		END IF;

		-- Calling protect() again replaces its policies (say, after a new
		-- category column).
		FOR pol IN
			SELECT polname FROM pg_policy
			WHERE polrelid = part.relid
			  AND polname IN ('vecphi_base', 'vecphi_select', 'vecphi_insert',
							  'vecphi_update', 'vecphi_delete')
		LOOP
			EXECUTE format('DROP POLICY %I ON %s', pol.polname, part.relid::regclass);
		END LOOP;

		-- vecphi's rules are RESTRICTIVE: they hold whatever other
		-- (permissive) policies the table has or gets.  Row-level security
		-- needs one permissive policy to allow anything at all.
		EXECUTE format('CREATE POLICY vecphi_base ON %s AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true)',
					   part.relid::regclass);
		EXECUTE format('CREATE POLICY vecphi_select ON %s AS RESTRICTIVE FOR SELECT USING (%s)',
					   part.relid::regclass, bound_visible);
		EXECUTE format('CREATE POLICY vecphi_insert ON %s AS RESTRICTIVE FOR INSERT WITH CHECK (%s)',
					   part.relid::regclass, writable);
		EXECUTE format('CREATE POLICY vecphi_update ON %s AS RESTRICTIVE FOR UPDATE USING (%s) WITH CHECK (%s)',
					   part.relid::regclass, bound_visible, writable);
		EXECUTE format('CREATE POLICY vecphi_delete ON %s AS RESTRICTIVE FOR DELETE USING (%s)',
					   part.relid::regclass, bound_visible);
	END LOOP;

	-----------------------------------------------------------------------
	-- Binding (issue #11 section 4, src/binding.c): register the table's
	-- binding label and install the trigger that binds every evector and
	-- etext value written to its table, column and row.  ENABLE ALWAYS:
	-- it fires under session_replication_role = replica (logical
	-- replication apply) too; values already bound to their row pass.
	-----------------------------------------------------------------------
	PERFORM vecphi.register_binding(tbl, binding_label);
	IF NOT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = tbl AND indisprimary)
	   AND EXISTS (SELECT 1 FROM pg_attribute a
				   JOIN pg_type t ON t.oid = a.atttypid
				   LEFT JOIN pg_type b ON b.oid = t.typbasetype
				   WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
					 AND (CASE WHEN t.typtype = 'd' THEN b.typname ELSE t.typname END)
						 IN ('evector', 'etext'))
	THEN
		RAISE WARNING 'table % has no primary key: its ciphertext is bound to the table and column only', tbl
			USING DETAIL = 'A value copied from one row to another of the same table and column is not detected.',
				  HINT = 'Add a primary key and call vecphi.protect() again.';
	END IF;
	-- The binding trigger goes on every leaf table, not on a partitioned
	-- parent: partitions would inherit a parent's trigger, which clashes
	-- with their own when a partition protected on its own is attached.
	FOR part IN
		SELECT t.relid FROM pg_partition_tree(tbl) t WHERE t.isleaf
		UNION SELECT tbl WHERE (SELECT c.relkind FROM pg_class c WHERE c.oid = tbl) = 'r'
	LOOP
		IF EXISTS (SELECT 1 FROM pg_trigger
				   WHERE tgrelid = part.relid AND tgname = 'vecphi_binding') THEN
			EXECUTE format('DROP TRIGGER vecphi_binding ON %s', part.relid::regclass);
		END IF;
		EXECUTE format('CREATE TRIGGER vecphi_binding BEFORE INSERT OR UPDATE ON %s '
					   'FOR EACH ROW EXECUTE FUNCTION vecphi.bind_row()', part.relid::regclass);
		EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER vecphi_binding', part.relid::regclass);
	END LOOP;
END
$protect$;
COMMENT ON FUNCTION vecphi.protect(regclass, name, name, text) IS
	'enable and force row-level security tying rows to the verified claims: tenant, and categories granted to the role (all of them under break-glass); bind every ciphertext value to its table, column and row';

-- The minimum-necessary limit is for the security officer, not for
-- application roles (the setting itself is superuser-only by default).
GRANT SET ON PARAMETER vecphi.max_scan_rows TO vecphi_security_officer;

---------------------------------------------------------------------------
-- Audit.  One row per similarity scan, decryption, denial, key event and
-- erasure, written only by vecphi's audit writer (a background worker) in
-- its own transactions, so a record survives the rollback of the
-- transaction that caused it.  Each row carries a keyed hash chain (HMAC-
-- SHA-256 over its predecessor's hash and its own columns, key outside the
-- database); vecphi.verify_audit() recomputes it.  See docs/audit.md.
---------------------------------------------------------------------------
CREATE TABLE vecphi.audit_log (
	seq bigint PRIMARY KEY,
	at timestamptz NOT NULL,
	db_user text NOT NULL,
	backend_pid integer NOT NULL,
	statement_id bigint,
	subject text,
	tenant text,
	app_role text,
	purpose text,
	break_glass boolean NOT NULL,
	break_glass_reason text,
	action text NOT NULL,
	relation text,
	index_name text,
	rows_returned bigint,
	row_ids text[],
	query_fingerprint text,
	outcome text NOT NULL,
	detail text,
	prev_hash bytea NOT NULL,
	row_hash bytea NOT NULL
);
COMMENT ON TABLE vecphi.audit_log IS
	'append-only, hash-chained audit trail of vecphi: scans, decryptions, denials, key events, erasures';
CREATE INDEX audit_log_at ON vecphi.audit_log (at);
CREATE INDEX audit_log_subject ON vecphi.audit_log (subject, at);
REVOKE ALL ON vecphi.audit_log FROM PUBLIC;
GRANT SELECT ON vecphi.audit_log TO vecphi_security_officer;

-- Refuses every INSERT, UPDATE, DELETE and TRUNCATE that does not come from
-- vecphi itself (the audit writer; the retention purge for expired rows).
CREATE FUNCTION vecphi.audit_log_guard() RETURNS trigger
	AS 'MODULE_PATHNAME', 'vecphi_audit_log_guard'
	LANGUAGE C;
CREATE TRIGGER audit_log_append_only
	BEFORE INSERT OR UPDATE OR DELETE ON vecphi.audit_log
	FOR EACH ROW EXECUTE FUNCTION vecphi.audit_log_guard();
CREATE TRIGGER audit_log_no_truncate
	BEFORE TRUNCATE ON vecphi.audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION vecphi.audit_log_guard();
-- ALWAYS: the triggers fire under session_replication_role = replica too.
ALTER TABLE vecphi.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;
ALTER TABLE vecphi.audit_log ENABLE ALWAYS TRIGGER audit_log_no_truncate;

CREATE FUNCTION vecphi.verify_audit(anchor_seq bigint DEFAULT NULL,
									anchor_hash text DEFAULT NULL,
									OUT ok boolean, OUT rows_checked bigint,
									OUT first_bad_seq bigint, OUT problem text,
									OUT records_lost bigint)
	AS 'MODULE_PATHNAME', 'vecphi_verify_audit'
	LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION vecphi.verify_audit(bigint, text) IS
	'recompute the audit hash chain; name the first bad row; check the table reaches the head file (deleted newest records); optionally check an exported head (seq, hash); count records lost to a full queue';

CREATE FUNCTION vecphi.audit_head(OUT seq bigint, OUT row_hash text, OUT at timestamptz)
	AS 'MODULE_PATHNAME', 'vecphi_audit_head'
	LANGUAGE C STRICT;
COMMENT ON FUNCTION vecphi.audit_head() IS
	'the newest audit row''s sequence number and hash, for anchoring outside the database';

-- SECURITY DEFINER: the caller (the security officer) has no DELETE
-- privilege; the trigger still lets only rows past retention go.
CREATE FUNCTION vecphi.purge_audit() RETURNS bigint
	AS 'MODULE_PATHNAME', 'vecphi_purge_audit'
	LANGUAGE C STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION vecphi.purge_audit() IS
	'remove audit rows older than vecphi.audit_retention, leaving a checkpoint row that keeps the chain verifiable';

CREATE FUNCTION vecphi.audit_flush() RETURNS bigint
	AS 'MODULE_PATHNAME', 'vecphi_audit_flush'
	LANGUAGE C STRICT;
COMMENT ON FUNCTION vecphi.audit_flush() IS
	'wait until every audit record this session queued is committed; returns how many are still queued cluster-wide';

CREATE FUNCTION vecphi.standby_audit_log(OUT seq bigint, OUT at timestamptz,
										 OUT db_user text, OUT action text,
										 OUT record text, OUT row_hash text,
										 OUT chain_ok boolean)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'vecphi_standby_audit_log'
	LANGUAGE C STRICT;
COMMENT ON FUNCTION vecphi.standby_audit_log() IS
	'audit records a hot standby wrote to its local append-only file (a standby cannot write tables)';

REVOKE ALL ON FUNCTION vecphi.verify_audit(bigint, text), vecphi.audit_head(),
	vecphi.purge_audit(), vecphi.standby_audit_log() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.verify_audit(bigint, text), vecphi.audit_head(),
	vecphi.purge_audit(), vecphi.standby_audit_log() TO vecphi_security_officer;

-- Erasure: scrubbing deleted rows, the erasure certificate, crypto-shredding
-- (docs/erasure.md)
---------------------------------------------------------------------------

-- Tenants whose keys were destroyed.  Their vecphi.tenants row stays, so
-- the tenant id is never reused and errors can name the tenant.
CREATE TABLE vecphi.shredded_tenants (
	tenant_id	integer PRIMARY KEY REFERENCES vecphi.tenants (tenant_id),
	tenant		text NOT NULL,
	kek_version	integer NOT NULL,
	data_keys	integer NOT NULL,
	shredded_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE vecphi.shredded_tenants IS
	'tombstones of crypto-shredded tenants: their KEKs were destroyed at the key provider and their wrapped data keys dropped';
SELECT pg_catalog.pg_extension_config_dump('vecphi.shredded_tenants', '');
REVOKE ALL ON vecphi.shredded_tenants FROM PUBLIC;
GRANT SELECT ON vecphi.shredded_tenants TO vecphi_key_admin, vecphi_security_officer;

CREATE FUNCTION vecphi.shred_tenant(tenant text) RETURNS integer
	AS 'MODULE_PATHNAME', 'vecphi_shred_tenant'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION vecphi.shred_tenant(text) IS
	'crypto-shred a tenant: destroy its KEK at the key provider and drop its wrapped data keys, so that no copy of its ciphertext can be decrypted; returns the number of data keys dropped';
REVOKE ALL ON FUNCTION vecphi.shred_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.shred_tenant(text) TO vecphi_key_admin;

-- Deletions not yet certified by a scrub: a salted digest of each deleted
-- row's subject, never the subject itself.
CREATE TABLE vecphi.pending_erasure (
	id				bigserial PRIMARY KEY,
	relid			oid NOT NULL,
	subject_digest	bytea,
	noted_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON vecphi.pending_erasure (relid);
COMMENT ON TABLE vecphi.pending_erasure IS
	'deleted rows of tables under vecphi.track_erasure() awaiting the scrub that certifies their erasure (salted subject digests only)';
REVOKE ALL ON vecphi.pending_erasure FROM PUBLIC;

-- One salt per database, made at the first tracked deletion.  pg_dump
-- carries it, so certificates can be re-checked after a restore.
CREATE TABLE vecphi.erasure_salt (
	id		boolean PRIMARY KEY DEFAULT true CHECK (id),
	salt	bytea NOT NULL CHECK (pg_catalog.length(salt) = 32)
);
COMMENT ON TABLE vecphi.erasure_salt IS
	'salt of the subject digests in vecphi.pending_erasure and in erasure audit records';
SELECT pg_catalog.pg_extension_config_dump('vecphi.erasure_salt', '');
REVOKE ALL ON vecphi.erasure_salt FROM PUBLIC;

-- Can a subject column of this type be turned into text by the extension's
-- owner without running code that somebody else controls?  Only built-in
-- types (and domains over them) can: the owner of a type of its own can
-- give it a cast to text (CREATE CAST needs only ownership of the type),
-- and a composite, range or array type of its own reaches more.
CREATE FUNCTION vecphi.erasure_subject_type_ok(typ regtype) RETURNS boolean
	LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $ok$
DECLARE
	t oid := typ;
	kind "char";
	base oid;
BEGIN
	LOOP
		SELECT y.typtype, y.typbasetype INTO kind, base
		FROM pg_catalog.pg_type y WHERE y.oid OPERATOR(pg_catalog.=) t;
		IF NOT FOUND THEN
			RETURN false;
		END IF;
		EXIT WHEN kind OPERATOR(pg_catalog.<>) 'd';
		t := base;
	END LOOP;
	-- FirstNormalObjectId: every OID below it was assigned by initdb.
	RETURN t OPERATOR(pg_catalog.<) 16384::pg_catalog.oid;
END
$ok$;
COMMENT ON FUNCTION vecphi.erasure_subject_type_ok(regtype) IS
	'true when an erasure subject column of this type is converted to text without code the table''s owner controls: built-in types and domains over them';

CREATE FUNCTION vecphi.note_erasure() RETURNS trigger
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $note$
DECLARE
	subject_type oid;
BEGIN
	INSERT INTO vecphi.erasure_salt (salt)
		SELECT pg_catalog.decode(pg_catalog.replace(
			pg_catalog.gen_random_uuid()::pg_catalog.text OPERATOR(pg_catalog.||)
			pg_catalog.gen_random_uuid()::pg_catalog.text, '-', ''), 'hex')
		WHERE NOT EXISTS (SELECT 1 FROM vecphi.erasure_salt)
		ON CONFLICT DO NOTHING;
	IF TG_NARGS OPERATOR(pg_catalog.>) 0 THEN
		-- This runs as the extension's owner, and the table's owner may have
		-- changed the column since track_erasure() checked it.
		SELECT a.atttypid INTO subject_type FROM pg_catalog.pg_attribute a
		WHERE a.attrelid OPERATOR(pg_catalog.=) TG_RELID
		  AND a.attname OPERATOR(pg_catalog.=) TG_ARGV[0]
		  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'subject column "%" of relation % does not exist',
				TG_ARGV[0], TG_RELID::pg_catalog.regclass USING ERRCODE = '42703';
		END IF;
		IF NOT vecphi.erasure_subject_type_ok(subject_type) THEN
			RAISE EXCEPTION 'subject column "%" of relation % has type %, not a built-in type',
				TG_ARGV[0], TG_RELID::pg_catalog.regclass, subject_type::pg_catalog.regtype
				USING ERRCODE = '42804',
					  DETAIL = 'The erasure digest of a subject is computed as the extension''s owner, which must not run code of the table''s owner.',
					  HINT = 'Give the subject column a built-in type such as text, or call vecphi.track_erasure() without a subject column.';
		END IF;
		EXECUTE pg_catalog.format(
			'INSERT INTO vecphi.pending_erasure (relid, subject_digest) '
			'SELECT $1, pg_catalog.sha256(s.salt OPERATOR(pg_catalog.||) '
			'pg_catalog.convert_to(o.%I::pg_catalog.text, ''UTF8'')) '
			'FROM old_rows o, vecphi.erasure_salt s', TG_ARGV[0])
			USING TG_RELID;
	ELSE
		INSERT INTO vecphi.pending_erasure (relid) SELECT TG_RELID FROM old_rows;
	END IF;
	RETURN NULL;
END
$note$;
COMMENT ON FUNCTION vecphi.note_erasure() IS
	'statement trigger of vecphi.track_erasure(): notes a salted digest of each deleted row''s subject';
REVOKE ALL ON FUNCTION vecphi.note_erasure() FROM PUBLIC;

CREATE FUNCTION vecphi.track_erasure(tbl regclass, subject_column name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $track$
DECLARE
	subject_type oid;
BEGIN
	IF tbl IS NULL THEN
		RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF (SELECT relkind FROM pg_class WHERE oid = tbl) NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = '42809';
	END IF;
	IF subject_column IS NOT NULL THEN
		SELECT atttypid INTO subject_type FROM pg_attribute
		WHERE attrelid = tbl AND attname = subject_column AND attnum > 0 AND NOT attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'column "%" of relation % does not exist', subject_column, tbl
				USING ERRCODE = '42703';
		END IF;
		IF NOT vecphi.erasure_subject_type_ok(subject_type) THEN
			RAISE EXCEPTION 'column "%" of relation % has type %, not a built-in type',
				subject_column, tbl, subject_type::regtype
				USING ERRCODE = '42804',
					  DETAIL = 'The erasure digest of a subject is computed as the extension''s owner, which must not run code of the table''s owner.',
					  HINT = 'Give the subject column a built-in type such as text.';
		END IF;
	END IF;
	IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'vecphi_erasure') THEN
		EXECUTE pg_catalog.format('DROP TRIGGER vecphi_erasure ON %s', tbl);
	END IF;
	EXECUTE pg_catalog.format(
		'CREATE TRIGGER vecphi_erasure AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
		'FOR EACH STATEMENT EXECUTE FUNCTION vecphi.note_erasure(%s)',
		tbl, CASE WHEN subject_column IS NULL THEN '' ELSE pg_catalog.quote_literal(subject_column) END);
END
$track$;
COMMENT ON FUNCTION vecphi.track_erasure(regclass, name) IS
	'note every deleted row of the table (with a salted digest of its subject column) so that the VACUUM or vecphi.scrub() that erases it certifies it in the audit log';

CREATE FUNCTION vecphi.erasure_digest(subjects text[]) RETURNS text
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $$
		SELECT 'sha256:' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.sha256(
			pg_catalog.string_agg(DISTINCT d, ''::pg_catalog.bytea ORDER BY d)), 'hex')
		FROM (SELECT pg_catalog.sha256(s.salt OPERATOR(pg_catalog.||)
				pg_catalog.convert_to(x, 'UTF8')) AS d
			  FROM pg_catalog.unnest(subjects) x, vecphi.erasure_salt s) q
	$$;
COMMENT ON FUNCTION vecphi.erasure_digest(text[]) IS
	'the subjects digest an erasure audit record shows for these subject ids: lets an auditor check a certificate';
REVOKE ALL ON FUNCTION vecphi.erasure_digest(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vecphi.erasure_digest(text[]) TO vecphi_security_officer;

CREATE FUNCTION vecphi.scrub(tbl regclass,
	OUT pages bigint, OUT pages_scrubbed bigint, OUT bytes_scrubbed bigint,
	OUT index_elements_removed bigint, OUT pages_pending bigint,
	OUT complete boolean)
RETURNS record
	AS 'MODULE_PATHNAME', 'vecphi_scrub'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION vecphi.scrub(regclass) IS
	'erase deleted rows now: prune and zero the free space of the table''s heap and TOAST pages (WAL-logged), remove their ehnsw elements, and record the erasure in the audit log; table owner only';
