# vecphi: autovacuum erases too, for a table with an ehnsw index.
#
# Autovacuum bypasses the ProcessUtility hook that scrubs after a manual
# VACUUM; the ehnsw index's amvacuumcleanup scrubs the table and its TOAST
# table instead.  Two patients' notes; one patient's are deleted and
# autovacuum is let loose on the table: afterwards (CHECKPOINT) none of
# the deleted notes' ciphertext is in the table's files, the kept
# patient's all is, and the server log has autovacuum's erasure record.
# The subjects are certified by the next manual VACUUM.
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

my $claims = VecphiCheck::claims_do(tenant => 'erase_c', role => 'clinician', sub => 'dr_c');

my $node = VecphiTest::new_node('autovacuum');
$node->append_conf('postgresql.conf', "autovacuum_naptime = 1s\n");
$node->start;
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('erase_c');
	CREATE TABLE notes (
		id		int PRIMARY KEY,
		tenant	text NOT NULL DEFAULT vecphi.tenant(),
		patient	text NOT NULL,
		body	etext,
		emb		evector(256)
	) WITH (autovacuum_enabled = off);
	SELECT vecphi.protect('notes', 'tenant');
	SELECT vecphi.track_erasure('notes', 'patient');
	CREATE INDEX notes_emb ON notes USING ehnsw (emb);
	BEGIN;
	$claims
	INSERT INTO notes (id, patient, body, emb)
		SELECT g, CASE WHEN g % 2 = 0 THEN 'erin' ELSE 'frank' END,
			vecphi.encrypt(repeat('note ' || g || ' ', 5 + 200 * (g % 3))),
			ARRAY(SELECT g + j / 1000.0 FROM generate_series(1, 256) j)::real[]
		FROM generate_series(1, 60) g;
	COMMIT;
	CHECKPOINT;
});

my %slices;
for my $line (split /\n/, $node->safe_psql('postgres', 'SELECT id, body::text, emb::text FROM notes'))
{
	my ($id, @texts) = split /\|/, $line;
	$slices{$id} = [ map { substr(decode_base64(substr($_, 7)), 28, 32) } @texts ];
}

sub found
{
	my (@ids) = @_;
	my $all = join('', map { slurp_file($_) } VecphiTest::relation_files($node, 'postgres', 'notes'));
	my $n = 0;
	for my $id (@ids)
	{
		$n += scalar grep { index($all, $_) >= 0 } @{ $slices{$id} };
	}
	return $n;
}
my @erin = grep { $_ % 2 == 0 } 1 .. 60;
my @frank = grep { $_ % 2 == 1 } 1 .. 60;
is(found(@erin), 60, 'before: erin\'s ciphertext is in the files');

$node->safe_psql('postgres', "DELETE FROM notes WHERE patient = 'erin'");
$node->safe_psql('postgres',
	'ALTER TABLE notes SET (autovacuum_enabled = on, autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0)');
$node->poll_query_until('postgres',
	"SELECT autovacuum_count > 0 FROM pg_stat_user_tables WHERE relname = 'notes'")
  or die 'autovacuum did not vacuum the table';
$node->safe_psql('postgres', 'ALTER TABLE notes SET (autovacuum_enabled = off); CHECKPOINT;');

is(found(@erin), 0, 'after autovacuum and CHECKPOINT: none of erin\'s ciphertext is left');
is(found(@frank), 60, 'frank\'s is all there');
like(join("\n", VecphiCheck::audit_lines($node)), qr/^erasure ok rows 30 autovacuum: \d+ pages, \d+ scrubbed, \d+ bytes zeroed/m,
	'autovacuum wrote an erasure record: 30 rows, pages and bytes');
is($node->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure'), '30',
	'the subjects wait for a manual VACUUM or vecphi.scrub');
$node->safe_psql('postgres', 'VACUUM notes');
is($node->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure'), '0',
	'which certifies them');
like(join("\n", VecphiCheck::audit_lines($node)), qr/^erasure ok rows 30 vacuum: .*subjects sha256:[0-9a-f]{64}/m,
	'in an erasure record with the subjects digest');

$node->stop;
done_testing();
