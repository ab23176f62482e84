# vecphi: what reaches the disk is ciphertext.
#
# Rows with a distinctive vector (256 floats 4321.125, 4322.125, ...; their
# little-endian bytes are a pattern no other data has) and a distinctive
# text (PATIENT-ZEBRA-7781) are stored twice: encrypted, as evector and
# etext, and in a control table as real[] and text.  After a checkpoint,
# the control table's files and the WAL of its inserts hold the pattern and
# the text (so the search works), and the encrypted table's files (heap,
# TOAST, indexes, all forks) and the WAL of its inserts hold neither, while
# they do hold the envelopes.  The encrypted inserts come first, each phase
# in WAL segments of its own (pg_switch_wal), so the control data cannot be
# in the encrypted phase's WAL.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('disk');
# Keep old WAL segments: checkpoints must not recycle the ones examined.
$node->append_conf('postgresql.conf', "wal_keep_size = '1GB'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION vecphi');
my $tenant_id =
  $node->safe_psql('postgres', "SELECT vecphi.create_tenant('st_marys')");

my $dims = 256;
my @floats = map { 4321.125 + $_ } 0 .. $dims - 1;    # exact in float
my $literal = '[' . join(',', @floats) . ']';
my $array = 'ARRAY[' . join(',', @floats) . ']::real[]';
my $float_pattern = pack('f<4', @floats[ 0 .. 3 ]);
my $text_pattern = 'PATIENT-ZEBRA-7781';
my $long_text = "$text_pattern chest pain radiating to the left arm. " x 400;
my $claims = VecphiCheck::claims_do(
	tenant => 'st_marys',
	role => 'clinician',
	sub => 'dr_a');

# Envelope headers (format 1, kind, reserved, tenant, data key 1, count):
# proof that the encrypted table's files were found and read.
my $vector_header = pack('C4 N3', 1, 1, 0, 0, $tenant_id, 1, $dims);
my $long_text_header =
  pack('C4 N3', 1, 2, 0, 0, $tenant_id, 1, length $long_text);

$node->safe_psql(
	'postgres', qq{
	CREATE TABLE enc (id int PRIMARY KEY, body etext, embedding evector($dims));
	CREATE TABLE plain (id int PRIMARY KEY, body text, embedding real[]);
	ALTER TABLE plain ALTER body SET STORAGE EXTERNAL,
		ALTER embedding SET STORAGE EXTERNAL;
	CHECKPOINT;
	SELECT pg_switch_wal();
});

# ---- the encrypted rows, in WAL segments of their own ----
my $enc_first = VecphiCheck::current_walfile($node, 'postgres');
$node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	INSERT INTO enc SELECT g, ('$text_pattern chest pain, row ' || g)::etext, '$literal'
		FROM generate_series(1, 40) AS g;
	INSERT INTO enc SELECT g, vecphi.encrypt('$text_pattern follow-up ' || g), $array
		FROM generate_series(41, 80) AS g;
	INSERT INTO enc VALUES (81, '$long_text', '$literal');
	COMMIT;
	UPDATE enc SET id = id + 1000 WHERE id <= 10;
	DELETE FROM enc WHERE id BETWEEN 1001 AND 1005;
	CHECKPOINT;
});
my $enc_last = VecphiCheck::current_walfile($node, 'postgres');
$node->safe_psql('postgres', 'SELECT pg_switch_wal()');
# Examined now, before the control phase writes any WAL.
my @enc_wal = VecphiCheck::wal_segments($node, $enc_first, $enc_last);
my %enc_wal_hits = (
	envelope => VecphiTest::files_contain($vector_header, @enc_wal),
	float => VecphiTest::files_contain($float_pattern, @enc_wal),
	text => VecphiTest::files_contain($text_pattern, @enc_wal),
	digits => VecphiTest::files_contain('4321.125', @enc_wal));

# ---- the control rows, after ----
my $plain_first = VecphiCheck::current_walfile($node, 'postgres');
$node->safe_psql(
	'postgres', qq{
	INSERT INTO plain SELECT g, '$text_pattern chest pain, row ' || g, $array
		FROM generate_series(1, 40) AS g;
	INSERT INTO plain VALUES (81, '$long_text', $array);
	CHECKPOINT;
});
my $plain_last = VecphiCheck::current_walfile($node, 'postgres');
$node->safe_psql('postgres', 'SELECT pg_switch_wal()');

my @enc_files = VecphiTest::relation_files($node, 'postgres', 'enc');
my @plain_files = VecphiTest::relation_files($node, 'postgres', 'plain');
my @plain_wal = VecphiCheck::wal_segments($node, $plain_first, $plain_last);
note 'encrypted table files: ' . join(' ', @enc_files);
note 'encrypted phase WAL: ' . join(' ', @enc_wal);
note 'control phase WAL: ' . join(' ', @plain_wal);

# The encrypted table has heap, TOAST (the long text) and index files.
ok(@enc_files >= 4, 'encrypted table: heap, TOAST and index files found');
my $toast_path = $node->safe_psql('postgres',
	"SELECT pg_relation_filepath(reltoastrelid) FROM pg_class WHERE relname = 'enc'");
ok(-s $node->data_dir . "/$toast_path", 'the long etext went to TOAST');
ok(@enc_wal >= 1 && @plain_wal >= 1, 'WAL segments of both phases found');

# The search works: the control data shows both patterns, on disk and in WAL.
ok(VecphiTest::files_contain($float_pattern, @plain_files) >= 1,
	'control: float bytes in the relation files');
ok(VecphiTest::files_contain($text_pattern, @plain_files) >= 1,
	'control: text in the relation files');
ok(VecphiTest::files_contain($float_pattern, @plain_wal) >= 1,
	'control: float bytes in its WAL');
ok(VecphiTest::files_contain($text_pattern, @plain_wal) >= 1,
	'control: text in its WAL');

# The envelopes are there ...
ok(VecphiTest::files_contain($vector_header, @enc_files) >= 1,
	'encrypted: evector envelopes in the relation files');
ok(VecphiTest::files_contain($long_text_header, @enc_files) >= 1,
	'encrypted: the long etext envelope in the TOAST files');
ok($enc_wal_hits{envelope} >= 1, 'encrypted: evector envelopes in its WAL');

# ... and the plaintext is not.
is(VecphiTest::files_contain($float_pattern, @enc_files),
	0, 'encrypted: no float bytes in heap, TOAST or index files');
is(VecphiTest::files_contain($text_pattern, @enc_files),
	0, 'encrypted: no text in heap, TOAST or index files');
is($enc_wal_hits{float}, 0, 'encrypted: no float bytes in the WAL of its inserts');
is($enc_wal_hits{text}, 0, 'encrypted: no text in the WAL of its inserts');
# Nor the text form of the numbers (as a dump or log would have it).
is(VecphiTest::files_contain('4321.125', @enc_files) + $enc_wal_hits{digits},
	0, 'encrypted: no float digits either');

# And it all still decrypts.
my $check = $node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	SELECT count(*),
		count(*) FILTER (WHERE vecphi.decrypt(embedding) = $array),
		count(*) FILTER (WHERE vecphi.decrypt(body) LIKE '$text_pattern %')
	FROM enc;
	SELECT vecphi.decrypt(body) = '$long_text' FROM enc WHERE id = 81;
	COMMIT;
});
is($check, "76|76|76\nt", 'every row decrypts to what was stored');

$node->stop;
done_testing();
