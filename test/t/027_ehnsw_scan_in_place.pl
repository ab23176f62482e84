# vecphi: an ehnsw scan decrypts elements in place, straight from the
# shared buffer under its share lock, when an element's data key is the one
# the element before it was decrypted under; any other element is copied
# and decrypted after the lock is released (ehnswutils.c).  Both paths give
# the same answers and the same errors:
#
#  - rows under two data keys of a tenant (rotate_dek between them, the
#    keys interleaved along the graph walk) are found exactly as an exact
#    scan finds them, from a fresh session (nothing cached) and again in
#    the same session;
#  - an element whose ciphertext was altered in the index file (one bit,
#    written with the server stopped) makes a search that reaches it fail
#    with XX001 "evector value failed authentication", never a wrong
#    answer; the server keeps running and the same session goes on;
#  - REINDEX rebuilds the index from the table, after which every search
#    works again.
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

my $dims = 8;
my $header_len = 16;
my $nonce_len = 12;

my $node = VecphiTest::new_node('scan_in_place');
$node->start;

my $claims = VecphiCheck::claims_do(tenant => 't_a', role => 'clinician', sub => 'dr_a');

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t_a');
	CREATE TABLE docs (id int PRIMARY KEY, emb evector(8))
		WITH (autovacuum_enabled = off);
});

# Row $id: a point on a line, so that the nearest rows are known.
sub literal
{
	my ($id) = @_;
	return '[' . join(',', map { $id + $_ / 16 } 0 .. $dims - 1) . ']';
}

sub insert_rows
{
	my (@ids) = @_;
	my $values = join(",\n", map { "($_, '" . literal($_) . "')" } @ids);
	$node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims
		INSERT INTO docs VALUES $values;
		COMMIT;
	});
	return;
}

# Even rows under data key 1, odd rows under data key 2.
insert_rows(grep { $_ % 2 == 0 } 1 .. 120);
is($node->safe_psql('postgres', "SELECT vecphi.rotate_dek('t_a')"), '2', 'rotate_dek');
insert_rows(grep { $_ % 2 == 1 } 1 .. 120);
$node->safe_psql('postgres', 'CREATE INDEX docs_emb ON docs USING ehnsw (emb)');
is($node->safe_psql('postgres', "SELECT vecphi.index_check('docs_emb')"),
	't', 'index_check passes');
is( $node->safe_psql('postgres',
		"SELECT count(DISTINCT split_part(vecphi.key_id(emb), '/', 2)) FROM docs"),
	'2', 'the rows are under two data keys');

# The $limit rows nearest to row number $x: by the index, and exactly.
sub by_index
{
	my ($x, $limit) = @_;
	return VecphiCheck::index_search_ids($node, $claims,
		"'@{[ literal($x) ]}'::evector", $limit);
}

sub exact
{
	my ($x, $limit) = @_;
	return $node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims
		SET LOCAL enable_indexscan = off;
		SELECT string_agg(id::text, ',') FROM
			(SELECT id FROM docs ORDER BY emb <-> '@{[ literal($x) ]}'::evector, id
			 LIMIT $limit) s;
		COMMIT;
	});
}

my $mismatches = 0;
for my $x (3.2, 17.7, 60.1, 99.6, 118.9)
{
	$mismatches++ if by_index($x, 5) ne exact($x, 5);
}
is($mismatches, 0, 'searches over two interleaved data keys find what an exact scan finds');

# Many searches in one session: the second and later reuse the cached key.
my $script = "BEGIN;\n$claims\nSET LOCAL enable_seqscan = off;\n";
$script .= "SELECT string_agg(id::text, ',') FROM (SELECT id FROM docs ORDER BY emb <-> "
  . "'@{[ literal($_) ]}'::evector LIMIT 3) s;\n"
  for (10.2, 50.2, 90.2);
$script .= "COMMIT;\n";
is($node->safe_psql('postgres', $script),
	"10,11,9\n50,51,49\n90,91,89", 'three searches in one session');

# ---- one bit of one element's ciphertext altered in the index file ----
my $victim = 64;
my $text = $node->safe_psql('postgres', "SELECT emb::text FROM docs WHERE id = $victim");
ok($text =~ /^vecphi:([A-Za-z0-9+\/=]+)$/, 'the victim row\'s envelope');
my $env = decode_base64($1);
my $slice = substr($env, $header_len + $nonce_len, 16);

$node->safe_psql('postgres', 'CHECKPOINT');
my $path = $node->data_dir . '/'
  . $node->safe_psql('postgres', "SELECT pg_relation_filepath('docs_emb')");
$node->stop;
my $bytes = slurp_file($path);
my $at = index($bytes, $slice);
ok($at > 0, 'the victim\'s ciphertext is in the index file');
is(index($bytes, $slice, $at + 1), -1, 'once');
substr($bytes, $at + 4, 1) = chr(ord(substr($bytes, $at + 4, 1)) ^ 0x01);
open my $fh, '+<', $path or die "could not open \"$path\": $!";
binmode $fh;
print $fh $bytes;
close $fh or die "could not write \"$path\": $!";
$node->start;

like(
	VecphiCheck::error_of(
		$node, 'postgres', qq{
		BEGIN;
		$claims
		SET LOCAL enable_seqscan = off;
		SELECT id FROM docs ORDER BY emb <-> '@{[ literal($victim) ]}'::evector LIMIT 5;
		COMMIT;
	}),
	qr/^XX001: evector value failed authentication/,
	'a search that reaches the altered element fails with XX001');

# The same session goes on after the error; the server is up.
my ($stdout, $stderr) = ('', '');
$node->psql(
	'postgres', qq{
	BEGIN;
	$claims
	SET LOCAL enable_seqscan = off;
	SELECT id FROM docs ORDER BY emb <-> '@{[ literal($victim) ]}'::evector LIMIT 5;
	ROLLBACK;
	SELECT 'after the error';
	SELECT count(*) FROM docs;
},
	stdout => \$stdout,
	stderr => \$stderr,
	on_error_stop => 0);
like($stderr, qr/evector value failed authentication/, 'the error again, in a session');
is($stdout, "after the error\n120", 'and the session goes on');

$node->safe_psql('postgres', 'REINDEX INDEX docs_emb');
is(by_index($victim + 0.2, 3), "$victim,@{[ $victim + 1 ]},@{[ $victim - 1 ]}",
	'after REINDEX the search works again');
is($node->safe_psql('postgres', "SELECT vecphi.index_check('docs_emb')"),
	't', 'and index_check passes');

$node->stop;
done_testing();
