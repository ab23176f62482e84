# vecphi: no plaintext reaches the server log through an input or decrypt
# error (issue #12).
#
# With every error logged verbosely (stderr and csvlog), the test makes
# evector and etext input fail on plaintext in COPY (no claims, bad syntax,
# NaN, a dimension mismatch) and decrypts etext whose plaintext is not valid
# UTF-8 (sealed in a LATIN1 or SQL_ASCII database; simulated here by a
# binary-coercible cast from bytea, since tenants are per database).  The
# log must hold none of the plaintexts, and not the bytes of the invalid
# text in the "0xe9 0x20 0x6f" form the core uses.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('inputlog');
$node->append_conf(
	'postgresql.conf', q{
log_min_error_statement = error
log_error_verbosity = verbose
log_destination = 'stderr,csvlog'
logging_collector = on
log_directory = 'log'
});
$node->start;
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('inlog');
	CREATE TABLE notes (id int, body etext, v evector(3));
});
my $claims = VecphiTest::claims_sql(tenant => 'inlog', role => 'clinician', sub => 'dr_in');

# Plaintexts that must never be logged.
my @secrets = (
	'Patient Quokka reports chest pain',
	'0.1234567,0.7654321,0.5555555',
	'0.3141592,0.2718281,oops',
	'0.1111111,NaN,0.2222222',
	'0.9999991,0.8888882',
	'Geheimnis Wombat',
);

# COPY FROM STDIN of plaintext rows that fail in the input functions.
my @copies = (
	[ 'no claims, etext', '', "1\t$secrets[0]\t\\N\n" ],
	[ 'no claims, evector', '', "2\t\\N\t[$secrets[1]]\n" ],
	[ 'syntax error', $claims, "3\t\\N\t[$secrets[2]]\n" ],
	[ 'NaN', $claims, "4\t\\N\t[$secrets[3]]\n" ],
	[ 'dimension mismatch', $claims, "5\t\\N\t[$secrets[4]]\n" ],
	[ 'etext before a bad evector', $claims, "6\t$secrets[5]\t[1,2]\n" ],
);
for my $c (@copies)
{
	my ($name, $pre, $data) = @$c;
	# psql reads the script from its stdin: the rows follow the COPY.
	my ($ret, $out, $err) = $node->psql('postgres',
		"BEGIN;\n$pre\nCOPY notes FROM STDIN;\n$data\\.\nCOMMIT;\n");
	like($err, qr/ERROR/, "COPY fails: $name");
	like($err, qr/COPY notes, line 1, column \w+: \(value not shown\)/,
		"$name: the context names line and column, not the value");
}

# Text that is not valid UTF-8 inside the envelope: "café olé" in LATIN1,
# and a zero byte.
$node->safe_psql(
	'postgres', qq{
	CREATE CAST (bytea AS text) WITHOUT FUNCTION;
	BEGIN; $claims
	INSERT INTO notes VALUES (10, vecphi.encrypt('\\x636166e9206f6ce9'::bytea::text)),
		(11, vecphi.encrypt('\\x5365637265740041'::bytea::text));
	COMMIT;
	DROP CAST (bytea AS text);
});
for my $id (10, 11)
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"BEGIN; $claims SELECT vecphi.decrypt(body) FROM notes WHERE id = $id; COMMIT;");
	like($err, qr/etext value is not valid text in encoding "UTF8"/,
		"decrypting row $id fails with vecphi's message");
	unlike($err, qr/0x[0-9a-f]{2}/, "row $id: the client's error shows no bytes");
}

$node->safe_psql('postgres', 'SELECT pg_rotate_logfile()');
my $log = slurp_file($node->logfile);
for my $f (glob($node->data_dir . '/log/*'))
{
	$log .= slurp_file($f);
}
like($log, qr/value not shown/, 'the COPY errors were logged');
like($log, qr/not valid text in encoding/, 'the decrypt errors were logged');
my $leaks = 0;
for my $s (@secrets, 'Quokka', 'Wombat')
{
	if (index($log, $s) >= 0)
	{
		$leaks++;
		diag("log holds plaintext: $s");
	}
}
is($leaks, 0, 'no plaintext of a failed input is in the server log');
unlike($log, qr/0xe9|0x00|invalid byte sequence/, 'no bytes of the invalid decrypted text are in the log');

$node->stop;
done_testing();
