# vecphi monitoring: vecphi.stat_keys with the vecphi.kek_command provider.
#
# The "KMS" is a directory of hex key files read by a small script.  Its
# calls and failures are counted by provider kind, with the last
# failure's time; a failing command prints a marker on stdout and stderr,
# which must appear neither in the view nor in the server log (nor the
# key).  A failing vecphi.kek_destroy_command is counted as its own kind.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('monkms');
my $kms = $node->basedir . '/kms';
mkdir $kms, 0700 or die "mkdir $kms: $!";
my $kek = 'cd' x 32;
VecphiCheck::write_file("$kms/t_k.1.hex", "$kek\n");
# Prints the key if there is one; otherwise a marker on both streams, exit 3.
my $script = "$kms/get-kek.sh";
VecphiCheck::write_file(
	$script, qq{#!/bin/sh
if [ -f "$kms/\$1.\$2.hex" ]; then cat "$kms/\$1.\$2.hex"; exit 0; fi
echo "KMS-OUTPUT-MARKER-stdout"; echo "KMS-OUTPUT-MARKER-stderr" >&2; exit 3
});
chmod 0700, $script or die $!;
$node->append_conf(
	'postgresql.conf', qq{
vecphi.key_directory = ''
vecphi.kek_command = '$script %t %v'
vecphi.kek_destroy_command = 'false'
});
$node->start;
my $claims = VecphiCheck::claims_do(tenant => 't_k', role => 'clinician', sub => 'dr_k');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t_k');
	CREATE TABLE notes (id int PRIMARY KEY, body etext);
	BEGIN;
	$claims
	INSERT INTO notes VALUES (1, vecphi.encrypt('kms note'));
	COMMIT;
	SELECT vecphi.stat_reset();
});

my $decrypt = "BEGIN; $claims SELECT vecphi.decrypt(body) FROM notes WHERE id = 1; COMMIT;";
is(VecphiCheck::error_of($node, 'postgres', $decrypt), 'no error', 'decrypts through the command');
is( $node->safe_psql(
		'postgres',
		'SELECT kek_command_calls, kek_command_failures, key_directory_reads, dek_cache_misses, last_failure IS NULL FROM vecphi.stat_keys'
	),
	'1|0|0|1|t',
	'one command call for one data key unwrapped, no failure');

# The KMS loses the key.
rename "$kms/t_k.1.hex", "$kms/t_k.1.hex.away" or die $!;
like(VecphiCheck::error_of($node, 'postgres', $decrypt),
	qr/^58P01: key-encryption key of tenant "t_k" is not available/, 'the command fails');
is( $node->safe_psql(
		'postgres',
		q{SELECT kek_command_calls, kek_command_failures, last_failure_provider,
			last_failure > now() - interval '1 hour' FROM vecphi.stat_keys}),
	'2|1|kek_command|t',
	'the failure is counted, by provider kind, with its time');

# A failing destroy command is its own kind.
like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.shred_tenant('t_k')"),
	qr/^58000: vecphi.kek_destroy_command failed/, 'the destroy command fails');
is( $node->safe_psql(
		'postgres',
		'SELECT kek_destroy_command_calls, kek_destroy_command_failures, last_failure_provider FROM vecphi.stat_keys'
	),
	'1|1|kek_destroy_command',
	'counted as kek_destroy_command');

my $view = $node->safe_psql('postgres', 'SELECT * FROM vecphi.stat_keys');
unlike($view, qr/KMS-OUTPUT-MARKER|\Q$kek\E/i, 'no command output and no key in the view');
my $log = slurp_file($node->logfile);
unlike($log, qr/KMS-OUTPUT-MARKER-stdout/, 'the command\'s stdout is not in the server log');
unlike($log, qr/\Q$kek\E/i, 'no key in the server log');

# A pg_monitor member reads it; an ordinary role is refused.
$node->safe_psql('postgres',
	'CREATE ROLE mon LOGIN IN ROLE pg_monitor; CREATE ROLE plain LOGIN;');
is($node->safe_psql('postgres', 'SELECT kek_command_failures FROM vecphi.stat_keys',
		extra_params => [ '-U', 'mon' ]),
	'1', 'pg_monitor reads vecphi.stat_keys');
like(
	VecphiCheck::error_of($node, 'postgres', 'SET ROLE plain; SELECT * FROM vecphi.stat_keys'),
	qr/^42501: permission denied/,
	'an ordinary role does not');

$node->stop;
done_testing();
