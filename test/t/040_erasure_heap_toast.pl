# vecphi: DELETE then VACUUM leaves no byte of the deleted rows' ciphertext
# in the table's files (heap, TOAST, their indexes, the ehnsw index), on
# the primary and on a streaming standby.
#
# Five patients of one tenant, each with notes: a 784-dimension embedding
# (its envelope goes to TOAST) and a body, half of them short (kept inline
# in the heap page) and half long (TOAST).  From every value, as the
# server prints its envelope, three 32-byte slices of ciphertext are taken
# (start, middle, end).  Every slice is first found in the files (so the
# search can find bytes); then:
#
#   alice: DELETE, VACUUM, CHECKPOINT      -> none of her slices anywhere,
#                                             primary and standby (the
#                                             table's first scrub reads
#                                             every page)
#   carol: DELETE, VACUUM with vecphi.scrub_on_vacuum off -> some of her
#          bytes are still there (what PostgreSQL alone leaves, on pages
#          it then marks all-visible); then a VACUUM with scrubbing, which
#          reads only pages the visibility map says may need it -> none
#   dave:  DELETE, vecphi.scrub() only     -> none, the ehnsw index included
#   eve:   DELETE, VACUUM after VACUUMs that scrubbed  -> none
#   bob:   kept                            -> every slice still there
#
# Each erasure leaves one audit record (the placeholder writer logs it)
# with the number of rows and a salted digest of the subjects, which
# vecphi.erasure_digest() reproduces; the subject ids never appear.
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

my $dims = 784;
my $slice_len = 32;
my $claims = VecphiCheck::claims_do(tenant => 'erase_a', role => 'clinician', sub => 'dr_a');

my $primary = VecphiTest::new_node('primary', allows_streaming => 1);
$primary->start;
$primary->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('erase_a');
	CREATE TABLE notes (
		id		int PRIMARY KEY,
		tenant	text NOT NULL DEFAULT vecphi.tenant(),
		patient	text NOT NULL,
		body	etext,
		emb		evector(784)
	) WITH (autovacuum_enabled = off);
	SELECT vecphi.protect('notes', 'tenant');
	SELECT vecphi.track_erasure('notes', 'patient');
	CREATE INDEX notes_emb ON notes USING ehnsw (emb);
});

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
VecphiTest::configure_node($standby);
for my $f (VecphiCheck::dir_files(VecphiTest::key_dir($primary)))
{
	my $to = VecphiTest::key_dir($standby) . "/$f";
	copy(VecphiTest::key_dir($primary) . "/$f", $to) or die "copy $f: $!";
	chmod 0600, $to or die "chmod $f: $!";
}
$standby->start;

# 20 notes per patient, ids 100 * k + i; odd i have long bodies.  Inserted
# in turn (note 1 of each patient, then note 2, ...), so every page holds
# several patients' notes and no patient's notes end the table (VACUUM
# truncating empty pages at the end would erase them whatever we do).
my @patients = qw(alice bob carol dave eve);
my %patient_of;
srand(20261123);
for my $i (1 .. 20)
{
	my @rows;
	for my $k (0 .. $#patients)
	{
		my $id = 100 * ($k + 1) + $i;
		$patient_of{$id} = $patients[$k];
		my $vec = '[' . join(',', map { sprintf('%.4f', rand()) } 1 .. $dims) . ']';
		my $body = "$patients[$k] note $i: " . join(' ', map { int(rand(1e9)) } 1 .. ($i % 2 ? 400 : 4));
		push @rows, "($id, '$patients[$k]', vecphi.encrypt('$body'), '$vec')";
	}
	$primary->safe_psql('postgres',
		"BEGIN; $claims INSERT INTO notes (id, patient, body, emb) VALUES "
		  . join(",\n", @rows) . '; COMMIT;');
}
# id => [slices of its two envelopes]
my %slices;
for my $line (split /\n/,
	$primary->safe_psql('postgres', 'SELECT id, body::text, emb::text FROM notes ORDER BY id'))
{
	my ($id, @texts) = split /\|/, $line;
	for my $text (@texts)
	{
		my $env = decode_base64(substr($text, length('vecphi:')));
		my $len = length($env);
		# Header and nonce first (28 bytes), the tag last.  TOAST cuts a
		# value into chunks of 1996 bytes; no slice may straddle a cut.
		my $last_chunk = int(($len - 1) / 1996) * 1996;
		my $end = $len - $last_chunk >= $slice_len ? $len - $slice_len : $last_chunk - $slice_len;
		my @offsets = (28, int(($len < 1900 ? $len : 1900) / 2), $end);
		push @{ $slices{$id} }, map { substr($env, $_, $slice_len) } @offsets;
	}
}
is(scalar keys %slices, 100, 'an envelope pair for each of the 100 notes');
my ($short_len) = $primary->safe_psql('postgres',
	'SELECT count(*) FROM notes WHERE pg_column_size(body) < 200');
is($short_len, 50, 'half the bodies are short (inline in the heap page)');

# How many of the rows' slices the files of node's "notes" hold.
sub slices_found
{
	my ($node, @ids) = @_;
	my @files = VecphiTest::relation_files($node, 'postgres', 'notes');
	my $all = join('', map { slurp_file($_) } @files);
	my $found = 0;
	for my $id (@ids)
	{
		$found += scalar grep { index($all, $_) >= 0 } @{ $slices{$id} };
	}
	return $found;
}

sub ids_of
{
	my ($patient) = @_;
	return sort { $a <=> $b } grep { $patient_of{$_} eq $patient } keys %patient_of;
}

sub sync_standby
{
	$primary->wait_for_catchup($standby, 'replay');
	$standby->safe_psql('postgres', 'CHECKPOINT');
	return;
}

$primary->safe_psql('postgres', 'CHECKPOINT');
sync_standby();
my $per_patient = 20 * 6;
for my $p (@patients)
{
	is(slices_found($primary, ids_of($p)), $per_patient, "before: every slice of $p is in the primary's files");
}
is(slices_found($standby, ids_of('alice')), $per_patient, 'before: and in the standby\'s files');

# ---- alice: DELETE, VACUUM ----
$primary->safe_psql('postgres', "DELETE FROM notes WHERE patient = 'alice'");
is($primary->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure'),
	'20', 'the deletion is noted for the erasure record');
$primary->safe_psql('postgres', 'VACUUM notes');
$primary->safe_psql('postgres', 'CHECKPOINT');
is(slices_found($primary, ids_of('alice')), 0,
	'after DELETE, VACUUM, CHECKPOINT: no byte slice of alice\'s ciphertext in heap, TOAST or indexes');
is(slices_found($primary, ids_of('bob')), $per_patient, 'every slice of bob\'s is still there');
sync_standby();
is(slices_found($standby, ids_of('alice')), 0, 'standby: none of alice\'s ciphertext left');
is(slices_found($standby, ids_of('bob')), $per_patient, 'standby: bob\'s is all there');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure'),
	'0', 'the VACUUM consumed the pending note');

