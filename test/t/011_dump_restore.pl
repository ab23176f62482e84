# vecphi: pg_dump and COPY carry ciphertext, and only the key files make a
# restore readable.
#
#  1. A plain-format pg_dump of a database with evector/etext data holds
#     the envelopes ("vecphi:...") and the keyring rows (wrapped data keys),
#     and neither the plaintext text nor the vectors' numbers.
#  2. Restored into a fresh cluster given a copy of the first cluster's KEK
#     files (mode 0600) and the same token secret, the same claims decrypt
#     the same values.
#  3. Restored into a fresh cluster without the KEK files, the restore
#     works (it is only ciphertext) but decryption fails with 58P01 naming
#     the tenant.
#  4. COPY ... (FORMAT binary) out and back in (the types' send and receive
#     functions) keeps every envelope byte for byte, and the receive
#     function checks what it is given.
use strict;
use warnings;

use File::Copy qw(copy);
use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $text_pattern = 'PATIENT-ZEBRA-7781';
my $claims = VecphiCheck::claims_do(
	tenant => 'st_marys',
	role => 'clinician',
	sub => 'dr_a');
my $claims_b = VecphiCheck::claims_do(
	tenant => 'county',
	role => 'clinician',
	sub => 'dr_b');

# What a claimant of st_marys reads back, for comparing clusters.
my $readback = qq{
	BEGIN;
	$claims
	SELECT id, vecphi.decrypt(body), vecphi.decrypt(embedding), vecphi.key_id(embedding)
	FROM notes WHERE tenant = 'st_marys' ORDER BY id;
	COMMIT;
};

# ---- 1. the source cluster and its dump ----
my $src = VecphiTest::new_node('source');
$src->start;
$src->safe_psql(
	'postgres', qq{
	CREATE DATABASE clinic;
});
$src->safe_psql(
	'clinic', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('st_marys');
	SELECT vecphi.create_tenant('county');
	CREATE TABLE notes (id int PRIMARY KEY, tenant text NOT NULL,
		body etext, embedding evector(8));
	BEGIN;
	$claims
	INSERT INTO notes SELECT g, 'st_marys', ('$text_pattern chest pain ' || g)::etext,
		ARRAY[4321.125 + g, 4322.125, 4323.125, 4324.125, -1.5, 0, 2e-3, g]::real[]
		FROM generate_series(1, 20) AS g;
	COMMIT;
});
# A second data key: values under both keys must survive the trip.
$src->safe_psql('clinic', "SELECT vecphi.rotate_dek('st_marys')");
$src->safe_psql(
	'clinic', qq{
	BEGIN;
	$claims
	INSERT INTO notes VALUES (21, 'st_marys', '$text_pattern after rotation',
		'[1,2,3,4,5,6,7,8]');
	COMMIT;
	BEGIN;
	$claims_b
	INSERT INTO notes VALUES (101, 'county', 'county note', '[8,7,6,5,4,3,2,1]');
	COMMIT;
});
my $expected = $src->safe_psql('clinic', $readback);
like($expected, qr/^1\|$text_pattern chest pain 1\|\{4322.125,4322.125,/,
	'source decrypts its own data');
like($expected, qr/^21\|$text_pattern after rotation\|\{1,2,3,4,5,6,7,8\}\|st_marys\/2$/m,
	'source has values under data key 2');

my $dump = $src->basedir . '/clinic.sql';
$src->command_ok([ 'pg_dump', '--format=plain', '--file', $dump, '--dbname', 'clinic' ],
	'pg_dump of the source database');
my $dump_text = slurp_file($dump);
like($dump_text, qr/^COPY public\.notes .*\n1\tst_marys\tvecphi:[A-Za-z0-9+\/=]+\tvecphi:[A-Za-z0-9+\/=]+$/m,
	'the dump holds envelopes');
like($dump_text, qr/^COPY vecphi\.tenants /m, 'the dump holds vecphi.tenants');
like($dump_text, qr/^COPY vecphi\.keyring /m, 'the dump holds vecphi.keyring');
like($dump_text, qr/^\d+\t2\t1\t\\\\x[0-9a-f]{80}\t/m,
	'the dump holds wrapped data keys (40 bytes each)');
unlike($dump_text, qr/$text_pattern/, 'the dump does not hold the plaintext text');
unlike($dump_text, qr/4321\.125|4322\.125|4323\.125/,
	'the dump does not hold the vectors\' numbers');
unlike($dump_text, qr/county note/, 'nor the other tenant\'s text');
# The KEKs never enter the database, so never the dump.
for my $kek (VecphiCheck::dir_files(VecphiTest::key_dir($src)))
{
	my $hex = slurp_file(VecphiTest::key_dir($src) . "/$kek");
	$hex =~ s/\s+//g;
	unlike($dump_text, qr/\Q$hex\E/i, "the dump does not hold KEK $kek");
}

# ---- 2. restore where the KEK files were copied ----
my $with_keys = VecphiTest::new_node('with_keys');
for my $kek (VecphiCheck::dir_files(VecphiTest::key_dir($src)))
{
	my $to = VecphiTest::key_dir($with_keys) . "/$kek";
	copy(VecphiTest::key_dir($src) . "/$kek", $to) or die "copy $kek: $!";
	chmod 0600, $to or die "chmod $to: $!";
}
$with_keys->start;
$with_keys->safe_psql('postgres', 'CREATE DATABASE clinic');
$with_keys->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump, '-d', 'clinic' ],
	'restore into a cluster with the key files');
