# vecphi: VACUUM erases deleted rows' ciphertext from an ehnsw index.
#
# Rows of two tenants, some indexed by CREATE INDEX (the build) and some by
# INSERT into the existing index.  For every row a 32-byte slice of its
# ciphertext (after the 16-byte header and the 12-byte nonce of its
# envelope, as emb::text shows it) is taken.  The index file holds every
# slice at first (the search works).  After DELETE of half the rows,
# VACUUM and CHECKPOINT, the index file holds none of the deleted rows'
# slices and all of the kept rows' slices; the index still passes
# index_check and finds the kept rows.  Then every row of one tenant goes:
# its slices are gone too, and the tenant leaves the index's directory.
#
# A single deleted row of a larger table is erased by VACUUM (INDEX_CLEANUP
# ON); a plain VACUUM leaves it (a TODO test: PostgreSQL bypasses index
# vacuuming then).
#
# Finally the same for an UNLOGGED table, whose index is not WAL-logged,
# over two rounds of DELETE and VACUUM: no row's ciphertext may be left.
#
# At no point does the index file contain the vectors' plaintext floats,
# whose bytes a plain real[] table shows where to look for.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use MIME::Base64 qw(decode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $dims = 32;
my $header_len = 16;
my $nonce_len = 12;
my $tag_len = 16;
my $slice_len = 32;

my $node = VecphiTest::new_node('erasure');
$node->start;

my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(t_a t_b);

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t_a');
	SELECT vecphi.create_tenant('t_b');
});
my %tenant_id = map {
	$_ => $node->safe_psql('postgres',
		"SELECT tenant_id FROM vecphi.tenants WHERE tenant = '$_'")
} qw(t_a t_b);

# Row $id's vector: 1000 + id + j/8, exact in float4, different per row.
sub floats
{
	my ($id) = @_;
	return map { 1000 + $id + $_ / 8 } 0 .. $dims - 1;
}

sub literal
{
	my ($id) = @_;
	return '[' . join(',', floats($id)) . ']';
}

# Rows 1..200 of t_a and 1001..1200 of t_b; the first 120 of each before
# CREATE INDEX, the rest after.
my %tenant_of;
$tenant_of{$_} = 't_a' for 1 .. 200;
$tenant_of{$_} = 't_b' for 1001 .. 1200;

sub insert_rows
{
	my (@ids) = @_;
	for my $tenant (qw(t_a t_b))
	{
		my @mine = grep { $tenant_of{$_} eq $tenant } @ids;
		next unless @mine;
		my $values = join(",\n", map { "($_, '$tenant', '" . literal($_) . "')" } @mine);
		$node->safe_psql(
			'postgres', qq{
			BEGIN;
			$claims{$tenant}
			INSERT INTO docs VALUES $values;
			COMMIT;
		});
	}
	return;
}

$node->safe_psql(
	'postgres', qq{
	CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector($dims))
		WITH (autovacuum_enabled = off);
	CREATE TABLE plain (id int PRIMARY KEY, v real[])
		WITH (autovacuum_enabled = off);
	INSERT INTO plain VALUES (1, '{@{[ join(',', floats(1)) ]}}');
});
insert_rows((1 .. 120), (1001 .. 1120));
$node->safe_psql('postgres', 'CREATE INDEX docs_emb ON docs USING ehnsw (emb)');
insert_rows((121 .. 200), (1121 .. 1200));
is($node->safe_psql('postgres', "SELECT vecphi.index_check('docs_emb')"),
	't', 'index_check passes after build and inserts');

# id => ciphertext slice, from the envelopes as the server prints them.
my %slice;
my $bad_envelopes = 0;
for my $line (split /\n/,
	$node->safe_psql('postgres', 'SELECT id, emb::text FROM docs ORDER BY id'))
{
	my ($id, $text) = split /\|/, $line, 2;
	if ($text !~ /^vecphi:([A-Za-z0-9+\/=]+)$/)
	{
		$bad_envelopes++;
		next;
	}
	my $env = decode_base64($1);
	my ($format, $kind, $reserved, $tid, $dek, $count) = unpack('C C n N N N', $env);
	$bad_envelopes++
	  if $format != 1
	  || $kind != 1
	  || $tid != $tenant_id{ $tenant_of{$id} }
	  || $count != $dims
	  || length($env) != $header_len + $nonce_len + 4 * $dims + $tag_len;
	$slice{$id} = substr($env, $header_len + $nonce_len, $slice_len);
}
is(scalar keys %slice, 400, 'an envelope for each of the 400 rows');
is($bad_envelopes, 0, 'every envelope has the expected header and length');

