# vecphi: keyrings are per database; no database can destroy another's keys.
#
#  1. The same tenant name in two databases of one cluster gets two keyrings
#     and two KEKs: rotating and shredding in one leaves the other readable.
#  2. A dump restored into a second database of the same cluster carries the
#     keyring id but does not own the key files: it may neither read nor
#     rotate them, so it cannot destroy a version the source needs.
#     vecphi.fork_keyring() gives it its own copy, which then rotates and
#     shreds independently.
#  3. Moving a keyring (vecphi.adopt_keyring(), superuser only) makes the
#     new database the owner; the old one is refused.
#  4. DROP EXTENSION and DROP DATABASE leave other databases' key files be.
#  5. vecphi.kek_command gets the keyring id as %k.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $claims = VecphiCheck::claims_do(tenant => 'acme', role => 'clinician', sub => 'dr_a');

my $node = VecphiTest::new_node('keyrings');
$node->start;
my $keys = VecphiTest::key_dir($node);

# A database with tenant acme and one note.
sub setup_db
{
	my ($db, $text) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql(
		$db, qq{
		CREATE EXTENSION vecphi;
		SELECT vecphi.create_tenant('acme');
		CREATE TABLE notes (id int PRIMARY KEY, body etext);
		BEGIN;
		$claims
		INSERT INTO notes VALUES (1, vecphi.encrypt('$text'));
		COMMIT;
	});
	return;
}

sub read_note
{
	my ($db) = @_;
	my $err = VecphiCheck::error_of($node, $db,
		"BEGIN; $claims SELECT vecphi.decrypt(body) FROM notes WHERE id = 1; COMMIT;");
	return $err unless $err eq 'no error';
	return $node->safe_psql($db,
		"BEGIN; $claims SELECT vecphi.decrypt(body) FROM notes WHERE id = 1; COMMIT;");
}

sub key_files
{
	return join(' ', grep { !/^audit/ } VecphiCheck::dir_files($keys));
}

# ---- 1. same tenant name in two databases ----
setup_db('db1', 'note one');
setup_db('db2', 'note two');
is(read_note('db1'), 'note one', 'db1 reads its note');
is(read_note('db2'), 'note two', 'db2 reads its note');
$node->safe_psql('db1', "SELECT vecphi.rotate_kek('acme')");
is(read_note('db1'), 'note one', 'db1 reads after rotating its KEK');
is(read_note('db2'), 'note two', 'db2 still reads after db1 rotated acme');
VecphiCheck::error_of($node, 'db2', "SELECT vecphi.rotate_kek('acme')");
VecphiCheck::error_of($node, 'db2', "SELECT vecphi.rotate_kek('acme')");
is(read_note('db1'), 'note one', 'db1 still reads after db2 rotated acme twice');

# ---- 2. a dump restored beside its source ----
my $dump = $node->basedir . '/db1.sql';
$node->command_ok([ 'pg_dump', '--format=plain', '--file', $dump, '--dbname', 'db1' ],
	'pg_dump of db1');
$node->safe_psql('postgres', 'CREATE DATABASE scratch');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump, '-d', 'scratch' ],
	'restore into scratch, same cluster');
VecphiCheck::error_of($node, 'scratch', "SELECT vecphi.rotate_kek('acme')");
is(read_note('db1'), 'note one', 'a rotation attempted in the restored copy leaves the source readable');
VecphiCheck::error_of($node, 'scratch', "SELECT vecphi.shred_tenant('acme')");
is(read_note('db1'), 'note one', 'so does a shred attempted in the restored copy');

# ---- keyring ids ----
my $kr1 = $node->safe_psql('db1', 'SELECT keyring_id FROM vecphi.keyring_identity');
my $kr2 = $node->safe_psql('db2', 'SELECT keyring_id FROM vecphi.keyring_identity');
like($kr1, qr/^[0-9a-f]{16}$/, 'db1 has a keyring id');
isnt($kr1, $kr2, 'db2 has another');
ok(-e "$keys/$kr1.acme.2.kek" && -e "$keys/$kr2.acme.3.kek",
	'each keyring has its own KEK files for acme');

# ---- 2b. the restored copy is refused, then forks ----
is($node->safe_psql('scratch', 'SELECT keyring_id FROM vecphi.keyring_identity'), $kr1,
	'the restore carries the keyring id');
like(read_note('scratch'), qr/^55000: keyring $kr1 belongs to another database/,
	'the restored copy may not read the source\'s key files');
like(VecphiCheck::error_of($node, 'scratch', "SELECT vecphi.rotate_kek('acme')"),
	qr/^55000: keyring $kr1 belongs to another database/,
	'nor rotate them');