is($with_keys->safe_psql('clinic', $readback),
	$expected, 'after restore the same claims decrypt the same values');
is( $with_keys->safe_psql(
		'clinic', 'SELECT tenant, kek_version, current_dek FROM vecphi.tenants ORDER BY 1'),
	"county|1|1\nst_marys|1|2",
	'the keyring came along');
# New values can be written there too, under the current data key.
is( $with_keys->safe_psql(
		'clinic', qq{
	BEGIN;
	$claims
	INSERT INTO notes VALUES (22, 'st_marys', 'written after restore', '[0,0,0,0,0,0,0,1]');
	SELECT vecphi.key_id(embedding), vecphi.decrypt(body) FROM notes WHERE id = 22;
	COMMIT;
}),
	'st_marys/2|written after restore',
	'the restored cluster encrypts new values');
# The other tenant's claims still cannot read st_marys's rows.
like(
	VecphiCheck::error_of(
		$with_keys, 'clinic', "BEGIN; $claims_b SELECT vecphi.decrypt(body) FROM notes WHERE id = 1;"),
	qr/^42501: permission denied to decrypt etext value/,
	'tenant separation survives the restore');

# ---- 3. restore without the KEK files ----
my $no_keys = VecphiTest::new_node('no_keys');
$no_keys->start;
$no_keys->safe_psql('postgres', 'CREATE DATABASE clinic');
$no_keys->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump, '-d', 'clinic' ],
	'restore into a cluster without the key files');
is($no_keys->safe_psql('clinic', 'SELECT count(*), count(DISTINCT vecphi.key_id(embedding)) FROM notes'),
	'22|3', 'the ciphertext is all there');
like(
	VecphiCheck::error_of($no_keys, 'clinic', "BEGIN; $claims SELECT vecphi.decrypt(embedding) FROM notes WHERE id = 1;"),
	qr/^58P01: key-encryption key of tenant "st_marys" is missing/,
	'without the KEK file decryption fails, naming the tenant');
like(
	VecphiCheck::error_of($no_keys, 'clinic', "BEGIN; $claims SELECT vecphi.decrypt(body) FROM notes WHERE id = 21;"),
	qr/^58P01: .*"st_marys"/,
	'also for values under the second data key');
like(
	VecphiCheck::error_of($no_keys, 'clinic', "BEGIN; $claims SELECT '[1,2,3,4,5,6,7,8]'::evector;"),
	qr/^58P01: .*"st_marys"/,
	'and nothing new can be encrypted');
# Someone else's KEK under the right name does not help: the wrapped data
# keys fail to unwrap (XX001), nothing decrypts to garbage.
VecphiCheck::write_file(VecphiTest::key_dir($no_keys) . '/'
	  . $no_keys->safe_psql('clinic', 'SELECT keyring_id FROM vecphi.keyring_identity')
	  . '.st_marys.1.kek',
	('ab' x 32) . "\n");
like(
	VecphiCheck::error_of($no_keys, 'clinic', "BEGIN; $claims SELECT vecphi.decrypt(embedding) FROM notes WHERE id = 1;"),
	qr/^XX001: data key 1 of tenant "st_marys" cannot be unwrapped/,
	'a wrong KEK is detected');

# ---- 4. binary COPY round trip (send/recv) ----
my $bin = $src->basedir . '/notes.copy';
$src->safe_psql(
	'clinic', qq{
	\\copy notes TO '$bin' WITH (FORMAT binary)
	CREATE TABLE notes_copy (LIKE notes);
	\\copy notes_copy FROM '$bin' WITH (FORMAT binary)
});
ok(-s $bin, 'binary COPY wrote the table');
unlike(slurp_file($bin), qr/$text_pattern/, 'the binary COPY holds no plaintext');
is( $src->safe_psql(
		'clinic', q{
	SELECT count(*), count(*) FILTER (WHERE c.body::text = n.body::text
		AND c.embedding::text = n.embedding::text)
	FROM notes n JOIN notes_copy c USING (id)}),
	'22|22',
	'binary COPY round-trips every envelope byte for byte');
is( $src->safe_psql(
		'clinic', qq{
	BEGIN;
	$claims
	SELECT count(*) FROM notes n JOIN notes_copy c USING (id)
	WHERE n.tenant = 'st_marys'
		AND vecphi.decrypt(c.embedding) = vecphi.decrypt(n.embedding)
		AND vecphi.decrypt(c.body) = vecphi.decrypt(n.body);
	COMMIT;}),
	'21',
	'the copies decrypt to the same values');
# The receive functions check their input: wrong dimensions for the
# typmod, and the columns' types swapped (evector data into etext).
like(
	VecphiCheck::error_of(
		$src, 'clinic',
		"CREATE TABLE notes_4 (id int, tenant text, body etext, embedding evector(4));\n"
		  . "\\copy notes_4 FROM '$bin' WITH (FORMAT binary)"),
	qr/^22000: expected 4 dimensions, not 8/,
	'binary input checks the typmod');
like(
	VecphiCheck::error_of(
		$src, 'clinic',
		"CREATE TABLE notes_swapped (id int, tenant text, body evector, embedding etext);\n"
		  . "\\copy notes_swapped FROM '$bin' WITH (FORMAT binary)"),
	qr/^22P02: invalid input syntax for type evector$/,
	'binary input refuses an envelope of the other type as bad input (22P02, as text input does)');

$src->stop;
$with_keys->stop;
$no_keys->stop;
done_testing();
