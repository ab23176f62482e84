# vecphi on Citus: empty shard scans folded into one record per worker,
# and the coordinator's own record of a distributed search (issue #16:
# "every node records what it served, with Citus's distributed transaction
# id and global PID ...; empty shard scans folded").
#
# A protected table over 32 shards on two workers; tenant t_a has 10 rows,
# so at least 22 shards hold none of its rows.  A search by t_a through the
# coordinator (ORDER BY emb <-> q LIMIT 10):
#  - with one connection per worker (citus.max_adaptive_executor_pool_size
#    = 1): every worker writes exactly one folded record for its empty
#    shards plus one record per shard that returned rows; every shard of
#    the worker is accounted for once; the row ids of all records together
#    equal the rows the client got;
#  - the coordinator writes one distributed_scan record with the claimant,
#    the distributed table, the rows returned, and the same distributed
#    transaction and global PID as the workers' records;
#  - with Citus's default pool (several connections per worker): no empty
#    scan keeps a record of its own and all 32 shards are accounted for;
#  - a search in a transaction that is rolled back, or that fails
#    afterwards, still leaves every record;
#  - a search in a transaction Citus commits with two-phase commit
#    (PREPARE TRANSACTION on the workers) leaves them too;
#  - a search that fails on the workers: the coordinator's record has
#    outcome error; a search Citus runs in two steps (LIMIT subquery into
#    an intermediate result): one coordinator record;
#  - two claimants in one transaction are never folded together; a search
#    without claims writes no coordinator record;
#  - every node's chain verifies.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiCitus;
use VecphiTest;

VecphiCitus::skip_unless_citus();

my $dims = 8;
my $c = VecphiCitus::new_cluster('c189', workers => 2);
my $coord = $c->{coordinator};

$coord->safe_psql(
	'postgres', qq{
	SELECT vecphi.create_tenant('t_a');
	SELECT vecphi.create_tenant('t_b');
	CREATE ROLE app LOGIN;
	CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector($dims));
	SELECT create_distributed_table('docs', 'id', shard_count => 32);
	SELECT vecphi.protect('docs', 'tenant');
	GRANT SELECT, INSERT ON docs TO app;
	CREATE INDEX docs_emb ON docs USING ehnsw (emb);
	CREATE FUNCTION vec(g int) RETURNS text LANGUAGE sql IMMUTABLE AS
		\$\$ SELECT '[' || string_agg((((hashint4(g * 64 + j) & 65535) / 6553.6)::real)::text, ',' ORDER BY j) || ']'
			FROM generate_series(1, $dims) j \$\$;
});
my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(t_a t_b);
my %range = (t_a => [ 1, 10 ], t_b => [ 1001, 1080 ]);
for my $t (qw(t_a t_b))
{
	my ($lo, $hi) = @{ $range{$t} };
	my $values = $coord->safe_psql('postgres',
		"SELECT string_agg(format('(%s, %L, %L)', g, '$t', vec(g)), ',') FROM generate_series($lo, $hi) g");
	$coord->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{$t}
		INSERT INTO docs VALUES $values;
		COMMIT;}, extra_params => [ '-U', 'app' ]);
}
is($coord->safe_psql('postgres', 'SELECT count(*) FROM docs'), '90', '90 rows in the distributed table');

my $coord_nodeid = $coord->safe_psql('postgres', 'SELECT nodeid FROM pg_dist_node WHERE groupid = 0');
# Shards per worker node id.
my %shards_of = map { split /\|/ } split /\n/, $coord->safe_psql(
	'postgres', q{
	SELECT n.nodeid, count(*) FROM pg_dist_shard s
	JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
	WHERE s.logicalrelid = 'docs'::regclass GROUP BY n.nodeid});
is(scalar keys %shards_of, 2, 'the 32 shards are on both workers');

my $q = $coord->safe_psql('postgres', 'SELECT vec(5000)');
my $search = "SELECT id FROM docs ORDER BY emb <-> '$q'::evector_query LIMIT 10;";

