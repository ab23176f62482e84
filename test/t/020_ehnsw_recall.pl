# vecphi: recall of the ehnsw index on real data.
#
# The first 10,000 images of Fashion-MNIST's training set (784 dimensions,
# pixel values 0..255) are the rows, the first images of its test set the
# queries; all encrypted under one tenant.  With the default build options
# (m 16, ef_construction 64) and the default vecphi.ef_search (40):
#
#  - the top 10 of the index for 50 queries match the exact top 10 (a
#    sequential scan) with a recall of at least 0.95.  Recall is tie-aware:
#    an index result counts as correct if its distance is at most the
#    exact 10th distance (+ 1e-6), since images at equal distances may be
#    ordered either way;
#  - every index result list holds 10 distinct rows, nearest first;
#  - filtered queries (WHERE id % 10 = 3, 10 % of the rows, and
#    WHERE id % 100 = 7, 1 %) fill their LIMIT 10 for every query, with
#    recall of at least 0.95 against the exact filtered top 10: the scan
#    goes on past ef_search (bounded by vecphi.scan_budget) instead of
#    starving the LIMIT.
#
# Both for an index built by CREATE INDEX on the loaded table (the graph
# built in memory) and for one that existed before the rows came (every
# row through aminsert, on disk, as concurrent INSERTs would place it).
#
# The data set comes from the Debian package dataset-fashion-mnist
# (/usr/share/datasets/fashion-mnist); without it the test is skipped.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use IO::Uncompress::Gunzip qw($GunzipError);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use VecphiCheck;
use VecphiTest;

my $dataset_dir = '/usr/share/datasets/fashion-mnist';
my $train_file = "$dataset_dir/train-images-idx3-ubyte.gz";
my $test_file = "$dataset_dir/t10k-images-idx3-ubyte.gz";
if (!-r $train_file || !-r $test_file)
{
	plan skip_all =>
	  "Fashion-MNIST not found in $dataset_dir (Debian package dataset-fashion-mnist)";
}

my $nrows = 10000;
my $nqueries_loaded = 100;
my $nqueries = 50;
my $k = 10;
my $dims = 28 * 28;
my $min_recall = 0.95;

# The first $n images of an IDX3 file (big-endian header: magic 2051,
# count, rows, columns; then count * rows * columns unsigned bytes), as
# references to arrays of $dims pixel values.
sub read_idx_images
{
	my ($file, $n) = @_;
	my $z = IO::Uncompress::Gunzip->new($file)
	  or die "could not open \"$file\": $GunzipError";
	my $header = read_exactly($z, 16, $file);
	my ($magic, $count, $rows, $cols) = unpack('N4', $header);
	die "\"$file\" is not an IDX3 image file (magic $magic)" if $magic != 2051;
	die "\"$file\" has ${rows}x$cols images, expected 28x28"
	  if $rows * $cols != $dims;
	die "\"$file\" has $count images, fewer than $n" if $count < $n;
	my $pixels = read_exactly($z, $n * $dims, $file);
	$z->close;
	return [ map { [ unpack('C*', substr($pixels, $_ * $dims, $dims)) ] }
		  0 .. $n - 1 ];
}

sub read_exactly
{
	my ($z, $len, $file) = @_;
	my $buf = '';
	while (length($buf) < $len)
	{
		my $got = $z->read(my $chunk, $len - length($buf));
		die "could not read \"$file\": $GunzipError" if !defined $got || $got < 0;
		die "\"$file\" is truncated" if $got == 0;
		$buf .= $chunk;
	}
	return $buf;
}

