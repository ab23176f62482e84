# vecphi: the audit writer (a background worker that connects as the
# bootstrap superuser) does not run under the settings its database's owner
# chose.
#
# The owner of database privdb, an ordinary role, plants look-alikes of
# the names vecphi's SQL could use (operators = < <= > >=, functions count,
# encode, domains text, bytea, int8, timestamptz) in a schema of its own,
# each calling trap.pwn(), which writes down the role it ran as and, run by
# a superuser, makes the owner a superuser.  Then, with ALTER DATABASE ...
# SET (which a database owner may run):
#  1. it points the database's search_path at that schema and runs VACUUM
#     (the whole database) and vecphi.scrub() on a table of its own whose
#     rows it deleted: the erasure records are written and certified, and
#     nothing planted runs as another role;
#  2. it also makes the database's transactions read-only by default: the
#     audit writer still writes the database's records and the chain
#     verifies.
# The owner must have gained nothing.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('privsql_worker');
$node->append_conf('postgresql.conf', "autovacuum = off\n");
$node->start;

$node->safe_psql(
	'postgres', q{
	CREATE ROLE priv_dbowner LOGIN;
	CREATE DATABASE privdb OWNER priv_dbowner;
});
$node->safe_psql(
	'privdb', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('priv_w');
	CREATE TABLE notes (id int PRIMARY KEY, emb evector(3));
	GRANT SELECT, INSERT ON notes TO priv_dbowner;
});

# The owner's traps, made by the owner.  Every planted object returns the
# right answer after calling trap.pwn().
$node->safe_psql(
	'privdb', q{
	CREATE SCHEMA trap;
	CREATE TABLE trap.hits (obj text, ran_as text);
	GRANT USAGE ON SCHEMA trap TO PUBLIC;
	GRANT INSERT ON trap.hits TO PUBLIC;
	CREATE FUNCTION trap.pwn(obj pg_catalog.text) RETURNS boolean
	LANGUAGE plpgsql SET search_path = pg_catalog AS $$
	BEGIN
		INSERT INTO trap.hits VALUES (obj, CURRENT_USER);
		IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r
			WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
			EXECUTE 'ALTER ROLE priv_dbowner SUPERUSER';
		END IF;
		RETURN true;
	END
	$$;
	CREATE FUNCTION trap.eq8(int8, int8) RETURNS boolean LANGUAGE plpgsql AS
		$$BEGIN PERFORM trap.pwn('= (int8, int8)'); RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
	CREATE OPERATOR trap.= (LEFTARG = int8, RIGHTARG = int8, FUNCTION = trap.eq8);
	CREATE FUNCTION trap.lt8(int8, int8) RETURNS boolean LANGUAGE plpgsql AS
		$$BEGIN PERFORM trap.pwn('< (int8, int8)'); RETURN $1 OPERATOR(pg_catalog.<) $2; END$$;
	CREATE OPERATOR trap.< (LEFTARG = int8, RIGHTARG = int8, FUNCTION = trap.lt8);
	CREATE FUNCTION trap.gt8(int8, int8) RETURNS boolean LANGUAGE plpgsql AS
		$$BEGIN PERFORM trap.pwn('> (int8, int8)'); RETURN $1 OPERATOR(pg_catalog.>) $2; END$$;
	CREATE OPERATOR trap.> (LEFTARG = int8, RIGHTARG = int8, FUNCTION = trap.gt8);
	CREATE FUNCTION trap.eqt(text, text) RETURNS boolean LANGUAGE plpgsql AS
		$$BEGIN PERFORM trap.pwn('= (text, text)'); RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
	CREATE OPERATOR trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.eqt);
	CREATE FUNCTION trap.encode(bytea, text) RETURNS text LANGUAGE plpgsql AS
		$$BEGIN PERFORM trap.pwn('encode'); RETURN pg_catalog.encode($1, $2); END$$;
	CREATE FUNCTION trap.count_final(int8) RETURNS int8 LANGUAGE plpgsql AS
		$$BEGIN PERFORM trap.pwn('count'); RETURN $1; END$$;
	CREATE FUNCTION trap.count_step(int8) RETURNS int8 LANGUAGE sql AS
		$$SELECT $1 OPERATOR(pg_catalog.+) 1$$;
	CREATE AGGREGATE trap.count(*) (SFUNC = trap.count_step, STYPE = int8,
		INITCOND = '0', FINALFUNC = trap.count_final);
	CREATE FUNCTION trap.eqoid(oid, oid) RETURNS boolean LANGUAGE plpgsql AS
		$$BEGIN PERFORM trap.pwn('= (oid, oid)'); RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
	CREATE OPERATOR trap.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = trap.eqoid);
	CREATE FUNCTION trap.le8(int8, int8) RETURNS boolean LANGUAGE plpgsql AS
		$$BEGIN PERFORM trap.pwn('<= (int8, int8)'); RETURN $1 OPERATOR(pg_catalog.<=) $2; END$$;
	CREATE OPERATOR trap.<= (LEFTARG = int8, RIGHTARG = int8, FUNCTION = trap.le8);
	CREATE DOMAIN trap.text AS pg_catalog.text CHECK (trap.pwn('trap.text'));
	CREATE DOMAIN trap.bytea AS pg_catalog.bytea CHECK (trap.pwn('trap.bytea'));
	CREATE DOMAIN trap.int8 AS pg_catalog.int8 CHECK (trap.pwn('trap.int8'));
	CREATE DOMAIN trap.timestamptz AS pg_catalog.timestamptz CHECK (trap.pwn('trap.timestamptz'));
}, extra_params => [ '-U', 'priv_dbowner' ]);

