# vecphi: an ehnsw index on an UNLOGGED table survives a crash.
#
# After a crash PostgreSQL resets an unlogged relation to its init fork.
# The ehnsw init fork (an empty metapage) must therefore be on disk, and
# in the WAL, the moment the index is created: a checkpoint must not be
# needed to make it durable.  The table is created and indexed, rows are
# inserted, and the server is stopped in immediate mode before any
# checkpoint.  After recovery the table is empty (as for any unlogged
# table), the index is a valid empty index (vecphi.index_check), and rows
# can be inserted and found again.  A second case does the same with a
# standby: the init fork reaches it through WAL, and after promotion the
# index works there too.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $claims = VecphiCheck::claims_do(tenant => 't_a', role => 'clinician', sub => 'dr_a');

my $node = VecphiTest::new_node('unlogged', allows_streaming => 1);
# No checkpoint and no background writer between the CREATE INDEX and the
# crash: nothing but the index build itself may make its init fork durable.
$node->append_conf('postgresql.conf',
	"checkpoint_timeout = '1h'\nmax_wal_size = '4GB'\nbgwriter_lru_maxpages = 0\n");
$node->start;
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t_a');
	CHECKPOINT;
});
$node->backup('before_table');
my $standby = PostgreSQL::Test::Cluster->new('unlogged_standby');
$standby->init_from_backup($node, 'before_table', has_streaming => 1);
$standby->start;

$node->safe_psql(
	'postgres', qq{
	CREATE UNLOGGED TABLE notes (id int PRIMARY KEY, emb evector(3));
	CREATE INDEX notes_emb ON notes USING ehnsw (emb);
	BEGIN;
	$claims
	INSERT INTO notes SELECT g, format('[%s,0,0]', g)::evector FROM generate_series(1, 50) g;
	COMMIT;
});
$node->wait_for_catchup($standby);
$node->stop('immediate');
$node->start;

sub works
{
	my ($n, $what) = @_;
	is($n->safe_psql('postgres', 'SELECT count(*) FROM notes'), '0', "$what: the unlogged table is empty");
	is($n->safe_psql('postgres', q{SELECT vecphi.index_check('notes_emb')}), 't',
		"$what: the index is a valid empty ehnsw index");
	my ($rc, $out, $err) = $n->psql(
		'postgres', qq{
		BEGIN;
		$claims
		INSERT INTO notes SELECT g, format('[%s,0,0]', g)::evector FROM generate_series(1, 20) g;
		SET LOCAL enable_seqscan = off;
		SELECT string_agg(id::text, ',') FROM
			(SELECT id FROM notes ORDER BY emb <-> '[7.2,0,0]' LIMIT 3) s;
		COMMIT;});
	is($rc, 0, "$what: inserts work") or diag($err);
	is($out, '7,8,6', "$what: the index finds the new rows");
}
works($node, 'after a crash');

# The standby received the init fork through WAL; promoted, it resets the
# table to it as well.
$standby->promote;
works($standby, 'on a promoted standby');

$node->stop;
$standby->stop;
done_testing();