# The audit record: 20 rows, and the digest the security officer can
# recompute from the subject id; never the id itself.
my $digest = $primary->safe_psql('postgres',
	"SET ROLE vecphi_security_officer; SELECT vecphi.erasure_digest(ARRAY['alice'])");
like($digest, qr/^sha256:[0-9a-f]{64}$/, 'erasure_digest gives a sha256 digest');
my @audit_lines = VecphiCheck::audit_lines($primary);
like(join("\n", @audit_lines), qr/^erasure ok rows 20 vacuum: \d+ pages, \d+ scrubbed, \d+ bytes zeroed; subjects \Q$digest\E/m,
	'VACUUM wrote an erasure record with the count and the subjects digest');
cmp_ok(scalar(@audit_lines), '>', 0, 'vecphi.audit_log has records');
is(scalar(grep { /alice/ } @audit_lines), 0, 'no audit record names the subject');

# ---- carol: what PostgreSQL leaves without the scrub, then VACUUM ----
$primary->safe_psql('postgres', "DELETE FROM notes WHERE patient = 'carol'");
$primary->safe_psql('postgres', 'SET vecphi.scrub_on_vacuum = off; VACUUM notes; CHECKPOINT;');
my $left = slices_found($primary, ids_of('carol'));
cmp_ok($left, '>', 0, "control: a VACUUM without scrubbing leaves some of carol's ciphertext ($left slices)");
$primary->safe_psql('postgres', 'VACUUM notes; CHECKPOINT;');
is(slices_found($primary, ids_of('carol')), 0,
	'the next VACUUM (with scrubbing) finds the pages the unscrubbed one marked all-visible: none of carol\'s left');
my $carol = $primary->safe_psql('postgres',
	"SET ROLE vecphi_security_officer; SELECT vecphi.erasure_digest(ARRAY['carol'])");
like(join("\n", VecphiCheck::audit_lines($primary)), qr/^erasure ok rows 20 vacuum: .*subjects \Q$carol\E/m,
	'that VACUUM certified carol\'s 20 deletions');
is($primary->safe_psql('postgres',
		"SELECT pages_scrubbed, bytes_scrubbed, complete FROM vecphi.scrub('notes')"),
	'0|0|t', 'vecphi.scrub finds nothing left to zero');

# ---- dave: DELETE and vecphi.scrub, no VACUUM ----
$primary->safe_psql('postgres', "DELETE FROM notes WHERE patient = 'dave'");
is($primary->safe_psql('postgres', "SELECT index_elements_removed FROM vecphi.scrub('notes')"),
	'20', 'vecphi.scrub removed dave\'s 20 ehnsw elements');
$primary->safe_psql('postgres', 'CHECKPOINT');
is(slices_found($primary, ids_of('dave')), 0, 'after DELETE and vecphi.scrub: none of dave\'s ciphertext left');
is(slices_found($primary, ids_of('bob')), $per_patient, 'bob\'s ciphertext is all there');
is($primary->safe_psql('postgres', "SELECT vecphi.index_check('notes_emb')"), 't',
	'index_check passes');
is( $primary->safe_psql(
		'postgres', "BEGIN; $claims SET LOCAL enable_seqscan = off;
		SELECT count(*) FROM (SELECT id FROM notes ORDER BY emb <-> (SELECT emb FROM notes WHERE id = 201) LIMIT 5) s; COMMIT;"),
	'5', 'the index still finds bob\'s notes');
# ---- eve: DELETE and VACUUM once more ----
$primary->safe_psql('postgres', 'VACUUM notes');
$primary->safe_psql('postgres', "DELETE FROM notes WHERE patient = 'eve'");
$primary->safe_psql('postgres', 'VACUUM notes; CHECKPOINT;');
is(slices_found($primary, ids_of('eve')), 0, 'after DELETE and VACUUM: none of eve\'s ciphertext left');
is(slices_found($primary, ids_of('bob')), $per_patient, 'bob\'s ciphertext is all there');

sync_standby();
is(slices_found($standby, ids_of('carol'), ids_of('dave'), ids_of('eve')), 0,
	'standby: none of carol\'s, dave\'s or eve\'s left');
is(slices_found($standby, ids_of('bob')), $per_patient, 'standby: bob\'s is all there');

# A final VACUUM clears the dead line pointers the scrub left.
$primary->safe_psql('postgres', 'VACUUM notes');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM notes'), '20', 'bob\'s 20 notes are left');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure'), '0',
	'every deletion was certified');

$standby->stop;
$primary->stop;
done_testing();