# COPY text input: "id<TAB>[v1,...,vn]" per row.
sub write_copy_file
{
	my ($path, $images) = @_;
	open my $fh, '>', $path or die "could not write \"$path\": $!";
	for my $i (0 .. $#$images)
	{
		print $fh $i, "\t[", join(',', @{ $images->[$i] }), "]\n";
	}
	close $fh or die "could not write \"$path\": $!";
	return;
}

my $t0 = time;
my $train = read_idx_images($train_file, $nrows);
my $test = read_idx_images($test_file, $nqueries_loaded);
is(scalar @$train, $nrows, "read $nrows training images");
is(scalar @{ $train->[0] }, $dims, "of $dims pixels each");

my $tmp = PostgreSQL::Test::Utils::tempdir;
write_copy_file("$tmp/fm.copy", $train);
write_copy_file("$tmp/fmq.copy", $test);
note sprintf('data set read and written in %.1f s', time - $t0);

my $node = VecphiTest::new_node('recall');
$node->start;
my $claims = VecphiCheck::claims_do(
	tenant => 'atelier',
	role => 'clinician',
	sub => 'designer');

$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('atelier');
	CREATE TABLE fm (id int PRIMARY KEY, emb evector($dims));
	CREATE TABLE fmq (id int PRIMARY KEY, emb evector($dims));
});

$t0 = time;
$node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	COPY fm FROM '$tmp/fm.copy';
	COPY fmq FROM '$tmp/fmq.copy';
	COMMIT;
	VACUUM ANALYZE fm;
	VACUUM ANALYZE fmq;
});
note sprintf('COPY of %d + %d rows (encrypting) took %.1f s',
	$nrows, $nqueries_loaded, time - $t0);
is($node->safe_psql('postgres', 'SELECT count(*) FROM fm'), $nrows, 'all rows loaded');

$t0 = time;
$node->safe_psql('postgres', 'CREATE INDEX fm_emb ON fm USING ehnsw (emb)');
note sprintf('CREATE INDEX (m 16, ef_construction 64) took %.1f s', time - $t0);
is($node->safe_psql('postgres', "SELECT vecphi.index_check('fm_emb')"),
	't', 'index_check passes after the build');

# The same rows, inserted one by one into a table whose index already
# exists: the envelopes are copied as they are (no claims needed).
$node->safe_psql(
	'postgres', qq{
	CREATE TABLE fm_ins (id int PRIMARY KEY, emb evector($dims));
	CREATE INDEX fm_ins_emb ON fm_ins USING ehnsw (emb);
});
$t0 = time;
$node->safe_psql('postgres', 'INSERT INTO fm_ins SELECT id, emb FROM fm ORDER BY id; VACUUM ANALYZE fm_ins;');
note sprintf('%d inserts into an existing index took %.1f s', $nrows, time - $t0);
is($node->safe_psql('postgres', "SELECT vecphi.index_check('fm_ins_emb')"),
	't', 'index_check passes after the inserts');
is($node->safe_psql('postgres', 'SHOW vecphi.ef_search'), '40', 'ef_search is at its default');

# The k nearest rows of $table to each of the first $nqueries queries, as
# one line per query: "qid|id:distance,id:distance,...", in the order the
# scan returned them.  $where filters the rows.
sub knn_sql
{
	my ($table, $use_index, $where) = @_;
	my $settings =
	  $use_index
	  ? 'SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;'
	  : 'SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off;';
	$where = $where ? "WHERE $where" : '';
	# The lateral subquery is rescanned once per query: for the index, a
	# rescan with a new ORDER BY argument each time.
	return qq{
	BEGIN;
	$claims
	$settings
	SELECT q.id, string_agg(r.id || ':' || r.d, ',' ORDER BY r.ord)
	FROM fmq q CROSS JOIN LATERAL (
		SELECT s.id, s.emb <-> q.emb AS d, row_number() OVER () AS ord
		FROM (SELECT f.id, f.emb FROM $table f $where ORDER BY f.emb <-> q.emb LIMIT $k) s
	) r
	WHERE q.id < $nqueries
	GROUP BY q.id ORDER BY q.id;
	COMMIT;
	};
}

sub plan_of
{
	my $sql = knn_sql(@_);
	$sql =~ s/SELECT q\.id/EXPLAIN (COSTS OFF) SELECT q.id/;
	return $node->safe_psql('postgres', $sql);
}

