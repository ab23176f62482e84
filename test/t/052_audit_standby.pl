# vecphi: the audit on a hot standby.
#
# A standby cannot write tables, so its audit writer appends the records to
# a file in the standby's data directory, read back with
# vecphi.standby_audit_log().  A primary with tenant aud_a, a table and an
# ehnsw index; a streaming standby from a base backup, with copies of the
# primary's key files.  Then:
#
#  - a search on the standby succeeds, returns what the same search on the
#    primary returns, and standby_audit_log() on the standby shows its
#    record at once (synchronous mode: durable in the file before the rows
#    were sent);
#  - a denial on the standby (a bad token) is there after audit_flush();
#  - the primary's audit_log is unaffected by the standby's searches, and
#    the replicated audit_log still verifies on the standby;
#  - the standby's records form a chain (seq without gaps, each row_hash
#    hex) that survives a restart of the standby and goes on after it.
use strict;
use warnings;

use File::Copy qw(copy);
use File::Find;
use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $dims = 4;
my $claims = VecphiCheck::claims_do(tenant => 'aud_a', role => 'clinician', sub => 'dr_standby');

my $primary = VecphiTest::new_node('primary', allows_streaming => 1);
$primary->start;
$primary->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('aud_a');
	CREATE TABLE docs (id int PRIMARY KEY, emb evector($dims));
});
$primary->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	INSERT INTO docs SELECT i, format('[%s,%s,%s,0]', i, i % 7, i % 3)::evector
	FROM generate_series(1, 200) i;
	COMMIT;
	CREATE INDEX docs_emb ON docs USING ehnsw (emb);
});

# The search: ids of the 5 rows nearest [n,0,0,0], comma-separated, in
# order, with the backend's pid first.
sub search
{
	my ($node, $n) = @_;
	return $node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims
		SET LOCAL enable_seqscan = off;
		SELECT pg_backend_pid();
		SELECT id FROM docs ORDER BY emb <-> '[$n,0,0,0]' LIMIT 5;
		COMMIT;
	});
}
# One search on the primary, so that the audit has run there before the
# backup (and its key exists, wherever the implementation keeps it).
my ($ppid, @pids) = split /\n/, search($primary, 60);
is(scalar(@pids), 5, 'a search on the primary returns 5 rows');

# ---- the standby ----
$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
VecphiTest::configure_node($standby);
$standby->append_conf('postgresql.conf', "restart_after_crash = on\n");
# The standby gets the primary's audit key (vecphi.audit_key_file, outside
# the data directory, so not in the base backup) with a copy of its key
# files, as it gets the key-encryption keys; without it the standby would
# record nothing (072_audit_key_location.pl).
for my $dir (\&VecphiTest::key_dir, \&VecphiTest::audit_key_dir)
{
	my $primary_keys = $dir->($primary);
	my $standby_keys = $dir->($standby);
	for my $f (VecphiCheck::dir_files($primary_keys))
	{
		copy("$primary_keys/$f", "$standby_keys/$f") or die "copy $f: $!";
		chmod 0600, "$standby_keys/$f" or die "chmod $f: $!";
	}
}
$standby->start;
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

my $primary_count = $primary->safe_psql('postgres', 'SELECT count(*) FROM vecphi.audit_log');
my $primary_head = $primary->safe_psql('postgres', 'SELECT seq || \' \' || row_hash FROM vecphi.audit_head()');

# ---- a search on the standby ----
my ($spid, @sids) = split /\n/, search($standby, 60);
is(join(',', @sids), join(',', @pids), 'the search on the standby returns the primary\'s rows');

# "action db_user ok/len(row_hash)" of the standby's records, oldest first.
my $records = sub {
	return $standby->safe_psql(
		'postgres', q{
		SELECT string_agg(action || ' ' || db_user || ' ' || CASE WHEN row_hash ~ '^[0-9a-f]{64}$' THEN 't' ELSE 'f' END, E'\n' ORDER BY seq)
		FROM vecphi.standby_audit_log()});
};
my $user = $standby->safe_psql('postgres', 'SELECT current_user');
is($records->(), "index_scan $user t", 'standby_audit_log() shows the search at once');
my $record = $standby->safe_psql('postgres',
	"SELECT record FROM vecphi.standby_audit_log() WHERE action = 'index_scan'");
