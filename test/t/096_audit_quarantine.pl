# vecphi: one audit record the writer cannot write is quarantined; the
# audit goes on.
#
# Before issue #12 the audit writer wrote every queued record in one
# transaction: a record whose INSERT failed aborted the batch, the writer
# died, the next writer read the same record and died again, for ever; every
# later record waited behind it and audited statements failed (fail
# closed, but the audit stopped for the whole database).
#
# A superuser (only one can) adds a CHECK constraint to vecphi.audit_log
# that refuses a row whose detail names the tenant "poison"; creating that
# tenant queues a key_create record the writer cannot insert.  Now the
# writer retries the batch one record per subtransaction, writes the bad
# record to vecphi_audit/quarantine-<database oid>.log (fsynced) and an
# audit_quarantine record (with the record's SHA-256) into the chain, and
# goes on: the records before and after it are written, the chain
# verifies, and the quarantine file holds the record.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use Digest::SHA qw(sha256_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiTest;

my $node = VecphiTest::new_node('quarantine');
$node->start;
$node->safe_psql(
	'postgres', q{
	SET client_min_messages = warning;
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('first');
	SELECT vecphi.audit_flush();
	ALTER TABLE vecphi.audit_log ADD CONSTRAINT audit_test_guard
		CHECK (detail IS NULL OR detail NOT LIKE '%poison%');
});

my ($ret, $out, $err) = $node->psql(
	'postgres', q{
	SET vecphi.audit_timeout = '20s';
	SELECT vecphi.create_tenant('poison');
	SELECT vecphi.create_tenant('good');
	SELECT vecphi.audit_flush();
}, on_error_stop => 1);
is($ret, 0, 'the records queued with and after the bad one are committed');
note("stderr: $err") if $err ne '';

is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(t || '=' || (SELECT count(*) FROM vecphi.audit_log
		WHERE action = 'key_create' AND detail LIKE '%' || t || '%'), ',' ORDER BY t)
	FROM unnest(ARRAY['first', 'good', 'poison']) AS t}),
	'first=1,good=1,poison=0',
	'the records before and after the bad one are written, the bad one is not');

my $q = $node->safe_psql(
	'postgres', q{
	SELECT rows_returned || '|' || outcome || '|' || detail FROM vecphi.audit_log
	WHERE action = 'audit_quarantine'});
my @q = split /\n/, $q;
is(scalar @q, 1, 'one audit_quarantine record in the chain');
like($q[0] // '', qr/^1\|error\|.*quarantine-\d+\.log \(record sha256 [0-9a-f]{64}\): 23514: /,
	'... naming the file, the record\'s hash and the error (check_violation)');
is($node->safe_psql('postgres', 'SELECT ok FROM vecphi.verify_audit()'),
	't', 'the chain verifies');

my $oid = $node->safe_psql('postgres',
	q{SELECT oid FROM pg_database WHERE datname = 'postgres'});
my $file = $node->data_dir . "/vecphi_audit/quarantine-$oid.log";
ok(-f $file, 'the quarantine file exists');
my @lines = -f $file ? split(/\n/, slurp_file($file)) : ();
is(scalar @lines, 1, '... with one line');
my ($at, $sha, $state, $hex) = split /\t/, ($lines[0] // "\t\t\t");
my $payload = pack('H*', $hex // '');
is(sha256_hex($payload), $sha, 'the line\'s hash is the hash of its record');
like($q[0] // '', qr/sha256 \Q$sha\E/, 'the chain\'s record names the same hash');
like($payload, qr/poison/, 'the quarantined record is the bad key_create record');
is($state, '23514', 'the SQLSTATE is recorded');
is((stat($file))[2] & 07777, 0600, 'the quarantine file is private (0600)');

# The writer goes on with later records, in normal batches.
like( $node->safe_psql(
		'postgres', q{
	SELECT vecphi.create_tenant('later');
	SELECT vecphi.audit_flush();
	SELECT count(*) FROM vecphi.audit_log WHERE action = 'key_create' AND detail LIKE '%later%';
}), qr/\n1$/, 'later records are written');
is($node->safe_psql('postgres', 'SELECT ok FROM vecphi.verify_audit()'),
	't', 'the chain still verifies');

# A failure that is not one record's (the quarantine record cannot be
# written either) stops the writer, records stay queued: fail closed.
$node->safe_psql(
	'postgres', q{
	ALTER TABLE vecphi.audit_log ADD CONSTRAINT audit_test_all CHECK (false) NOT VALID;
});
($ret, $out, $err) = $node->psql(
	'postgres', q{
	SET vecphi.audit_timeout = '3s';
	SELECT vecphi.create_tenant('blocked');
	SELECT vecphi.audit_flush();
});
isnt($ret, 0, 'when nothing can be written, audited statements fail (fail closed)');
like($err, qr/not written within vecphi.audit_timeout/, '... waiting for the writer');
my @after = split(/\n/, slurp_file($file));
is(scalar @after, 1, '... and nothing more is quarantined');
$node->safe_psql('postgres', 'ALTER TABLE vecphi.audit_log DROP CONSTRAINT audit_test_all');
# The next record queued starts a writer again; it writes both.
like( $node->safe_psql(
		'postgres', q{
	SET vecphi.audit_timeout = '20s';
	SELECT vecphi.create_tenant('unblock');
	SELECT vecphi.audit_flush();
	SELECT count(*) FROM vecphi.audit_log WHERE action = 'key_create'
		AND (detail LIKE '%blocked%' OR detail LIKE '%unblock%');
}), qr/\n2$/, 'once writable again, the queued record is written');
is($node->safe_psql('postgres', 'SELECT ok FROM vecphi.verify_audit()'),
	't', 'the chain verifies');

$node->stop;
done_testing();