# Run a knn_sql query: { qid => [ [id, distance], ... ] }
sub knn
{
	my ($label, @args) = @_;
	my $start = time;
	my $out = $node->safe_psql('postgres', knn_sql(@args));
	note sprintf('%s: %d queries in %.1f s', $label, $nqueries, time - $start);
	my %res;
	for my $line (split /\n/, $out)
	{
		my ($qid, $list) = split /\|/, $line, 2;
		$res{$qid} = [ map { [ split /:/, $_, 2 ] } split /,/, ($list // '') ];
	}
	return \%res;
}

# Recall of $got against $exact, tie-aware (see the top) and strict (the
# same ids), and whether every list of $got had $k distinct rows (and, with
# $ordered, came nearest first).
sub compare
{
	my ($label, $exact, $got, $ordered) = @_;
	my ($hits, $same, $total, $short, $dups, $unordered) = (0, 0, 0, 0, 0, 0);
	my $worst = 1;
	for my $qid (0 .. $nqueries - 1)
	{
		my $e = $exact->{$qid} // [];
		my $g = $got->{$qid} // [];
		die "exact top $k of query $qid has " . scalar(@$e) . ' rows'
		  if @$e != $k;
		my $bound = $e->[-1][1] + 1e-6;
		my %exact_ids = map { $_->[0] => 1 } @$e;
		my %seen;
		my $qhits = 0;
		for my $i (0 .. $#$g)
		{
			my ($id, $d) = @{ $g->[$i] };
			$dups++ if $seen{$id}++;
			$qhits++ if $d <= $bound;
			$same++ if $exact_ids{$id};
			$unordered++ if $i > 0 && $d < $g->[ $i - 1 ][1] - 1e-9;
		}
		$short++ if keys %seen < $k;
		$qhits = $k if $qhits > $k;
		$hits += $qhits;
		$total += $k;
		$worst = $qhits / $k if $qhits / $k < $worst;
	}
	my $recall = $hits / $total;
	diag sprintf('%s: recall@%d = %.4f (same ids: %.4f, worst query %.2f) over %d queries',
		$label, $k, $recall, $same / $total, $worst, $nqueries);
	is($short, 0, "$label: every query returned $k rows");
	is($dups, 0, "$label: no row returned twice");
	is($unordered, 0, "$label: rows come nearest first") if $ordered;
	cmp_ok($recall, '>=', $min_recall, "$label: recall\@$k >= $min_recall");
	return $recall;
}

my @filters = ('f.id % 10 = 3', 'f.id % 100 = 7');
unlike(plan_of('fm', 0), qr/fm_emb/, 'the exact query does not use the index');
my $exact = knn('exact', 'fm', 0);
my %exact_f = map { $_ => knn("exact, WHERE $_", 'fm', 0, $_) } @filters;

for my $table ('fm', 'fm_ins')
{
	my $how = $table eq 'fm' ? 'built' : 'inserted';
	like(plan_of($table, 1), qr/Index Scan using ${table}_emb on $table/,
		"$how: the query uses the ehnsw index");
	compare($how, $exact, knn("index ($how)", $table, 1), 1);

	# Filters that keep 10 % and 1 % of the rows.
	for my $filter (@filters)
	{
		my ($mod, $rest) = $filter =~ /% (\d+) = (\d+)/;
		like(plan_of($table, 1, $filter), qr/Index Scan using ${table}_emb on $table/,
			"$how, WHERE $filter: the query uses the ehnsw index");
		my $approx_f = knn("index ($how), WHERE $filter", $table, 1, $filter);
		my $bad = grep { $_->[0] % $mod != $rest } map { @$_ } values %$approx_f;
		is($bad, 0, "$how, WHERE $filter: every row returned matches the filter");
		compare("$how, WHERE $filter", $exact_f{$filter}, $approx_f, 0);
	}
}

$node->stop;
done_testing();