# The owner's database defaults reach a new writer only: make the one
# that served the set-up leave (it leaves when idle anyway).
sub restart_writer
{
	$node->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'vecphi audit writer'"
	);
}

# What the owner gained: is it a superuser, and did a planted object run as
# another role?
sub gained
{
	return $node->safe_psql('postgres',
		"SELECT rolsuper FROM pg_roles WHERE rolname = 'priv_dbowner'")
	  . ' '
	  . $node->safe_psql(
		'privdb', q{
		SET search_path = pg_catalog, public;
		SELECT coalesce(string_agg(DISTINCT obj || ' as ' || ran_as, ', '), 'none')
		FROM trap.hits WHERE ran_as <> 'priv_dbowner';
	});
}

my $claims = VecphiCheck::claims_do(tenant => 'priv_w', role => 'clinician', sub => 'dr_w');

# 1. The owner, not a superuser, points its database's search_path at its
#    schema, then deletes rows of a table of its own (tracked for erasure
#    by the DBA) and runs VACUUM on the whole database and vecphi.scrub():
#    its sessions, and the audit writer, take that search_path.
$node->safe_psql('privdb',
	'ALTER DATABASE privdb SET search_path = trap, pg_catalog, public;',
	extra_params => [ '-U', 'priv_dbowner' ]);
is($node->safe_psql('privdb', 'SHOW search_path'),
	'trap, pg_catalog, public', 'the database owner set the search_path');
restart_writer();

$node->safe_psql(
	'privdb', q{
	SET search_path = public, pg_catalog;
	CREATE TABLE public.owner_notes (id int PRIMARY KEY, patient text, emb evector(3))
		WITH (autovacuum_enabled = off);
	ALTER TABLE owner_notes OWNER TO priv_dbowner;
	SELECT vecphi.track_erasure('owner_notes', 'patient');
});
my $owner_sql = qq{
	BEGIN;
	$claims
	INSERT INTO owner_notes SELECT g, 'p' || g, ARRAY[g, g, g]::real[]
		FROM generate_series(1, 20) g;
	DELETE FROM owner_notes;
	COMMIT;
};
# (psql, not safe_psql: the checks below must run whatever happens here.)
$node->psql('privdb', $owner_sql . 'VACUUM;',
	extra_params => [ '-U', 'priv_dbowner' ]);
$node->psql('privdb', $owner_sql . "SELECT complete FROM vecphi.scrub('owner_notes');",
	extra_params => [ '-U', 'priv_dbowner' ]);
is( $node->safe_psql(
		'privdb', q{
	SET search_path = pg_catalog, public;
	SELECT string_agg(split_part(detail, ':', 1), ',' ORDER BY seq) FROM vecphi.audit_log
	WHERE action = 'erasure' AND relation LIKE '%owner_notes' AND detail LIKE '%subjects sha256:%';
}), 'vacuum,scrub', 'VACUUM and scrub() of the owner\'s table wrote certified erasure records');
is(gained(), 'f none', 'VACUUM and scrub() under the database search_path: the owner gained nothing');

# 2. The owner also makes its database's transactions read-only by default
#    (and lock waits fail at once).  The writer still writes.
$node->safe_psql(
	'privdb', q{
	ALTER DATABASE privdb SET default_transaction_read_only = on;
	ALTER DATABASE privdb SET lock_timeout = '1ms';
}, extra_params => [ '-U', 'priv_dbowner' ]);
is($node->safe_psql('privdb', 'SHOW default_transaction_read_only'),
	'on', 'the database owner made transactions read-only by default');
restart_writer();

# Records of privdb: a key event, an insert and decryption under claims.
my ($stdout, $stderr) = ('', '');
my $ret = $node->psql(
	'privdb', qq{
	SET default_transaction_read_only = off;
	SET statement_timeout = '60s';
	SELECT vecphi.rotate_dek('priv_w');
	BEGIN;
	$claims
	INSERT INTO notes VALUES (1, '[1,2,3]'), (2, '[4,5,6]');
	SELECT pg_catalog.array_length(vecphi.decrypt(emb), 1) FROM notes WHERE id OPERATOR(pg_catalog.=) 1;
	COMMIT;
	SELECT vecphi.audit_flush();
},
	stdout => \$stdout,
	stderr => \$stderr,
	on_error_stop => 1);
is($ret, 0, 'statements that need the audit writer succeed');
note("stderr: $stderr") if $stderr ne '';

is( $node->safe_psql(
		'privdb', q{
	SET search_path = pg_catalog, public;
	SELECT string_agg(DISTINCT action, ',' ORDER BY action) FROM vecphi.audit_log
	WHERE action IN ('key_rotate_dek', 'decrypt');
}), 'decrypt,key_rotate_dek', 'the writer wrote the records of privdb');
is( $node->safe_psql(
		'privdb', q{
	SET search_path = pg_catalog, public;
	SELECT ok FROM vecphi.verify_audit();
}), 't', 'the chain verifies');
is(gained(), 'f none', 'the owner gained nothing');

$node->stop;
done_testing();
