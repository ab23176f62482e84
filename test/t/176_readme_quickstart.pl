# vecphi: README.md's "Getting started" runs as written.
#
# The blocks marked <!-- quickstart: NAME --> in README.md are taken out of
# the README itself and run in order on a fresh server:
#   admin.sql  with psql, as the superuser, in database clinic;
#   token.sh   with bash (the secret file's path replaced by the node's);
#   app.py     with psycopg 3 (PYTHONPATH=clients/python) as role app;
#   app.js     with node-postgres (when installed) as role app.
# Each must succeed, and what the applications print must hold the note the
# Python block inserted, decrypted.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use IPC::Run qw(run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiTest;

my $src = VecphiTest::source_dir();
my $readme = slurp_file("$src/README.md");

my %block;
while ($readme =~ /<!-- quickstart: (\S+) -->\n```\w*\n(.*?)```/sg)
{
	$block{$1} = $2;
}
is_deeply([ sort keys %block ], [qw(admin.sql app.js app.py token.sh)],
	'README.md has the four quickstart blocks');

my $node = VecphiTest::new_node('quickstart');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE clinic');

my %env = (
	PGHOST => $node->host,
	PGPORT => $node->port,
	PGUSER => scalar(getpwuid($<)),
	PYTHONPATH => "$src/clients/python",
	NODE_PATH => "$src/test/clients/node/node_modules",
);
local @ENV{ keys %env } = values %env;

# Run a command in the source tree; return (ok, stdout, stderr).
sub run_in_src
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	my $ok = run \@cmd, '>', \$out, '2>', \$err, init => sub { chdir $src or die "chdir $src: $!" };
	return ($ok, $out, $err);
}

# admin.sql
my ($ok, $out, $err) = run_in_src('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'clinic',
	'-c', $block{'admin.sql'});
ok($ok, 'admin.sql runs') or diag($err);

# token.sh: the same command, with this node's secret file.
my $token_sh = $block{'token.sh'};
my $secret = VecphiTest::secret_file($node);
ok($token_sh =~ s{/etc/postgresql/vecphi-jwt-secret}{$secret}g, 'token.sh names the secret file');
($ok, $out, $err) = run_in_src('bash', '-ec', $token_sh . "\nprintf '%s' \"\$TOKEN\"\n");
ok($ok, 'token.sh runs') or diag($err);
my $token = $out;
like($token, qr/^[\w-]+\.[\w-]+\.[\w-]+$/, 'token.sh mints a token');
local $ENV{TOKEN} = $token;

SKIP:
{
	skip 'psycopg 3 missing (Debian package python3-psycopg)', 2
	  unless system('/usr/bin/python3', '-c', 'import psycopg') == 0;
	($ok, $out, $err) = run_in_src('/usr/bin/python3', '-c', $block{'app.py'});
	ok($ok, 'app.py runs') or diag($err);
	like($out, qr/^\(1, 'Patient reports chest pain'\)$/m,
		'app.py prints the note it wrote, decrypted');
}

SKIP:
{
	skip 'node-postgres missing (test/setup.sh installs it with npm ci)', 2
	  unless -f "$src/test/clients/node/node_modules/pg/package.json";
	# require('./clients/node') is relative to the script: put it at the top.
	my $app_js = "$src/quickstart_app.js";
	open my $fh, '>', $app_js or die "$app_js: $!";
	print $fh $block{'app.js'};
	close $fh;
	($ok, $out, $err) = run_in_src('node', $app_js);
	ok($ok, 'app.js runs') or diag($err);
	like($out, qr/body: 'Patient reports chest pain'/, 'app.js prints the note, decrypted');
}

# Nothing the quickstart did let the token into the server's log.
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$token\E/, 'the token never reached the server log');

$node->stop;
done_testing();
