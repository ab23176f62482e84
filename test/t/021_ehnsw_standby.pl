# vecphi: an ehnsw index on a streaming standby.
#
# A standby is made from a base backup of a primary on which the extension
# and two tenants exist; it gets its own key directory holding copies of
# the primary's KEK files (they are not in the data directory).  On the
# primary, after the backup: a table with rows of both tenants, an ehnsw
# index built on it (written as full page images), more rows inserted
# through the index (generic WAL), rows deleted, VACUUM (elements marked
# deleted, ciphertext zeroed, links repaired).  Once the standby has
# replayed everything:
#
#  - the same ORDER BY ... LIMIT queries, under each tenant's claims and
#    with the index forced, return identical id lists on both servers,
#    including a filtered query that goes on past ef_search;
#  - each tenant only ever gets its own rows;
#  - vecphi.index_check passes on the standby;
#  - after a checkpoint on the primary and a restartpoint on the standby,
#    the standby's index file holds none of the deleted rows' ciphertext
#    (the zeroing was replayed) and all of the kept rows'.
use strict;
use warnings;

use File::Copy qw(copy);
use FindBin;
use lib "$FindBin::RealBin/../lib";

use MIME::Base64 qw(decode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $dims = 16;
my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(t_a t_b);

my $primary = VecphiTest::new_node('primary', allows_streaming => 1);
$primary->start;
$primary->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t_a');
	SELECT vecphi.create_tenant('t_b');
});

# ---- the standby, from a base backup, with copies of the KEK files ----
$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
VecphiTest::configure_node($standby);
my $primary_keys = VecphiTest::key_dir($primary);
my $standby_keys = VecphiTest::key_dir($standby);
isnt($primary_keys, $standby_keys, 'the standby has a key directory of its own');
my @keks = VecphiCheck::dir_files($primary_keys);
is(scalar(grep { /\.kek$/ } @keks), 2, 'the primary has two KEK files (and its keyring\'s owner file)');
for my $f (@keks)
{
	copy("$primary_keys/$f", "$standby_keys/$f") or die "copy $f: $!";
	chmod 0600, "$standby_keys/$f" or die "chmod $f: $!";
}
$standby->start;

# ---- the workload, all after the backup ----
# Deterministic pseudo-random vectors; ids 1..500 are t_a's, 1001..1500 t_b's.
srand(20240521);
my %vec;
$vec{$_} = '[' . join(',', map { sprintf('%.3f', rand(10)) } 1 .. $dims) . ']'
  for (1 .. 500, 1001 .. 1500);
my @queries = map { '[' . join(',', map { sprintf('%.3f', rand(10)) } 1 .. $dims) . ']' } 1 .. 5;

sub insert_rows
{
	my ($tenant, @ids) = @_;
	my $values = join(",\n", map { "($_, '$tenant', '$vec{$_}')" } @ids);
	$primary->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{$tenant}
		INSERT INTO docs VALUES $values;
		COMMIT;
	});
	return;
}

$primary->safe_psql('postgres',
	"CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector($dims)) WITH (autovacuum_enabled = off)"
);
insert_rows('t_a', 1 .. 400);
insert_rows('t_b', 1001 .. 1400);
$primary->safe_psql('postgres', 'CREATE INDEX docs_emb ON docs USING ehnsw (emb)');
insert_rows('t_a', 401 .. 500);
insert_rows('t_b', 1401 .. 1500);

# Ciphertext slices (32 bytes after header and nonce) of every row.
my %slice;
for my $line (split /\n/,
	$primary->safe_psql('postgres', 'SELECT id, emb::text FROM docs'))
{
	my ($id, $text) = split /\|/, $line, 2;
	$slice{$id} = substr(decode_base64(substr($text, 7)), 28, 32);
}
is(scalar keys %slice, 1000, '1000 rows on the primary');

$primary->safe_psql('postgres',
	'DELETE FROM docs WHERE id % 3 = 0 OR id BETWEEN 100 AND 150 OR id BETWEEN 1420 AND 1480');
