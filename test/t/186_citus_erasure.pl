# vecphi on Citus: vecphi.scrub() on a distributed table erases deleted
# rows' ciphertext from every worker's files (issue #16, "Erasure").
#
# A distributed table of 784-dimension embeddings (their envelopes go to
# TOAST) on a coordinator and two workers.  From every row's envelope, as
# the coordinator prints it, three 32-byte slices of ciphertext are taken.
# Every slice is first found in the workers' files (so the search can find
# bytes); a DELETE leaves the deleted rows' slices there (what PostgreSQL
# alone does, and what vecphi.scrub_local() on the coordinator, which holds
# no rows, leaves); vecphi.scrub() on the coordinator then scrubs every
# shard placement: none of the deleted rows' slices is left on any worker,
# every kept row's slices are.  A role that does not own the table is
# refused before any placement is touched.  A VACUUM on the coordinator,
# which Citus runs on every shard, erases as well.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use MIME::Base64 qw(decode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiCitus;
use VecphiTest;

VecphiCitus::skip_unless_citus();

my $dims = 784;
my $slice_len = 32;
my $claims = VecphiCheck::claims_do(tenant => 't_erase', role => 'clinician', sub => 'dr_e');

# Citus's deferred cleanup of old placements off: the test drops them.
my $c = VecphiCitus::new_cluster('c186', workers => 2,
	conf => "autovacuum = off\ncitus.defer_shard_delete_interval = -1\n");
my $coord = $c->{coordinator};
$coord->safe_psql(
	'postgres', qq{
	SELECT vecphi.create_tenant('t_erase');
	CREATE TABLE notes (id int PRIMARY KEY, emb evector($dims));
	SELECT create_distributed_table('notes', 'id');
});

# 40 rows, inserted through the coordinator (which encrypts them: the
# workers receive envelopes).
srand(20261203);
my @rows;
for my $id (1 .. 40)
{
	push @rows, "($id, '[" . join(',', map { sprintf('%.4f', rand()) } 1 .. $dims) . "]')";
}
$coord->safe_psql('postgres',
	"BEGIN; $claims INSERT INTO notes VALUES " . join(",\n", @rows) . '; COMMIT;');

# id => [three slices of its envelope]: after the 28 bytes of header and
# nonce, in the middle of the first TOAST chunk, and at the end of the last
# whole one (TOAST cuts values into chunks of 1996 bytes).
my %slices;
for my $line (split /\n/, $coord->safe_psql('postgres', 'SELECT id, emb::text FROM notes ORDER BY id'))
{
	my ($id, $text) = split /\|/, $line;
	my $env = decode_base64(substr($text, length('vecphi:')));
	my $len = length($env);
	my $last_chunk = int(($len - 1) / 1996) * 1996;
	my $end = $len - $last_chunk >= $slice_len ? $len - $slice_len : $last_chunk - $slice_len;
	$slices{$id} = [ map { substr($env, $_, $slice_len) } (28, 950, $end) ];
}
is(scalar keys %slices, 40, 'an envelope for each of the 40 rows');

# How many of the rows' slices all the workers' relation files hold
# (every file under base/: the shards, their TOAST tables and indexes).
sub slices_on_workers
{
	return slices_on($c->{workers}, @_);
}

# The same for the workers listed.
sub slices_on
{
	my ($workers, @ids) = @_;
	VecphiCitus::on_all($c, 'CHECKPOINT');
	my $all = '';
	for my $w (@{$workers})
	{
		for my $file (split /\n/, `find '${\ $w->data_dir}/base' -type f`)
		{
			$all .= slurp_file($file);
		}
	}
	my $found = 0;
	for my $id (@ids)
	{
		$found += scalar grep { index($all, $_) >= 0 } @{ $slices{$id} };
	}
	return $found;
}

my @deleted = grep { $_ % 4 == 0 } 1 .. 40;
my @kept = grep { $_ % 4 != 0 } 1 .. 40;
is(slices_on_workers(1 .. 40), 120, 'before any delete: the workers hold every slice');

$coord->safe_psql('postgres',
	'DELETE FROM notes WHERE id % 4 = 0');
is(slices_on_workers(@deleted), 30, 'after DELETE: the deleted rows\' slices are still in the workers\' files');

my $local = $coord->safe_psql('postgres',
	'SELECT pages, bytes_scrubbed FROM vecphi.scrub_local(\'notes\')');
is($local, '0|0', 'vecphi.scrub_local() on the coordinator: its table holds no page');
is(slices_on_workers(@deleted), 30, 'and the workers still hold the deleted rows\' slices');

