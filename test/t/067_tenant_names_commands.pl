# vecphi: tenant names never become options or shell code in a key
# provider's command (issue #11, section 6).
#
# vecphi.kek_command and vecphi.kek_destroy_command get the tenant name for
# %t.  A script standing in for a KMS client records the arguments it is
# given.  Names that start with "-" (-rf, --help, -) would reach it as
# options; names with shell characters (a;b, $(id), `id`) would run code.
# create_tenant() refuses all of them, so the script never sees them; a
# valid name reaches it as one argument, also after "--" in the template.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('names');
my $kms = $node->basedir . '/kms';
mkdir $kms, 0700 or die "mkdir $kms: $!";
my $calls = "$kms/calls.log";
my $pwned = "$kms/pwned";

# The "KMS client": logs each argument on its own line, notes an option,
# prints a fixed key.
VecphiCheck::write_file(
	"$kms/kms.sh", qq{#!/bin/sh
for a in "\$@"; do printf 'arg[%s]\\n' "\$a" >>'$calls'; done
case "\$1" in -*) printf 'OPTION %s\\n' "\$1" >>'$calls' ;; esac
echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
}, 0700);
VecphiCheck::write_file("$kms/destroy.sh", qq{#!/bin/sh
for a in "\$@"; do printf 'destroy[%s]\\n' "\$a" >>'$calls'; done
}, 0700);
$node->append_conf(
	'postgresql.conf', qq{
vecphi.key_directory = ''
vecphi.kek_command = '$kms/kms.sh %t %v'
vecphi.kek_destroy_command = '$kms/destroy.sh -- %t %v'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION vecphi');

my @hostile = ('-rf', '--help', '-', '-x;touch ' . $pwned, 'a;b', 'a;touch ' . $pwned,
	'$(id)', '$(touch ' . $pwned . ')', '`id`', 'a|b', 'a b', "a'b", 'a&b', '*');
for my $name (@hostile)
{
	(my $lit = $name) =~ s/'/''/g;
	like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.create_tenant('$lit')"),
		qr/^22023: invalid tenant name/, "create_tenant('$name') is refused (22023)");
	like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.rotate_kek('$lit')"),
		qr/^22023: invalid tenant name/, "rotate_kek('$name') is refused");
	like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.shred_tenant('$lit')"),
		qr/^22023: invalid tenant name/, "shred_tenant('$name') is refused");
}
my $log = -e $calls ? slurp_file($calls) : '';
unlike($log, qr/OPTION/, 'the provider command never got an argument that starts with "-"');
unlike($log, qr/arg\[-/, 'no argument starting with "-" at all');
ok(!-e $pwned, 'no shell code in a tenant name ran');

# Valid names, with a leading "_" and inner hyphens, reach the commands as
# single arguments.
for my $name ('_lead', 'a-b_c', 'Z9')
{
	is(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.create_tenant('$name')"),
		'no error', "create_tenant('$name') works");
}
is(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.shred_tenant('a-b_c')"),
	'no error', 'shred_tenant runs the destroy command');
$log = slurp_file($calls);
like($log, qr/^arg\[_lead\]\narg\[1\]$/m, 'kek_command got "_lead" and "1" as two arguments');
like($log, qr/^arg\[a-b_c\]\narg\[1\]$/m, 'and "a-b_c", "1"');
like($log, qr/^destroy\[--\]\ndestroy\[a-b_c\]\ndestroy\[1\]$/m,
	'kek_destroy_command got "--", "a-b_c", "1"');

# Several key administrations in one statement, each in its own
# subtransaction, some failing.
is( VecphiCheck::error_of(
		$node, 'postgres', q{
	DO $$
	DECLARE n text;
	BEGIN
		FOREACH n IN ARRAY ARRAY['-bad', 'many_1', 'a;b', 'many_2'] LOOP
			BEGIN
				PERFORM vecphi.create_tenant(n);
			EXCEPTION WHEN invalid_parameter_value THEN
				NULL;
			END;
		END LOOP;
	END $$;}),
	'no error',
	'create_tenant in subtransactions of one statement, some refused');
is($node->safe_psql('postgres', q{SELECT string_agg(tenant, ',' ORDER BY tenant) FROM vecphi.tenants WHERE tenant LIKE 'many%' OR tenant LIKE '-%'}),
	'many_1,many_2', 'only the valid names became tenants');

# Tenants created first, then refused names, each in its own subtransaction
# of one statement, with the embedded provider: the list of pending key
# files was rebuilt in the memory of an aborted subtransaction, and the
# commit that followed crashed the backend (found with the names above).
$node->append_conf('postgresql.conf',
	"vecphi.kek_command = ''\nvecphi.key_directory = '" . VecphiTest::key_dir($node) . "'\n");
$node->reload;
$node->safe_psql(
	'postgres', q{
	CREATE FUNCTION try_create(name text) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM vecphi.create_tenant(name);
		RETURN 'created';
	EXCEPTION WHEN OTHERS THEN
		RETURN SQLSTATE;
	END $$;});
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(r, ',') FROM (
		SELECT try_create(name) AS r
		FROM (VALUES ('0a'), ('0b'), ('0c'), ('a;b'), ('$(id)'), ('`id`'), ('a|b'),
			('a b'), ('a''b'), ('a"b'), ('~root'), ('-x'), ('--y')) AS t(name)) AS s;}),
	'created,created,created,22023,22023,22023,22023,22023,22023,22023,22023,22023,22023',
	'tenants created, then names refused, in subtransactions of one statement: no crash');
is($node->safe_psql('postgres', q{SELECT count(*) FROM vecphi.tenants WHERE tenant IN ('0a', '0b', '0c')}),
	'3', 'the three tenants exist');

$node->stop;
done_testing();