like(VecphiCheck::error_of($node, 'scratch', "SELECT vecphi.shred_tenant('acme')"),
	qr/^55000: keyring $kr1 belongs to another database/,
	'nor shred with them');
is(read_note('db1'), 'note one', 'the source still reads');

my $kr3 = $node->safe_psql('scratch', 'SELECT vecphi.fork_keyring()');
like($kr3, qr/^[0-9a-f]{16}$/, 'fork_keyring gives scratch a new keyring id');
isnt($kr3, $kr1, 'not the source\'s');
ok(-e "$keys/$kr3.acme.2.kek", 'with a copy of acme\'s current KEK');
is(read_note('scratch'), 'note one', 'the fork reads the restored note');
$node->safe_psql('scratch', "SELECT vecphi.rotate_kek('acme')");
is(read_note('scratch'), 'note one', 'and rotates on its own');
is(read_note('db1'), 'note one', 'the source still reads after the fork rotated');
$node->safe_psql('scratch', "SELECT vecphi.shred_tenant('acme')");
ok(!grep({ /^$kr3\.acme\./ } VecphiCheck::dir_files($keys)), 'shredding in the fork removed the fork\'s files');
ok(-e "$keys/$kr1.acme.2.kek", 'but not the source\'s');
is(read_note('db1'), 'note one', 'the source still reads after the fork shredded acme');

# A fork that rolls back leaves no files behind.
my $before = key_files();
$node->safe_psql('postgres', 'CREATE DATABASE scratch2');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump, '-d', 'scratch2' ],
	'restore into scratch2');
$node->safe_psql('scratch2', 'BEGIN; SELECT vecphi.fork_keyring(); ROLLBACK;');
is(key_files(), $before, 'a rolled-back fork leaves no key file');
is($node->safe_psql('scratch2', 'SELECT keyring_id FROM vecphi.keyring_identity'), $kr1,
	'and keeps the restored id');

# ---- 3. moving a keyring ----
$node->safe_psql('postgres', "CREATE ROLE key_officer LOGIN IN ROLE vecphi_key_admin");
like(VecphiCheck::error_of($node, 'scratch2', 'SET ROLE key_officer; SELECT vecphi.adopt_keyring()'),
	qr/^42501: /, 'a key administrator cannot adopt a keyring');
is($node->safe_psql('scratch2', 'SELECT vecphi.adopt_keyring()'), $kr1, 'a superuser moves the keyring to scratch2');
is(read_note('scratch2'), 'note one', 'the new owner reads');
like(read_note('db1'), qr/^55000: keyring $kr1 belongs to another database/,
	'the old owner is refused');
$node->safe_psql('scratch2', "SELECT vecphi.rotate_kek('acme')");
is(read_note('scratch2'), 'note one', 'the new owner rotates');

# ---- 4. dropping ----
$before = key_files();
$node->safe_psql('db2', 'DROP TABLE notes; DROP EXTENSION vecphi');
$node->safe_psql('postgres', 'DROP DATABASE db2');
is(key_files(), $before, 'DROP EXTENSION and DROP DATABASE touch no key file');
is(read_note('scratch2'), 'note one', 'other databases still read');

# ---- 5. %k for a key provider command ----
my $kms = $node->basedir . '/kms';
mkdir $kms, 0700 or die "mkdir $kms: $!";
$node->safe_psql('postgres', 'CREATE DATABASE cmd');
$node->safe_psql('cmd', 'CREATE EXTENSION vecphi');
my $krc = $node->safe_psql('cmd', 'SELECT vecphi.keyring_id()');
like($krc, qr/^[0-9a-f]{16}$/, 'keyring_id() makes the id before the first tenant');
VecphiCheck::write_file("$kms/$krc.acme.1.hex", ('cd' x 32) . "\n");
$node->append_conf('postgresql.conf', "vecphi.key_directory = ''\nvecphi.kek_command = 'cat $kms/%k.%t.%v.hex'\n");
$node->reload;
$node->poll_query_until('cmd', "SELECT current_setting('vecphi.key_directory') = ''") or die;
$node->safe_psql(
	'cmd', qq{
	SELECT vecphi.create_tenant('acme');
	CREATE TABLE notes (id int PRIMARY KEY, body etext);
	BEGIN;
	$claims
	INSERT INTO notes VALUES (1, vecphi.encrypt('note cmd'));
	COMMIT;
});
is(read_note('cmd'), 'note cmd', 'vecphi.kek_command finds the KEK by %k, %t and %v');

$node->stop;
done_testing();