# A role that does not own the table.
$coord->safe_psql(
	'postgres', q{
	CREATE ROLE app_e LOGIN;
	GRANT SELECT, DELETE ON notes TO app_e;
});
like(
	VecphiCheck::error_of(
		$coord, 'postgres', q{SET ROLE app_e; SELECT * FROM vecphi.scrub('notes')}),
	qr/^42501: must be owner of table notes/,
	'a role that does not own the table cannot scrub it');

my ($pages, $scrubbed, $bytes, $complete) = split /\|/, $coord->safe_psql('postgres',
	'SELECT pages, pages_scrubbed, bytes_scrubbed, complete FROM vecphi.scrub(\'notes\')');
cmp_ok($pages, '>', 0, "vecphi.scrub() on the coordinator reads the shards' pages ($pages)");
cmp_ok($bytes, '>', 0, "and zeroes bytes ($bytes in $scrubbed pages)");
is($complete, 't', 'and reports the erasure complete');
is(slices_on_workers(@deleted), 0, 'no worker holds any slice of a deleted row');
is(slices_on_workers(@kept), 3 * scalar(@kept), 'every kept row\'s slices are still there');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM notes'), scalar(@kept),
	'the kept rows are all there');

# VACUUM on the coordinator: Citus runs it on every shard, and vecphi
# scrubs after VACUUM on each worker as on a single node.
my @vacuumed = grep { $_ % 4 == 1 } 1 .. 40;
@kept = grep { $_ % 4 != 0 && $_ % 4 != 1 } 1 .. 40;
$coord->safe_psql('postgres', 'DELETE FROM notes WHERE id % 4 = 1');
is(slices_on_workers(@vacuumed), 30, 'after a second DELETE: those rows\' slices are on the workers');
$coord->safe_psql('postgres', 'VACUUM notes');
is(slices_on_workers(@vacuumed), 0, 'VACUUM on the coordinator: none of them is left on any worker');
is(slices_on_workers(@kept), 3 * scalar(@kept), 'and every kept row\'s slices are still there');

# Each worker recorded its scrubs of its shards in its own audit log,
# under the distributed table's name, the shard in the detail; the
# coordinator reads them all with vecphi.cluster_audit_log(), and every
# node's chain verifies.
my %shards_of;
for my $w (@{ $c->{workers} })
{
	my $shards = $w->safe_psql(
		'postgres', q{SELECT string_agg(substring(detail, 'citus: shard ([0-9]+)'), ' ' ORDER BY 1)
		  FROM vecphi.audit_log WHERE action = 'erasure' AND relation = 'public.notes'});
	like($shards, qr/^\d+( \d+)*$/,
		$w->name . ' recorded the erasure of its shards under the table\'s name, with the shard');
	$shards_of{$w->name} = $shards;
}
is( $coord->safe_psql(
		'postgres', q{SELECT count(DISTINCT nodeid) || ' nodes, '
		  || count(DISTINCT nodeid) FILTER (WHERE detail ~ 'citus: shard') || ' with shards, '
		  || count(DISTINCT substring(detail, 'citus: shard ([0-9]+)')) || ' shards'
		  FROM vecphi.cluster_audit_log() WHERE action = 'erasure' AND relation = 'public.notes'}),
	'3 nodes, 2 with shards, 4 shards',
	'vecphi.cluster_audit_log() on the coordinator returns the erasure records of every node (the coordinator scrubbed its empty table, each worker its shards)');
is( $coord->safe_psql(
		'postgres', q{SELECT string_agg(nodeid || ':' || ok, ' ' ORDER BY nodeid)
		  FROM vecphi.verify_cluster_audit()}),
	join(' ', map { "$_:true" } 1 .. 3),
	'vecphi.verify_cluster_audit(): every node\'s chain verifies');
like(
	VecphiCheck::error_of(
		$coord, 'postgres', q{SET ROLE app_e; SELECT count(*) FROM vecphi.cluster_audit_log()}),
	qr/^42501: permission denied for function cluster_audit_log/,
	'an application role cannot read the cluster\'s audit');

# A table that is not distributed, on the coordinator: scrubbed as on a
# single node.
$coord->safe_psql(
	'postgres', qq{
	CREATE TABLE local_notes (id int PRIMARY KEY, emb evector($dims));
	BEGIN; $claims INSERT INTO local_notes SELECT id, emb FROM notes; COMMIT;
	DELETE FROM local_notes WHERE id % 2 = 0;
});
is( $coord->safe_psql(
		'postgres', q{SELECT bytes_scrubbed > 0 AND complete FROM vecphi.scrub('local_notes')}),
	't',
	'a local table on the coordinator is scrubbed as on a single node');