# The index's main fork, as one string.
sub index_bytes
{
	my $path = $node->safe_psql('postgres', "SELECT pg_relation_filepath('docs_emb')");
	my @files = grep { -f } map { $node->data_dir . "/$path$_" } ('', '.1');
	return join('', map { slurp_file($_) } @files);
}

# How many of @ids have their slice in $bytes.
sub slices_in
{
	my ($bytes, @ids) = @_;
	return scalar grep { index($bytes, $slice{$_}) >= 0 } @ids;
}

# How many of @ids have their first four plaintext floats in $bytes.
sub floats_in
{
	my ($bytes, @ids) = @_;
	return scalar grep { index($bytes, pack('f<4', (floats($_))[ 0 .. 3 ])) >= 0 } @ids;
}

# The float pattern is what a plain real[] column stores.
$node->safe_psql('postgres', 'CHECKPOINT');
ok(VecphiTest::files_contain(pack('f<4', (floats(1))[ 0 .. 3 ]),
		VecphiTest::relation_files($node, 'postgres', 'plain')) >= 1,
	'control: a real[] table holds the float pattern');

my @all = sort { $a <=> $b } keys %slice;
my $bytes = index_bytes();
is(slices_in($bytes, @all), 400, 'before any delete: the index holds every row\'s ciphertext');
is(floats_in($bytes, @all), 0, 'and no row\'s plaintext floats');

# The nearest rows of a tenant by the index (claims of that tenant) to the
# vector of (fractional) row number $x: ids at distance |id - x| * sqrt(32).
sub nearest
{
	my ($tenant, $x, $limit) = @_;
	return VecphiCheck::index_search_ids($node, $claims{$tenant},
		"'@{[ literal($x) ]}'::evector", $limit);
}

# ---- delete half of each tenant's rows ----
my @deleted = grep { $_ % 2 == 0 } @all;
my @kept = grep { $_ % 2 == 1 } @all;
$node->safe_psql('postgres', 'DELETE FROM docs WHERE id % 2 = 0');
$node->safe_psql('postgres', 'VACUUM docs');
$node->safe_psql('postgres', 'CHECKPOINT');
$bytes = index_bytes();
is(slices_in($bytes, @deleted), 0, 'after DELETE, VACUUM, CHECKPOINT: no deleted row\'s ciphertext is left in the index');
is(slices_in($bytes, @kept), scalar @kept, 'every kept row\'s ciphertext is still there');
is(floats_in($bytes, @all), 0, 'and no plaintext floats');
is($node->safe_psql('postgres', "SELECT vecphi.index_check('docs_emb')"),
	't', 'index_check passes after the vacuum');
is(nearest('t_a', 51.1, 3), '51,53,49', 't_a: the index finds the nearest kept rows');
is(nearest('t_b', 1051.1, 3), '1051,1053,1049', 't_b: the index finds the nearest kept rows');
is(nearest('t_a', 50.1, 1), '51', 't_a: a deleted row\'s own vector finds a kept neighbour');

# ---- delete every row of t_b ----
my @b_rows = grep { $tenant_of{$_} eq 't_b' } @kept;
my @a_rows = grep { $tenant_of{$_} eq 't_a' } @kept;
$node->safe_psql('postgres', "DELETE FROM docs WHERE tenant = 't_b'");
$node->safe_psql('postgres', 'VACUUM docs');
$node->safe_psql('postgres', 'CHECKPOINT');
$bytes = index_bytes();
is(slices_in($bytes, @b_rows, @deleted), 0, 'after deleting all of t_b: none of its ciphertext is left');
is(slices_in($bytes, @a_rows), scalar @a_rows, 't_a\'s kept ciphertext is all there');
is(floats_in($bytes, @all), 0, 'and no plaintext floats');
is($node->safe_psql('postgres', "SELECT vecphi.index_check('docs_emb')"),
	't', 'index_check passes with one tenant gone');
is(nearest('t_b', 1051.1, 3), '', 't_b: the index finds nothing');
is(nearest('t_a', 151.1, 3), '151,153,149', 't_a: the index still works');
# The metapage's tenant directory: only t_a's entry point is left.  Block 0
# holds, after the 24-byte page header, magic, version, dims, m,
# ef_construction, metric, insert block and ntenants (native byte order).
my $meta = substr($bytes, 24, 36);
my ($magic, $version, $mdims, $m, $efc, $metric, $insert_blk, $ntenants, $first_tenant) =
  unpack('L L L S S l L L L', $meta);
is($magic, 0x45484E57, 'the metapage has the ehnsw magic');
is("$ntenants $first_tenant", "1 $tenant_id{t_a}", 'the tenant directory holds t_a only');

