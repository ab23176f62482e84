# vecphi: audit records outlive the transactions and the processes that
# caused them.
#
# A table of 200 rows with an ehnsw index, tenant aud_a.  Then:
#
#  - a search in a transaction that rolls back (together with an INSERT,
#    which the rollback undoes): the search's record is there, with the
#    rows the client got;
#  - a search in a transaction that fails afterwards (division by zero):
#    the same;
#  - a search in a session that is still inside its transaction when its
#    backend is killed with SIGKILL right after the client received the
#    rows (the postmaster then restarts the whole cluster and replays WAL):
#    after the restart the record is there, with exactly those rows, since
#    in synchronous mode no row reaches the client before its record is
#    committed;
#  - the chain verifies after the crash and goes on without a gap;
#  - if an audit writer is running, killing it with SIGKILL (another crash
#    restart) loses nothing either;
#  - fail closed: with a malformed chain key (vecphi.audit_key_file) no
#    writer can write, and a search fails instead of returning rows; with
#    the key back, searches are recorded and the chain verifies.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $dims = 4;
my $claims = VecphiCheck::claims_do(tenant => 'aud_a', role => 'clinician', sub => 'dr_durable');

my $node = VecphiTest::new_node('durability');
$node->append_conf('postgresql.conf', "restart_after_crash = on\nautovacuum = off\n");
$node->start;
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('aud_a');
	CREATE TABLE docs (id int PRIMARY KEY, emb evector($dims));
});
# Row i is [i, i mod 7, i mod 3, 0]: distinct distances around [n, 0, 0, 0].
$node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	INSERT INTO docs SELECT i, format('[%s,%s,%s,0]', i, i % 7, i % 3)::evector
	FROM generate_series(1, 200) i;
	COMMIT;
	CREATE INDEX docs_emb ON docs USING ehnsw (emb);
});

# The search the tests run: ids of the 5 rows nearest [n,0,0,0], one per line.
sub search_sql
{
	my ($n) = @_;
	return "SELECT id FROM docs ORDER BY emb <-> '[$n,0,0,0]' LIMIT 5;";
}

# The scan records of backend $pid: "action outcome rows ids" per record,
# ids sorted numerically.
sub records_of
{
	my ($pid) = @_;
	return $node->safe_psql(
		'postgres', qq{
		SELECT action || ' ' || outcome || ' ' || rows_returned || ' ' ||
			(SELECT string_agg(x, ',' ORDER BY x::int) FROM unnest(row_ids) x)
		FROM vecphi.audit_log
		WHERE backend_pid = $pid AND action IN ('index_scan', 'exact_scan')
		ORDER BY seq});
}

sub sorted_ids
{
	my ($lines) = @_;
	return join(',', sort { $a <=> $b } grep { length } split /\n/, $lines);
}

# ---- a transaction that rolls back ----
my $out = $node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	SET LOCAL enable_seqscan = off;
	SELECT pg_backend_pid();
	@{[ search_sql(50) ]}
	INSERT INTO docs VALUES (9999, NULL);
	ROLLBACK;
});
my ($pid, @ids) = split /\n/, $out;
is(scalar(@ids), 5, 'the search returned 5 rows');
is($node->safe_psql('postgres', 'SELECT count(*) FROM docs WHERE id = 9999'),
	'0', 'the transaction did roll back');
is(records_of($pid), 'index_scan ok 5 ' . sorted_ids(join("\n", @ids)),
	'a rolled-back search leaves its record, with the rows returned');

# ---- a transaction that fails after the search ----
my ($ret, $stdout, $stderr) = $node->psql(
	'postgres', qq{
	BEGIN;
	$claims
	SET LOCAL enable_seqscan = off;
	SELECT pg_backend_pid();
	@{[ search_sql(120) ]}
	SELECT 1 / 0;
	COMMIT;
});
like($stderr, qr/division by zero/, 'the transaction failed after the search');
($pid, @ids) = split /\n/, $stdout;
is(scalar(@ids), 5, 'the search before the failure returned 5 rows');
is(records_of($pid), 'index_scan ok 5 ' . sorted_ids(join("\n", @ids)),
	'a search in a failed transaction leaves its record');

# ---- SIGKILL of the backend right after the client got the rows ----
is($node->safe_psql('postgres', 'SELECT (vecphi.verify_audit()).ok'), 't',
	'the chain verifies before the crash');
my $seq_before = $node->safe_psql('postgres', 'SELECT max(seq) FROM vecphi.audit_log');

my $session = $node->background_psql('postgres', on_error_stop => 0);
my $victim = $session->query_safe('SELECT pg_backend_pid()');
$session->query_safe("BEGIN; $claims SET LOCAL enable_seqscan = off;");
my $got = $session->query_safe(search_sql(77));
# The client has the rows; the backend is still inside its transaction.
ok(kill('KILL', $victim), "backend $victim killed with SIGKILL");
my @got = grep { length } split /\n/, $got;
is(scalar(@got), 5, 'the client received 5 rows before the kill');
eval { $session->quit; };