# ---- A shard move: the old placement is emptied and scrubbed first ----
my ($w1, $w2) = @{ $c->{workers} };
my %on_w1 = map { $_ => 1 } split /\n/, $coord->safe_psql(
	'postgres', q{SELECT p.shardid FROM pg_dist_shard_placement p
	  JOIN pg_dist_shard s USING (shardid) WHERE s.logicalrelid = 'notes'::regclass
	  AND p.nodeport = } . $w1->port);
my %rows_of;
for my $line (split /\n/, $coord->safe_psql('postgres',
	"SELECT get_shard_id_for_distribution_column('notes', id), id FROM notes ORDER BY 2"))
{
	my ($sh, $id) = split /\|/, $line;
	push @{ $rows_of{$sh} }, $id if $on_w1{$sh};
}
my ($shard) = sort keys %rows_of;
my @moved = @{ $rows_of{$shard} };
cmp_ok(scalar(@moved), '>', 0, "shard $shard on " . $w1->name . ' holds ' . scalar(@moved) . ' rows');
$coord->safe_psql('postgres',
	    "SELECT citus_move_shard_placement($shard, '"
	  . $w1->host . "', " . $w1->port . ", '" . $w2->host . "', " . $w2->port
	  . ", shard_transfer_mode => 'block_writes')");
is(slices_on([$w1], @moved), 3 * scalar(@moved),
	'after the move the old placement on ' . $w1->name . ' still holds every moved row\'s slices');
is(slices_on([$w2], @moved), 3 * scalar(@moved), 'and the new one on ' . $w2->name . ' holds them too');
my $orphan = $coord->safe_psql('postgres',
	'SELECT object_name FROM pg_dist_cleanup WHERE object_type = 1');
like($orphan, qr/^public\.notes_$shard$/, 'Citus keeps the old placement for its deferred cleanup');

like(
	VecphiCheck::error_of(
		$coord, 'postgres', q{SET ROLE app_e; SELECT * FROM vecphi.erase_orphaned_placements()}),
	qr/^42501: permission denied for function erase_orphaned_placements/,
	'an application role cannot run vecphi.erase_orphaned_placements()');
# A non-superuser granted EXECUTE on the worker side is still refused by
# the function's own check (the REVOKE alone would not hold against a grant).
$w1->safe_psql('postgres', q{SET citus.enable_ddl_propagation TO off;
	CREATE ROLE grantee_e;
	GRANT EXECUTE ON FUNCTION vecphi.erase_orphaned_shard_rows(text) TO grantee_e;});
like(
	VecphiCheck::error_of(
		$w1, 'postgres', "SET ROLE grantee_e; SELECT vecphi.erase_orphaned_shard_rows('public.notes_$shard')"),
	qr/^42501: permission denied for function vecphi\.erase_orphaned_shard_rows/,
	'a non-superuser granted EXECUTE cannot empty the old placement on its worker');
my $active = "public.notes_$shard";
like(
	VecphiCheck::error_of(
		$w2, 'postgres', "SELECT vecphi.erase_orphaned_shard_rows('$active')"),
	qr/^55000: .* is an active placement on this node/,
	'on the new node the placement is refused: only an old placement may be emptied');
like(
	VecphiCheck::error_of($w1, 'postgres', "SELECT vecphi.erase_orphaned_shard_rows('pg_class')"),
	qr/^42809: pg_class is not a shard of a distributed table/,
	'a relation that is not a shard is refused');

my $pending_before = $w1->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure');
is( $coord->safe_psql(
		'postgres', q{SELECT node || ' ' || placement || ' ' || rows_deleted || ' ' || (bytes_scrubbed > 0)
		  || ' ' || complete || ' ' || coalesce(problem, '-') FROM vecphi.erase_orphaned_placements()}),
	$w1->host . ':' . $w1->port . " public.notes_$shard " . scalar(@moved) . ' true true -',
	'vecphi.erase_orphaned_placements(): the old placement emptied and scrubbed, complete');
is(slices_on([$w1], @moved), 0, 'no slice of a moved row is left on the old worker');
is(slices_on([$w2], @moved), 3 * scalar(@moved), 'every one is on the new worker');
is( $coord->safe_psql(
		'postgres', "SELECT count(*) FROM notes WHERE get_shard_id_for_distribution_column('notes', id) = $shard"),
	scalar(@moved), 'the moved rows are all there');
$coord->safe_psql('postgres', 'CALL citus_cleanup_orphaned_resources()');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM pg_dist_cleanup'), '0',
	'citus_cleanup_orphaned_resources() then drops it');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM vecphi.erase_orphaned_placements()'), '0',
	'nothing left to erase');

VecphiCitus::stop_cluster($c);
done_testing();