# ---- one deleted row among many ----
# VACUUM (INDEX_CLEANUP AUTO, the default) skips index vacuuming when fewer
# than 2 % of the table's pages (here about 160) have dead rows ("index
# scan bypassed"), so the index keeps the row's element, ciphertext
# included, until a later VACUUM does call the index.  INDEX_CLEANUP ON
# makes it call the index's bulk delete, which erases the ciphertext.
$node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims{t_a}
	INSERT INTO docs SELECT g, 't_a', ARRAY(SELECT 5000 + g + j / 8.0 FROM generate_series(0, $dims - 1) j)::real[]
		FROM generate_series(5001, 11000) g;
	COMMIT;
	VACUUM docs;
	CHECKPOINT;
});
my $victim_text = $node->safe_psql('postgres', 'SELECT emb::text FROM docs WHERE id = 6000');
my $victim = substr(decode_base64(substr($victim_text, 7)), $header_len + $nonce_len, $slice_len);
is(VecphiTest::files_contain($victim, index_path()), 1, 'a new row\'s ciphertext is in the index');
$node->safe_psql('postgres', 'DELETE FROM docs WHERE id = 6000');
$node->safe_psql('postgres', 'VACUUM docs; CHECKPOINT;');
TODO:
{
	local $TODO = 'PostgreSQL bypasses index vacuuming when under 2 % of the pages have dead rows; use VACUUM (INDEX_CLEANUP ON) to erase';
	is(VecphiTest::files_contain($victim, index_path()), 0,
		'after a plain VACUUM: the single deleted row\'s ciphertext is gone');
}
$node->safe_psql('postgres', 'VACUUM (INDEX_CLEANUP ON) docs; CHECKPOINT;');
is(VecphiTest::files_contain($victim, index_path()), 0,
	'after VACUUM (INDEX_CLEANUP ON): the single deleted row\'s ciphertext is gone');
is($node->safe_psql('postgres', "SELECT vecphi.index_check('docs_emb')"),
	't', 'index_check passes');
is($node->safe_psql('postgres', "SELECT count(*) FROM docs"), 6099, '6099 rows are left');

# ---- an unlogged table ----
# Its index is not WAL-logged.  Two rounds of DELETE and VACUUM: the
# first leaves the kept rows' items moved within their pages, the second
# deletes those too.  After a clean shutdown (which writes unlogged
# relations out), no row's ciphertext may be left in the index file.
$node->safe_psql(
	'postgres', qq{
	CREATE UNLOGGED TABLE udocs (id int PRIMARY KEY, emb evector($dims))
		WITH (autovacuum_enabled = off);
	BEGIN;
	$claims{t_a}
	INSERT INTO udocs VALUES @{[ join(', ', map { "($_, '" . literal($_) . "')" } 1 .. 300) ]};
	COMMIT;
	CREATE INDEX udocs_emb ON udocs USING ehnsw (emb);
});
my %uslice;
for my $line (split /\n/, $node->safe_psql('postgres', 'SELECT id, emb::text FROM udocs'))
{
	my ($id, $text) = split /\|/, $line, 2;
	$uslice{$id} = substr(decode_base64(substr($text, 7)), $header_len + $nonce_len, $slice_len);
}
my $upath = $node->data_dir . '/'
  . $node->safe_psql('postgres', "SELECT pg_relation_filepath('udocs_emb')");
my @odd = grep { $_ % 2 } 1 .. 300;
my @even = grep { !($_ % 2) } 1 .. 300;

$node->safe_psql('postgres', 'DELETE FROM udocs WHERE id % 2 = 0; VACUUM udocs;');
$node->stop;
my $ubytes = slurp_file($upath);
is(scalar(grep { index($ubytes, $uslice{$_}) >= 0 } @even), 0,
	'unlogged: after DELETE and VACUUM, no deleted row\'s ciphertext is left');
is(scalar(grep { index($ubytes, $uslice{$_}) >= 0 } @odd), scalar(@odd),
	'unlogged: every kept row\'s ciphertext is there');
$node->start;

$node->safe_psql('postgres', 'DELETE FROM udocs; VACUUM udocs;');
is($node->safe_psql('postgres', "SELECT vecphi.index_check('udocs_emb')"),
	't', 'unlogged: index_check passes');
$node->stop;
$ubytes = slurp_file($upath);
my @left = grep { index($ubytes, $uslice{$_}) >= 0 } 1 .. 300;
is(scalar(@left), 0,
	'unlogged: after deleting every row and VACUUM, no row\'s ciphertext is left in the index')
  or diag 'ciphertext left of rows: ' . join(',', @left[ 0 .. ($#left < 19 ? $#left : 19) ]);
$node->start;

sub index_path
{
	my $path = $node->safe_psql('postgres', "SELECT pg_relation_filepath('docs_emb')");
	return grep { -f } map { $node->data_dir . "/$path$_" } ('', '.1');
}

$node->stop;
done_testing();