$primary->safe_psql('postgres', 'VACUUM docs');
my @kept = split /\n/, $primary->safe_psql('postgres', 'SELECT id FROM docs ORDER BY id');
my %is_kept = map { $_ => 1 } @kept;
my @deleted = grep { !$is_kept{$_} } keys %slice;
note scalar(@kept) . ' rows kept, ' . scalar(@deleted) . ' deleted';
is($primary->safe_psql('postgres', "SELECT vecphi.index_check('docs_emb')"),
	't', 'index_check passes on the primary');

$primary->safe_psql('postgres', 'CHECKPOINT');
$primary->wait_for_catchup($standby);

ok($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 't',
	'the standby is in recovery');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM docs'),
	scalar(@kept), 'the standby has the kept rows');

# Index results for every query, under each tenant's claims: one line per
# query, "ids of the top $limit".
sub results
{
	my ($node, $tenant, $limit, $where) = @_;
	$where = $where ? "WHERE $where" : '';
	my $sql = "BEGIN;\n$claims{$tenant}\nSET LOCAL enable_seqscan = off;\n";
	for my $q (@queries)
	{
		$sql .= "SELECT coalesce(string_agg(id::text, ',' ORDER BY ord), '') FROM "
		  . "(SELECT id, row_number() OVER () AS ord FROM "
		  . "(SELECT id FROM docs $where ORDER BY emb <-> '$q' LIMIT $limit) s) r;\n";
	}
	$sql .= "COMMIT;\n";
	return $node->safe_psql('postgres', $sql);
}

for my $tenant (qw(t_a t_b))
{
	my $mine = $tenant eq 't_a' ? sub { $_[0] < 1000 } : sub { $_[0] > 1000 };
	for my $case ([ 10, '' ], [ 60, '' ], [ 10, 'id % 7 = 1' ])
	{
		my ($limit, $where) = @$case;
		my $label = "$tenant, LIMIT $limit" . ($where ? ", WHERE $where" : '');
		my $p = results($primary, $tenant, $limit, $where);
		my $s = results($standby, $tenant, $limit, $where);
		my @ids = map { split /,/ } split /\n/, $p;
		is(scalar(@ids), $limit * @queries, "$label: the primary returns full lists");
		is(scalar(grep { !$mine->($_) || !$is_kept{$_} } @ids),
			0, "$label: only live rows of the tenant");
		is($s, $p, "$label: the standby returns the same ids in the same order");
	}
}

# The plan on the standby uses the index too.
like(
	$standby->safe_psql(
		'postgres', qq{
	BEGIN;
	$claims{t_a}
	SET LOCAL enable_seqscan = off;
	EXPLAIN (COSTS OFF) SELECT id FROM docs ORDER BY emb <-> '$queries[0]' LIMIT 5;
	COMMIT;}),
	qr/Index Scan using docs_emb on docs/,
	'the standby plans an ehnsw index scan');

is($standby->safe_psql('postgres', "SELECT vecphi.index_check('docs_emb')"),
	't', 'index_check passes on the standby');

# ---- erasure, replayed ----
$standby->safe_psql('postgres', 'CHECKPOINT');    # a restartpoint
my $path = $standby->safe_psql('postgres', "SELECT pg_relation_filepath('docs_emb')");
my $bytes = slurp_file($standby->data_dir . "/$path");
is(scalar(grep { index($bytes, $slice{$_}) >= 0 } @deleted),
	0, 'the standby\'s index file holds no deleted row\'s ciphertext');
is(scalar(grep { index($bytes, $slice{$_}) >= 0 } @kept),
	scalar(@kept), 'and every kept row\'s');

# Both servers have the same index, page for page.
my $primary_bytes = slurp_file($primary->data_dir . '/'
	  . $primary->safe_psql('postgres', "SELECT pg_relation_filepath('docs_emb')"));
is(length($bytes), length($primary_bytes), 'the index files have the same size');
my @differ;
for (my $blk = 0; $blk * 8192 < length($bytes); $blk++)
{
	push @differ, $blk
	  if substr($bytes, $blk * 8192, 8192) ne substr($primary_bytes, $blk * 8192, 8192);
}
is("@differ", '', 'the index files are identical, page for page');

$standby->stop;
$primary->stop;
done_testing();