# Run a search as app with t_a's claims in a transaction ending with $end
# (after $before and $after); returns (gpid, [ids]).
sub search_a
{
	my (%o) = @_;
	my $end = $o{end} // 'COMMIT;';
	my $pool = $o{pool1} ? 'SET LOCAL citus.max_adaptive_executor_pool_size = 1;' : '';
	my $out = $coord->safe_psql(
		'postgres', qq{
		BEGIN;
		SET LOCAL citus.propagate_set_commands = 'local';
		SET LOCAL enable_seqscan = off;
		$pool
		$claims{t_a}
		SELECT 'gpid ' || citus_backend_gpid();
		$search
		@{[ $o{after} // '' ]}
		$end}, extra_params => [ '-U', 'app' ]);
	my @lines = split /\n/, $out;
	my ($gpid) = map { /^gpid (\d+)$/ ? $1 : () } @lines;
	my @ids = grep { /^\d+$/ } @lines;
	return ($gpid, \@ids);
}

# Every node's records of a search (by global PID), once the workers' and
# the coordinator's have reached their logs (a folded record queued at
# abort is not waited for: it may come a little later).
sub records_of
{
	my ($gpid) = @_;
	$coord->poll_query_until(
		'postgres', qq{
		SELECT count(DISTINCT nodeid) = 3
			AND count(DISTINCT nodeid) FILTER (WHERE detail ~ '^citus: [0-9]+ empty scans') = 2
		FROM vecphi.cluster_audit_log()
		WHERE citus_gpid = $gpid}, 't')
	  or die "the records of gpid $gpid did not reach every node's log";
	my $rows = $coord->safe_psql(
		'postgres', qq{
		SELECT nodeid, action, relation, tenant, subject, rows_returned,
			coalesce(array_to_string(row_ids, ' '), ''), citus_transaction,
			CASE WHEN detail ~ '^citus: [0-9]+ empty scans of shards( [0-9]+)+, transaction'
				THEN substring(detail, '^citus: ([0-9]+) empty') ELSE '-' END,
			outcome
		FROM vecphi.cluster_audit_log()
		WHERE citus_gpid = $gpid ORDER BY nodeid, seq});
	return map {
		my @f = split /\|/, $_, -1;
		{
			node => $f[0], action => $f[1], relation => $f[2], tenant => $f[3],
			subject => $f[4], rows => $f[5], ids => $f[6], txn => $f[7],
			folded => $f[8], outcome => $f[9]
		}
	} split /\n/, $rows;
}

# The checks every search shares; $label says which one.  With $one_each,
# exactly one folded record per worker.
sub check_search
{
	my ($label, $gpid, $ids, $one_each) = @_;
	my @recs = records_of($gpid);
	my @scans = grep { $_->{action} eq 'index_scan' } @recs;
	my @coord = grep { $_->{node} == $coord_nodeid } @recs;
	my %txns = map { $_->{txn} => 1 } @recs;

	is(scalar @$ids, 10, "$label: the client got 10 rows");
	is(scalar(grep { $_->{node} == $coord_nodeid } @scans), 0, "$label: the coordinator scanned no shard");
	for my $w (sort keys %shards_of)
	{
		my @mine = grep { $_->{node} == $w } @scans;
		my @folded = grep { $_->{folded} ne '-' } @mine;
		my @served = grep { $_->{folded} eq '-' } @mine;
		my $empty_scans = 0;
		$empty_scans += $_->{folded} for @folded;
		if ($one_each)
		{
			is(scalar @folded, 1, "$label: worker $w wrote exactly one folded record for its empty shards");
		}
		else
		{
			cmp_ok(scalar @folded, '>=', 1, "$label: worker $w folded its empty shards (" . scalar(@folded) . ' records)');
		}
		is(scalar(grep { $_->{rows} != 0 || $_->{ids} ne '' } @folded), 0,
			"$label: worker $w: its folded records list no row");
		is(scalar(grep { $_->{rows} == 0 } @served), 0, "$label: worker $w: no empty scan has a record of its own");
		is($empty_scans + scalar(@served), $shards_of{$w},
			"$label: worker $w: every one of its $shards_of{$w} shards accounted for once ($empty_scans empty, "
			  . scalar(@served) . ' with rows)');
	}
	is(scalar(grep { $_->{relation} ne 'public.docs' || $_->{tenant} ne 't_a' || $_->{subject} ne 'dr_t_a' } @recs),
		0, "$label: every record names the distributed table and the claimant");
	my @recorded = sort { $a <=> $b } map { split / /, $_->{ids} } @scans;
	is_deeply(\@recorded, [ sort { $a <=> $b } @$ids ], "$label: the workers' row ids together equal the rows the client got");
	is(scalar @coord, 1, "$label: the coordinator wrote one record");
	is($coord[0]{action} // '', 'distributed_scan', "$label: its action is distributed_scan");
	is($coord[0]{rows} // '', '10', "$label: it counts the 10 rows returned to the client");
	is(scalar keys %txns, 1, "$label: the coordinator's and the workers' records carry one distributed transaction");
	like((keys %txns)[0], qr/^\d+:\d+$/, "$label: ... which is named");
	return @recs;
}

my ($gpid, $ids) = search_a(pool1 => 1);
ok(!grep({ $_ > 10 } @$ids), 'the search returns only the claimant tenant\'s rows');
check_search('one connection per worker', $gpid, $ids, 1);

($gpid, $ids) = search_a();
check_search('default connection pool', $gpid, $ids, 0);

($gpid, $ids) = search_a(pool1 => 1, end => 'ROLLBACK;');
check_search('rolled back', $gpid, $ids, 1);

# A failure after the search aborts the transaction on every node.
my ($out, $err) = ('', '');
$coord->psql(
	'postgres', qq{
	BEGIN;
	SET LOCAL citus.propagate_set_commands = 'local';
	SET LOCAL enable_seqscan = off;
	SET LOCAL citus.max_adaptive_executor_pool_size = 1;
	$claims{t_a}
	SELECT 'gpid ' || citus_backend_gpid();
	$search
	SELECT 1 / 0;
	COMMIT;},
	stdout => \$out, stderr => \$err, on_error_stop => 1, extra_params => [ '-U', 'app' ]);
like($err, qr/division by zero/, 'the failing transaction failed');
($gpid) = $out =~ /gpid (\d+)/;
$ids = [ grep { /^\d+$/ } split /\n/, $out ];
check_search('aborted by an error', $gpid, $ids, 1);

# Two-phase commit: the transaction also writes a row on each worker, so
# Citus prepares it on both before committing.
my ($id1, $id2) = split /\n/, $coord->safe_psql(
	'postgres', q{
	SELECT min(g) FROM generate_series(5001, 5100) g
	JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column('docs', g)
	GROUP BY p.groupid ORDER BY 1});
# Citus's recovery of prepared transactions would empty pg_dist_transaction.
$coord->safe_psql('postgres', 'ALTER SYSTEM SET citus.recover_2pc_interval = -1');
$coord->reload;
my $prepared = 'SELECT count(*) FROM pg_dist_transaction';
my $prepared_before = $coord->safe_psql('postgres', $prepared);
my $v1 = $coord->safe_psql('postgres', "SELECT vec($id1)");
my $v2 = $coord->safe_psql('postgres', "SELECT vec($id2)");
($gpid, $ids) = search_a(
	pool1 => 1,
	after => "INSERT INTO docs VALUES ($id1, 't_a', '$v1'); INSERT INTO docs VALUES ($id2, 't_a', '$v2');");
cmp_ok($coord->safe_psql('postgres', $prepared), '>=', $prepared_before + 2,
	'Citus committed it with two-phase commit (a prepared transaction on each worker)');
check_search('two-phase commit', $gpid, $ids, 1);
is($coord->safe_psql('postgres', "SELECT count(*) FROM docs WHERE id IN ($id1, $id2)"), '2',
	'the two-phase transaction committed its rows');

# A search that fails while it runs (on the workers): the coordinator's
# record says so.
($out, $err) = ('', '');
$coord->psql(
	'postgres', qq{
	BEGIN;
	SET LOCAL citus.propagate_set_commands = 'local';
	SET LOCAL enable_seqscan = off;
	$claims{t_a}
	SELECT 'gpid ' || citus_backend_gpid();
	SELECT id, 1 / (id - id) FROM docs ORDER BY emb <-> '$q'::evector_query LIMIT 10;
	COMMIT;},
	stdout => \$out, stderr => \$err, on_error_stop => 1, extra_params => [ '-U', 'app' ]);
like($err, qr/division by zero/, 'a search failing on the workers fails');
($gpid) = $out =~ /gpid (\d+)/;
$coord->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM vecphi.cluster_audit_log() WHERE citus_gpid = $gpid AND action = 'distributed_scan'")
  or die 'no distributed_scan record of the failed search';
is( $coord->safe_psql(
		'postgres', qq{SELECT string_agg(outcome || ' ' || rows_returned || ' ' || relation, ',')
	FROM vecphi.cluster_audit_log() WHERE citus_gpid = $gpid AND action = 'distributed_scan'}),
	'error 0 public.docs', 'the coordinator recorded the failed search once, with outcome error');

# A search Citus plans in two steps (the LIMIT subquery first, into an
# intermediate result, then the aggregate over it): one record of the
# statement, with the one row the client got.
my $two_step = "SELECT string_agg(id::text, ',') FROM (SELECT id FROM docs ORDER BY emb <-> '$q'::evector_query LIMIT 10) x;";
$out = $coord->safe_psql(
	'postgres', qq{
	BEGIN;
	SET LOCAL citus.propagate_set_commands = 'local';
	SET LOCAL enable_seqscan = off;
	$claims{t_a}
	SELECT 'gpid ' || citus_backend_gpid();
	$two_step
	COMMIT;}, extra_params => [ '-U', 'app' ]);
($gpid) = $out =~ /gpid (\d+)/;
$coord->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM vecphi.cluster_audit_log() WHERE citus_gpid = $gpid AND action = 'distributed_scan'")
  or die 'no distributed_scan record of the two-step search';
is( $coord->safe_psql(
		'postgres', qq{SELECT string_agg(outcome || ' ' || rows_returned || ' ' || relation, ',' ORDER BY seq)
	FROM vecphi.cluster_audit_log() WHERE citus_gpid = $gpid AND action = 'distributed_scan'}),
	'ok 1 public.docs', 'a search Citus runs in two steps: one coordinator record, of the row the client got');

# Two claimants in one distributed transaction (claims changed between
# statements): their empty scans are never folded together.
$out = $coord->safe_psql(
	'postgres', qq{
	BEGIN;
	SET LOCAL citus.propagate_set_commands = 'local';
	SET LOCAL enable_seqscan = off;
	SET LOCAL citus.max_adaptive_executor_pool_size = 1;
	$claims{t_a}
	SELECT 'gpid ' || citus_backend_gpid();
	$search
	$claims{t_b}
	$search
	COMMIT;}, extra_params => [ '-U', 'app' ]);
($gpid) = $out =~ /gpid (\d+)/;
is( $coord->safe_psql(
		'postgres', qq{
	SELECT string_agg(x, ',' ORDER BY x) FROM (
		SELECT nodeid || ' ' || tenant || ' '
			|| sum(coalesce(substring(detail, '^citus: ([0-9]+) empty scans')::int, 1)) || ' '
			|| (count(*) FILTER (WHERE detail ~ '^citus: [0-9]+ empty scans') <= 1) AS x
		FROM vecphi.cluster_audit_log()
		WHERE citus_gpid = $gpid AND action = 'index_scan'
		GROUP BY nodeid, tenant) y}),
	join(',', sort map { ("$_ t_a $shards_of{$_} true", "$_ t_b $shards_of{$_} true") } keys %shards_of),
	'two claimants in one transaction: every shard scan of each counted once under its own tenant, at most one folded record each per worker');
is( $coord->safe_psql(
		'postgres', qq{SELECT count(*) FROM vecphi.cluster_audit_log()
	WHERE citus_gpid = $gpid AND ((tenant = 't_a') <> (subject = 'dr_t_a'))}),
	'0', 'two claimants in one transaction: no record mixes one\'s tenant with the other\'s subject');

# Without claims nothing is decrypted or returned, and the coordinator
# writes no distributed_scan record.
my $before = $coord->safe_psql('postgres', q{SELECT count(*) FROM vecphi.audit_log WHERE action = 'distributed_scan'});
$coord->psql('postgres', "BEGIN; SET LOCAL enable_seqscan = off; $search COMMIT;", extra_params => [ '-U', 'app' ]);
is($coord->safe_psql('postgres', q{SELECT count(*) FROM vecphi.audit_log WHERE action = 'distributed_scan'}),
	$before, 'a search without claims: no distributed_scan record');

is( $coord->safe_psql(
		'postgres', q{SELECT bool_and(ok) FROM vecphi.verify_cluster_audit()}),
	't', 'every node\'s audit chain verifies');

VecphiCitus::stop_cluster($c);
done_testing();
