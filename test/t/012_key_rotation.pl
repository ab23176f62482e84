# vecphi: key rotation on a running server.
#
#  - rotate_kek re-wraps the data keys only: the table is not rewritten
#    (same relfilenode, same ctids, the same bytes in every file of the
#    table after a checkpoint), every value still decrypts, the old KEK
#    file is gone after the commit and the new one has mode 0600.
#  - rotate_kek in a transaction that rolls back leaves the old KEK file,
#    no new one, and every value readable.
#  - After a restart (caches rebuilt from the files and the keyring)
#    everything still decrypts.
#  - rotate_dek: old values decrypt with the old data key, new values use
#    the new one.
#  - A second backend that had cached keys keeps working, inside a
#    transaction that was open across the rotations and after it.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('rotation');
$node->start;
my $keys = VecphiTest::key_dir($node);
my $claims = VecphiCheck::claims_do(
	tenant => 't1',
	role => 'clinician',
	sub => 'dr_a');

$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t1');
	CREATE TABLE data (id int PRIMARY KEY, body etext, v evector(16))
		WITH (autovacuum_enabled = off, toast.autovacuum_enabled = off);
	BEGIN;
	$claims
	INSERT INTO data SELECT g, ('note ' || g)::etext,
		array_fill(g::real, ARRAY[16])::evector
		FROM generate_series(1, 200) AS g;
	INSERT INTO data VALUES (201, repeat('long note ', 1000)::etext, array_fill(0.5::real, ARRAY[16]));
	COMMIT;
});

# Every value, decrypted, in one string: what must never change.
my $readall = qq{
	BEGIN;
	$claims
	SELECT string_agg(id || ':' || vecphi.decrypt(body) || ':' || vecphi.decrypt(v)::text
		|| ':' || vecphi.key_id(v), ',' ORDER BY id)
	FROM data;
	COMMIT;
};
my $plain = $node->safe_psql('postgres', $readall);
like($plain, qr/^1:note 1:\{1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1\}:t1\/1,/, 'values decrypt before rotation');

# Settle the table (hint bits, visibility map) so that reading it later
# does not change its files; then take its fingerprint.
$node->safe_psql('postgres', 'VACUUM (FREEZE) data; CHECKPOINT;');
my $layout_sql = q{
	SELECT pg_relation_filenode('data') || ' ' ||
		(SELECT string_agg(ctid::text, ',' ORDER BY id) FROM data)};
my $layout = $node->safe_psql('postgres', $layout_sql);
my @files = VecphiTest::relation_files($node, 'postgres', 'data');
my $digests = VecphiCheck::file_digests(@files);
ok(@files >= 3, 'table, TOAST and index files found');

my $kr = $node->safe_psql('postgres', 'SELECT keyring_id FROM vecphi.keyring_identity');    # KEK files start with it
sub key_files { return join(' ', grep { !/\.owner$/ } VecphiCheck::dir_files($keys)); }

