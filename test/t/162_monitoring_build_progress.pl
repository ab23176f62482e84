# vecphi monitoring: an ehnsw build reports real totals in
# pg_stat_progress_create_index.
#
# The build is paused, not timed: with maintenance_work_mem at its
# minimum the in-memory graph overflows after some hundred rows and the
# rest are inserted on disk, where the developer pause point
# vecphi.debug_ehnsw_insert_pause_lock waits on an advisory lock another
# session holds.  While it waits, the view is read from a third session:
# phase, tuples_total (the table's rows), tuples_done (rows taken in so
# far), blocks_total / blocks_done (the table scan's).  Then the lock goes
# and the build completes.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $rows = 3000;
my $node = VecphiTest::new_node('monbuild');
$node->start;
my $claims = VecphiCheck::claims_do(tenant => 't1', role => 'loader', sub => 'l');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t1');
	CREATE TABLE docs (id int PRIMARY KEY, emb evector(128))
		WITH (autovacuum_enabled = off);
	BEGIN;
	$claims
	INSERT INTO docs SELECT g, (SELECT array_agg(sin(g * 7 + d)::real) FROM generate_series(1, 128) d)::evector
		FROM generate_series(1, $rows) g;
	COMMIT;
	ANALYZE docs;
});

my $locker = $node->background_psql('postgres');
$locker->query_safe('SELECT pg_advisory_lock(4242);');

my ($out, $err) = ('', '');
my $builder = IPC::Run::start(
	[
		$node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'),
		'-c', q{SET maintenance_work_mem = '1MB';
			SET vecphi.debug_ehnsw_insert_pause_lock = 4242;
			SET client_min_messages = warning;
			CREATE INDEX docs_emb ON docs USING ehnsw (emb evector_l2_ops);}
	],
	'>', \$out, '2>', \$err);

# The build waits on the advisory lock once the graph is on disk.
ok( $node->poll_query_until(
		'postgres', q{
		SELECT count(*) = 1 FROM pg_stat_progress_create_index p
			JOIN pg_stat_activity a USING (pid)
		WHERE a.wait_event_type = 'Lock' AND a.wait_event = 'advisory'}),
	'the build is paused');
my ($phase, $ttotal, $tdone, $btotal, $bdone, $cmd) = split /\|/,
  $node->safe_psql(
	'postgres', q{
	SELECT phase, tuples_total, tuples_done, blocks_total, blocks_done, command
	FROM pg_stat_progress_create_index});
note "phase $phase, tuples $tdone/$ttotal, blocks $bdone/$btotal";
is($cmd, 'CREATE INDEX', 'a CREATE INDEX');
like($phase, qr/inserting rows into the graph/, 'phase: the load phase, named');
cmp_ok($tdone, '>', 0, 'tuples_done > 0');
cmp_ok($tdone, '<', $rows, 'tuples_done: not all rows yet');
cmp_ok($ttotal, '>=', $tdone, 'tuples_total >= tuples_done');
ok($ttotal >= $rows * 0.9 && $ttotal <= $rows * 1.1,
	"tuples_total is the table's row count, estimated ($ttotal for $rows)");
cmp_ok($btotal, '>', 0, 'blocks_total > 0');
ok($bdone > 0 && $bdone <= $btotal, "blocks_done within blocks_total ($bdone of $btotal)");
is( $btotal,
	$node->safe_psql('postgres', q{SELECT pg_relation_size('docs') / current_setting('block_size')::int}),
	'blocks_total: the table\'s blocks');

$locker->query_safe('SELECT pg_advisory_unlock(4242);');
$locker->quit;
$builder->finish;
is($builder->result(0), 0, 'the build completes') or diag $err;
is( $node->safe_psql(
		'postgres', q{SELECT indisvalid FROM pg_index WHERE indexrelid = 'docs_emb'::regclass}),
	't', 'the index is valid');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_stat_progress_create_index'),
	'0', 'no build in progress afterwards');

$node->stop;
done_testing();