note "the standby's record: $record";
like($record, qr/docs/, 'the record names the table');
like($record, qr/dr_standby/, 'the record names the subject');
my @in_record = grep { $record =~ /\b$_\b/ } @sids;
is(scalar(@in_record), 5, 'the record holds the 5 row ids');

# A second search (exact), and a denial, flushed.
$standby->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	SET LOCAL enable_indexscan = off;
	SELECT id FROM docs ORDER BY emb <-> '[20,0,0,0]' LIMIT 3;
	COMMIT;
});
my ($ret, $stdout, $stderr) = $standby->psql('postgres',
	"SELECT vecphi.set_claims('not.a.token');");
like($stderr, qr/ERROR/, 'a bad token on the standby fails');
$standby->safe_psql('postgres', 'SELECT vecphi.audit_flush()');
is($records->(), "index_scan $user t\nexact_scan $user t\ndenial $user t",
	'the standby shows the exact scan and the denial too');
is( $standby->safe_psql(
		'postgres', 'SELECT count(*) = max(seq) - min(seq) + 1 FROM vecphi.standby_audit_log()'),
	't',
	'the standby\'s records have no seq gap');

# The file is in the standby's data directory, the primary has none.
my @files;
my $datadir = $standby->data_dir;
find(
	sub {
		my $rel = substr($File::Find::name, length($datadir) + 1);
		push @files, $rel if -f $_ && -s $_ && $rel =~ /audit/i;
	},
	$datadir);
note "audit files on the standby: @files";
cmp_ok(scalar(@files), '>=', 1, 'the standby has an audit file in its data directory');

# ---- the primary is unaffected ----
$primary->safe_psql('postgres', 'CREATE TABLE marker (i int)');
$primary->wait_for_catchup($standby);
is($primary->safe_psql('postgres', 'SELECT count(*) FROM vecphi.audit_log'),
	$primary_count, 'the primary\'s audit_log has no record of the standby\'s searches');
is($primary->safe_psql('postgres', 'SELECT seq || \' \' || row_hash FROM vecphi.audit_head()'),
	$primary_head, 'the primary\'s head is unchanged');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM vecphi.audit_log'),
	$primary_count, 'the standby\'s replica of audit_log is the primary\'s');
is($standby->safe_psql('postgres', 'SELECT (vecphi.verify_audit()).ok'), 't',
	'the replicated audit_log verifies on the standby');

# ---- a new writer, and a restart of the standby ----
# The writer exits when idle; the next one must continue the file's chain.
# Then the same across a restart of the standby.  (psql rather than
# safe_psql: a failure here must fail the test, not end it.)
sub search_continues
{
	my ($n, $label) = @_;
	my $max_before = $standby->safe_psql('postgres', 'SELECT max(seq) FROM vecphi.standby_audit_log()');
	my ($rc, $out, $err) = $standby->psql(
		'postgres', qq{
		BEGIN;
		$claims
		SET LOCAL enable_seqscan = off;
		SELECT id FROM docs ORDER BY emb <-> '[$n,0,0,0]' LIMIT 5;
		COMMIT;
	});
	is($rc, 0, "$label: a search on the standby succeeds");
	note "stderr: $err" if $rc;
	# (After a crash the standby restarts itself: restart_after_crash.)
	$standby->poll_query_until('postgres', 'SELECT 1', '1') if $rc;
	is( $standby->safe_psql(
			'postgres',
			"SELECT string_agg((seq - $max_before) || ' ' || action, ',') FROM vecphi.standby_audit_log() WHERE seq > $max_before"),
		'1 index_scan',
		"$label: its record continues the chain");
	return;
}

ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'vecphi audit writer'"),
	'the standby\'s audit writer has exited (idle)');
search_continues(90, 'after the writer exited');

my $before_restart = $standby->safe_psql('postgres',
	"SELECT string_agg(seq || ' ' || action || ' ' || row_hash, ',' ORDER BY seq) FROM vecphi.standby_audit_log()");
$standby->restart;
is($standby->safe_psql('postgres',
	"SELECT string_agg(seq || ' ' || action || ' ' || row_hash, ',' ORDER BY seq) FROM vecphi.standby_audit_log()"),
	$before_restart, 'the standby\'s records survive its restart');
search_continues(110, 'after a restart');
is( $standby->safe_psql(
		'postgres', 'SELECT count(*) = max(seq) - min(seq) + 1 FROM vecphi.standby_audit_log()'),
	't',
	'no seq gap in the standby\'s file');

$standby->stop;
$primary->stop;
done_testing();
