# vecphi: the client helpers against a live server with the real drivers.
#
# Starts a server, creates database clinic (tenants st_marys and county, a
# protected table notes with an ehnsw index, login role app granted what an
# application needs, one note in a category the app's role is not granted)
# and runs
#   - test/clients/test_python.py with psycopg 3 (Debian's python3-psycopg,
#     numpy from python3-numpy): clients/python and examples/;
#   - test/clients/node/test.js with node-postgres (`pg` from npm, installed
#     by test/setup.sh into test/clients/node/node_modules): clients/node.
# A driver that is not installed is a skip with the reason, not a pass.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use IPC::Run qw(run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $src = VecphiTest::source_dir();
my $node = VecphiTest::new_node('clients');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE clinic');
my $psych_claims = VecphiCheck::claims_do(
	tenant => 'st_marys',
	role => 'psychiatrist',
	sub => 'dr_psych');
$node->safe_psql(
	'clinic', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('st_marys');
	SELECT vecphi.create_tenant('county');
	CREATE ROLE app LOGIN;
	CREATE TABLE notes (
		id        bigserial PRIMARY KEY,
		tenant    text NOT NULL DEFAULT vecphi.tenant(),
		category  text NOT NULL,
		body      etext,
		embedding evector(3));
	SELECT vecphi.protect('notes', 'tenant', 'category');
	CREATE INDEX notes_embedding_idx ON notes USING ehnsw (embedding evector_l2_ops);
	GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO app;
	GRANT USAGE ON SEQUENCE notes_id_seq TO app;
	SET ROLE vecphi_security_officer;
	INSERT INTO vecphi.role_categories VALUES ('clinician', 'clinical'), ('psychiatrist', 'psych');
	RESET ROLE;
	BEGIN;
	$psych_claims
	INSERT INTO notes (category, body, embedding) VALUES ('psych', 'sealed psych note', '[500,500,500]');
	COMMIT;
});

# The drivers connect as the test's OS user over the node's socket.
my %env = (
	PGHOST => $node->host,
	PGPORT => $node->port,
	PGUSER => scalar(getpwuid($<)),
	VECPHI_REPO => $src,
	VECPHI_SECRET_FILE => VecphiTest::secret_file($node),
);

# Run a client test program; pass when it exits 0, with its output as a diag.
sub run_client
{
	my ($name, @cmd) = @_;
	my ($out, $err) = ('', '');
	local @ENV{ keys %env } = values %env;
	my $ok = run \@cmd, '>', \$out, '2>', \$err;
	note("$name output:\n$out$err");
	ok($ok, "$name: every test passed") or diag("$out$err");
	return "$out$err";
}

SKIP:
{
	my $has_psycopg = system('/usr/bin/python3', '-c', 'import psycopg, numpy') == 0;
	skip 'psycopg 3 or numpy missing (Debian packages python3-psycopg, python3-numpy; test/setup.sh installs them)', 2
	  unless $has_psycopg;
	my $out = run_client('psycopg 3', '/usr/bin/python3', "$src/test/clients/test_python.py");
	like($out, qr/^Ran (\d+) tests/m, 'psycopg 3: the tests ran');
}

SKIP:
{
	my $has_node = system('sh', '-c', 'command -v node >/dev/null') == 0;
	my $has_pg = -f "$src/test/clients/node/node_modules/pg/package.json";
	skip 'node missing (Debian package nodejs)', 2 unless $has_node;
	skip 'node-postgres missing: test/setup.sh installs it with npm ci into test/clients/node (needs the npm registry)', 2
	  unless $has_pg;
	my $out = run_client('node-postgres', 'node', '--test', "$src/test/clients/node/test.js");
	like($out, qr/^# pass [1-9]\d*$/m, 'node-postgres: the tests ran');
}

$node->stop;
done_testing();