# ---- rotate_kek ----
is($node->safe_psql('postgres', "SELECT vecphi.rotate_kek('t1')"), '2', 'rotate_kek returns version 2');
ok(!-e "$keys/$kr.t1.1.kek", 'the old KEK file is gone after the commit');
ok(-e "$keys/$kr.t1.2.kek", 'the new KEK file exists');
is(sprintf('%04o', VecphiCheck::file_mode("$keys/$kr.t1.2.kek") // 0), '0600', 'the new KEK file has mode 0600');
like(slurp_file("$keys/$kr.t1.2.kek"), qr/^[0-9a-f]{64}\n$/, 'the new KEK file holds 64 hex digits');
is($node->safe_psql('postgres', $readall), $plain, 'every value decrypts after rotate_kek');
$node->safe_psql('postgres', 'CHECKPOINT');
is($node->safe_psql('postgres', $layout_sql), $layout, 'same relfilenode and ctids: no rewrite');
is_deeply(VecphiCheck::file_digests(@files), $digests, 'the table\'s files are byte for byte unchanged');
is( $node->safe_psql('postgres', 'SELECT dek_version, kek_version FROM vecphi.keyring ORDER BY 1'),
	'1|2', 'the data key is wrapped under KEK version 2');

# ---- rotate_kek that rolls back ----
$node->safe_psql(
	'postgres', q{
	BEGIN;
	SELECT vecphi.rotate_kek('t1');
	ROLLBACK;
});
ok(-e "$keys/$kr.t1.2.kek", 'after a rolled-back rotation the current KEK file stays');
ok(!-e "$keys/$kr.t1.3.kek", 'and the rolled-back KEK file is removed');
is(key_files(), "$kr.t1.2.kek", 'nothing else in the key directory');
is($node->safe_psql('postgres', $readall), $plain, 'every value decrypts after the rollback');
# A rotation that fails half-way (here: an error later in the same
# transaction) is rolled back the same way.
like(
	VecphiCheck::error_of(
		$node, 'postgres', q{
	BEGIN;
	SELECT vecphi.rotate_kek('t1');
	SELECT 1 / 0;
	COMMIT;}),
	qr/^22012: /,
	'a transaction with a rotation fails');
is(key_files(), "$kr.t1.2.kek", 'its KEK file is removed');
is($node->safe_psql('postgres', $readall), $plain, 'every value still decrypts');

# A rotation undone by ROLLBACK TO SAVEPOINT in a transaction that commits:
# its KEK file goes at once, the current one stays.
$node->safe_psql(
	'postgres', q{
	BEGIN;
	SAVEPOINT s;
	SELECT vecphi.rotate_kek('t1');
	ROLLBACK TO s;
	COMMIT;
});
is(key_files(), "$kr.t1.2.kek", 'a rotation rolled back to a savepoint leaves the current KEK file only');
is($node->safe_psql('postgres', $readall), $plain, 'every value still decrypts');

# ---- restart: caches rebuilt ----
$node->restart;
is($node->safe_psql('postgres', $readall), $plain, 'every value decrypts after a restart');
is(key_files(), "$kr.t1.2.kek", 'the restart changed no key file');

# ---- rotate_dek ----
is($node->safe_psql('postgres', "SELECT vecphi.rotate_dek('t1')"), '2', 'rotate_dek returns version 2');
is( $node->safe_psql(
		'postgres', qq{
	BEGIN;
	$claims
	INSERT INTO data VALUES (202, 'after rotate_dek', array_fill(2.5::real, ARRAY[16]));
	SELECT vecphi.key_id(v), vecphi.key_id(body), vecphi.decrypt(body) FROM data WHERE id = 202;
	SELECT count(*) FROM data WHERE vecphi.key_id(v) = 't1/1';
	COMMIT;}),
	"t1/2|t1/2|after rotate_dek\n201",
	'new values use data key 2, the old ones keep key 1');
my $plain2 = $node->safe_psql('postgres', $readall);
is(substr($plain2, 0, length $plain), $plain, 'the old values still decrypt');
like($plain2, qr/,202:after rotate_dek:\{2\.5(,2\.5){15}\}:t1\/2$/, 'the new value decrypts');

# ---- a second backend with cached keys ----
my $other = $node->background_psql('postgres');
# Warm its caches: tenant, data key 2 (and 1).
is( $other->query_safe(
		qq{
	BEGIN;
	$claims
	SELECT count(*) FROM data WHERE vecphi.decrypt(v) IS NOT NULL;
	COMMIT;}),
	'202',
	'second backend: decrypts and caches the keys');
# Start a transaction there that stays open across the rotations.
$other->query_safe(
	qq{
	BEGIN;
	$claims
	SELECT vecphi.decrypt(v) FROM data WHERE id = 1;});

# Meanwhile this backend rotates both keys and writes under the new one.
is($node->safe_psql('postgres', "SELECT vecphi.rotate_dek('t1')"), '3', 'rotate_dek to 3');
is($node->safe_psql('postgres', "SELECT vecphi.rotate_kek('t1')"), '3', 'rotate_kek to 3');
ok(!-e "$keys/$kr.t1.2.kek" && -e "$keys/$kr.t1.3.kek", 'only KEK version 3 is left');
$node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	INSERT INTO data VALUES (203, 'under key 3', array_fill(3::real, ARRAY[16]));
	COMMIT;});

# The open transaction reads the new value: it needs data key 3, which it
# never had, unwrapped with KEK 3, which did not exist when it began.
is( $other->query_safe(
		q{SELECT vecphi.key_id(v) || ' ' || vecphi.decrypt(body) FROM data WHERE id = 203;}),
	't1/3 under key 3',
	'second backend, open transaction: decrypts a value under the new keys');
is($other->query_safe(q{SELECT vecphi.decrypt(body) FROM data WHERE id = 5;}),
	'note 5', 'and still the old ones from its cache');
$other->query_safe('COMMIT;');
# A new transaction there writes under the new current data key.
is( $other->query_safe(
		qq{
	BEGIN;
	$claims
	INSERT INTO data VALUES (204, 'from the second backend', array_fill(4::real, ARRAY[16]));
	SELECT vecphi.key_id(v) FROM data WHERE id = 204;
	COMMIT;}),
	't1/3',
	'second backend: new values use the data key rotated in elsewhere');
$other->quit;
like($node->safe_psql('postgres', $readall),
	qr/^\Q$plain\E,202:.*,203:under key 3:.*:t1\/3,204:from the second backend:.*:t1\/3$/,
	'every value decrypts in a fresh backend');

# ---- and after another restart ----
$node->restart;
like($node->safe_psql('postgres', $readall),
	qr/^\Q$plain\E,202:.*,204:from the second backend:/, 'every value decrypts after a second restart');
is( $node->safe_psql('postgres', 'SELECT dek_version, kek_version FROM vecphi.keyring ORDER BY 1'),
	"1|3\n2|3\n3|3", 'three data keys, all wrapped under KEK 3');

$node->stop;
done_testing();