ok($node->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'the server is back after the crash restart');
ok( $node->log_contains(qr/server process \(PID $victim\) was terminated by signal 9/),
	'the postmaster saw the backend die by SIGKILL');
is(records_of($victim), 'index_scan ok 5 ' . sorted_ids($got),
	'after the crash the record of the search is there, with the rows the client got');
is( $node->safe_psql(
		'postgres', qq{
	SELECT tenant || ' ' || subject || ' ' || relation || ' ' || index_name
	FROM vecphi.audit_log WHERE backend_pid = $victim}),
	'aud_a dr_durable public.docs docs_emb',
	'with its claims, relation and index');

# The chain verifies, and goes on without a gap after the crash.
my $verify = $node->safe_psql('postgres',
	"SELECT ok || ' ' || coalesce(first_bad_seq::text, '-') || ' ' || coalesce(problem, '-') FROM vecphi.verify_audit()");
is($verify, 'true - -', 'the chain verifies after the crash');
my $seq_crash = $node->safe_psql('postgres', 'SELECT max(seq) FROM vecphi.audit_log');
$out = $node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	SET LOCAL enable_seqscan = off;
	SELECT pg_backend_pid();
	@{[ search_sql(30) ]}
	COMMIT;
});
($pid) = split /\n/, $out;
is( $node->safe_psql(
		'postgres', "SELECT min(seq) - $seq_crash FROM vecphi.audit_log WHERE backend_pid = $pid"),
	'1',
	'the first record after the crash follows the last one before it');
is($node->safe_psql('postgres', 'SELECT count(*) = max(seq) - min(seq) + 1 FROM vecphi.audit_log'),
	't', 'no gap in seq');
is($node->safe_psql('postgres', 'SELECT (vecphi.verify_audit()).ok'), 't',
	'the chain verifies after a record written after the crash');

# ---- SIGKILL of the audit writer ----
# The writer exits after a few idle seconds, so it is looked for in the
# same session as a search that has just started it.
$out = $node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	SET LOCAL enable_seqscan = off;
	CREATE TEMP TABLE found AS @{[ search_sql(140) =~ s/;$//r ]};
	SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity
	WHERE backend_type = 'vecphi audit writer';
	COMMIT;
});
SKIP:
{
	skip 'no audit writer running to kill', 5 unless $out =~ /^(\d+)/;
	my $writer = $1;
	my $count_before = $node->safe_psql('postgres', 'SELECT count(*) FROM vecphi.audit_log');
	ok(kill('KILL', $writer), "audit writer $writer killed with SIGKILL");
	ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $writer"),
		'the writer is gone');
	ok($node->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
		'the server is back');
	$out = $node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims
		SET LOCAL enable_seqscan = off;
		SELECT pg_backend_pid();
		@{[ search_sql(160) ]}
		COMMIT;
	});
	($pid, @ids) = split /\n/, $out;
	is(records_of($pid), 'index_scan ok 5 ' . sorted_ids(join("\n", @ids)),
		'a search after the writer was killed is recorded by a new writer');
	is( $node->safe_psql(
			'postgres',
			"SELECT (SELECT count(*) FROM vecphi.audit_log) - $count_before || ' ' || (vecphi.verify_audit()).ok"),
		'1 true',
		'nothing was lost and the chain still verifies');
}

# ---- fail closed: a writer that cannot write ----
# A malformed chain key stops every writer.  A search must then fail
# instead of returning rows unaudited; once the key is back, searches are
# recorded again and the chain still verifies.
my $bad_key = $node->basedir . '/bad_audit.key';
VecphiCheck::write_file($bad_key, "not a key\n");
my $no_writer = "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'vecphi audit writer'";
$node->safe_psql('postgres', "ALTER SYSTEM SET vecphi.audit_key_file = '$bad_key'; SELECT pg_reload_conf();");
ok($node->poll_query_until('postgres', $no_writer), 'no audit writer is running');
($ret, $stdout, $stderr) = $node->psql(
	'postgres', qq{
	SET vecphi.audit_timeout = '2s';
	BEGIN;
	$claims
	SET LOCAL enable_seqscan = off;
	@{[ search_sql(40) ]}
	COMMIT;
});
isnt($ret, 0, 'with a broken audit key a search fails');
is($stdout, '', 'and returns no row');
like($stderr, qr/ERROR:.*audit/, 'with an error about the audit');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET vecphi.audit_key_file; SELECT pg_reload_conf();');
ok($node->poll_query_until('postgres', $no_writer), 'no audit writer is running');
$out = $node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	SET LOCAL enable_seqscan = off;
	SELECT pg_backend_pid();
	@{[ search_sql(45) ]}
	COMMIT;
});
($pid, @ids) = split /\n/, $out;
is(records_of($pid), 'index_scan ok 5 ' . sorted_ids(join("\n", @ids)),
	'with the key back, a search is recorded again');
is($node->safe_psql('postgres', 'SELECT (vecphi.verify_audit()).ok'), 't',
	'and the chain verifies');

$node->stop;
done_testing();
