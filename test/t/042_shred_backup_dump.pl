# vecphi: vecphi.shred_tenant() makes every copy of a tenant's ciphertext
# undecryptable, copies taken before the shred included.
#
# Two tenants, erase_a and erase_b, with notes.  Before the shred: a base
# backup (pg_basebackup) and a pg_dump.  A second session holds erase_a's
# data key in its cache across the shred.  After the shred:
#
#   - erase_a's KEK file is gone from the key directory, erase_b's is not;
#     the wrapped data keys are gone from vecphi.keyring;
#   - the waiting session cannot decrypt any more (58P01, naming the
#     tenant); nor can new sessions, nor can anyone write for erase_a;
#   - erase_b works as before (decryption, index search);
#   - erase_a's rows can be deleted and VACUUM removes their ehnsw elements
#     without the key;
#   - the base backup restored into a fresh cluster (with the key
#     directory as it now is) cannot decrypt erase_a (58P01 naming it) but
#     decrypts erase_b, so the restore itself works;
#   - the same for the pg_dump restored into a fresh cluster.
use strict;
use warnings;

use File::Copy qw(copy);
use FindBin;
use lib "$FindBin::RealBin/../lib";

use IPC::Run;
use MIME::Base64 qw(decode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(erase_a erase_b);

my $primary = VecphiTest::new_node('primary', allows_streaming => 1);
$primary->start;
$primary->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('erase_a');
	SELECT vecphi.create_tenant('erase_b');
	SELECT vecphi.rotate_kek('erase_a');
	SELECT vecphi.rotate_dek('erase_a');
	CREATE ROLE key_officer LOGIN IN ROLE vecphi_key_admin;
	CREATE ROLE somebody LOGIN;
	CREATE TABLE notes (
		id		int PRIMARY KEY,
		tenant	text NOT NULL DEFAULT vecphi.tenant(),
		body	etext,
		emb		evector(8)
	);
	SELECT vecphi.protect('notes', 'tenant');
	CREATE INDEX notes_emb ON notes USING ehnsw (emb);
});
for my $tenant (qw(erase_a erase_b))
{
	my $base = $tenant eq 'erase_a' ? 0 : 1000;
	$primary->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{$tenant}
		INSERT INTO notes (id, body, emb)
			SELECT $base + g, vecphi.encrypt('$tenant note ' || g),
				ARRAY(SELECT g + j / 10.0 FROM generate_series(1, 8) j)::real[]
			FROM generate_series(1, 50) g;
		COMMIT;
	});
}

# Decrypt one note of a tenant as that tenant: "SQLSTATE: message" or the text.
sub decrypt_note
{
	my ($node, $tenant, $id) = @_;
	my ($stdout, $stderr) = ('', '');
	$node->psql(
		'postgres', "\\set VERBOSITY verbose\nBEGIN; $claims{$tenant} SELECT vecphi.decrypt(body) FROM notes WHERE id = $id; COMMIT;",
		stdout => \$stdout, stderr => \$stderr);
	return "$1: $2" if $stderr =~ /ERROR:\s+([0-9A-Z]{5}):\s+([^\n]*)/;
	return $stdout;
}

# erase_b's three nearest notes by the index to a vector near note 1010.
sub search_ids
{
	my ($node) = @_;
	return $node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{erase_b}
		SET LOCAL enable_seqscan = off;
		SELECT string_agg(id::text, ',') FROM
			(SELECT id FROM notes ORDER BY emb <-> '[10.4,10.5,10.6,10.7,10.8,10.9,11,11.1]' LIMIT 3) s;
		COMMIT;
	});
}

is(decrypt_note($primary, 'erase_a', 1), 'erase_a note 1', 'before: erase_a decrypts');
is(search_ids($primary), '1010,1011,1009', 'before: erase_b\'s index search works');

# ---- copies taken before the shred ----
$primary->backup('pre_shred');
my $dump = $primary->basedir . '/pre_shred.dump';
$primary->command_ok(
	[ 'pg_dump', '-Fc', '-f', $dump, '-d', $primary->connstr('postgres') ],
	'pg_dump before the shred');

my $keys = VecphiTest::key_dir($primary);
my $kr = $primary->safe_psql('postgres', 'SELECT keyring_id FROM vecphi.keyring_identity');    # KEK files start with it
is(join(',', sort(grep { !/\.owner$/ } VecphiCheck::dir_files($keys))), "$kr.erase_a.2.kek,$kr.erase_b.1.kek",
	'before: the key directory holds both tenants\' KEKs');

# ---- a session that has erase_a's data key cached, across the shred ----
my ($bg_out, $bg_err) = ('', '');
my $bg = IPC::Run::start(
	[
		'psql', '-X', '-A', '-t', '-d', $primary->connstr('postgres'),
		'-c', "BEGIN; $claims{erase_a} SELECT vecphi.decrypt(body) FROM notes WHERE id = 2; "
		  . "SELECT pg_sleep(2); SELECT 'after'; SELECT vecphi.decrypt(body) FROM notes WHERE id = 2; COMMIT;"
	],
	'>', \$bg_out, '2>', \$bg_err);
$primary->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
  or die 'the background session did not start';

# ---- the shred ----
like(VecphiCheck::error_of($primary, 'postgres', "SET ROLE somebody; SELECT vecphi.shred_tenant('erase_a');"),
	qr/^42501: permission denied for function shred_tenant/, 'a role without vecphi_key_admin cannot shred');
is($primary->safe_psql('postgres', "SET ROLE key_officer; SELECT vecphi.shred_tenant('erase_a');"),
	'2', 'a vecphi_key_admin member shreds erase_a: two data keys dropped');

$bg->finish;
like($bg_out, qr/^erase_a note 2\n.*after/ms, 'the waiting session decrypted before the shred');
like($bg_err, qr/keys of tenant "erase_a" have been crypto-shredded/,
	'and cannot decrypt with its cached key after the shred committed');
unlike($bg_out, qr/after\n.*erase_a note 2/s, 'it printed no plaintext after the shred');

is(join(',', sort(grep { !/\.owner$/ } VecphiCheck::dir_files($keys))), "$kr.erase_b.1.kek",
	'erase_a\'s KEK files are gone from the key directory');
is($primary->safe_psql('postgres',
		"SELECT count(*) FROM vecphi.keyring k JOIN vecphi.tenants t USING (tenant_id) WHERE t.tenant = 'erase_a'"),
	'0', 'erase_a\'s wrapped data keys are gone');
is($primary->safe_psql('postgres', 'SELECT tenant, kek_version, data_keys FROM vecphi.shredded_tenants'),
	'erase_a|2|2', 'a tombstone records the shred');
like(join("\n", VecphiCheck::audit_lines($primary)), qr/^key_shred ok rows 2 tenant erase_a/m,
	'the shred is in the audit log');

like(decrypt_note($primary, 'erase_a', 1),
	qr/^58P01: keys of tenant "erase_a" have been crypto-shredded/,
	'a new session cannot decrypt erase_a\'s notes: 58P01 naming the tenant');
like(VecphiCheck::error_of($primary, 'postgres',
		"BEGIN; $claims{erase_a} INSERT INTO notes (id, emb) VALUES (99, '[1,2,3,4,5,6,7,8]');"),
	qr/^58P01: keys of tenant "erase_a" have been crypto-shredded/,
	'nor write for erase_a');
like(VecphiCheck::error_of($primary, 'postgres', "SELECT vecphi.rotate_dek('erase_a')"),
	qr/^58P01: keys of tenant "erase_a"/, 'nor rotate its keys');
is(decrypt_note($primary, 'erase_b', 1001), 'erase_b note 1', 'erase_b decrypts as before');
is(search_ids($primary),
	'1010,1011,1009', 'erase_b\'s index search works');

# ---- erase_a's rows go without its key ----
my $a_slice = substr(decode_base64(substr(
			$primary->safe_psql('postgres', 'SELECT emb::text FROM notes WHERE id = 3'), 7)), 28, 16);
$primary->safe_psql('postgres', "DELETE FROM notes WHERE tenant = 'erase_a'");
is(VecphiCheck::error_of($primary, 'postgres', 'VACUUM notes'), 'no error',
	'VACUUM removes the shredded tenant\'s rows and index elements without its key');
is($primary->safe_psql('postgres', "SELECT vecphi.index_check('notes_emb')"), 't', 'index_check passes');
$primary->safe_psql('postgres', 'CHECKPOINT');
is(VecphiTest::files_contain($a_slice, VecphiTest::relation_files($primary, 'postgres', 'notes')),
	0, 'none of erase_a\'s vector ciphertext is left in the table\'s files');
is(VecphiTest::files_contain('erase_a note', VecphiTest::relation_files($primary, 'postgres', 'notes')),
	0, 'and no plaintext ever was');

# ---- the base backup taken before the shred ----
sub copy_keys
{
	my ($node) = @_;
	for my $f (VecphiCheck::dir_files($keys))
	{
		my $to = VecphiTest::key_dir($node) . "/$f";
		copy("$keys/$f", $to) or die "copy $f: $!";
		chmod 0600, $to or die "chmod $f: $!";
	}
	return;
}
my $restored = PostgreSQL::Test::Cluster->new('restored');
$restored->init_from_backup($primary, 'pre_shred');
VecphiTest::configure_node($restored);
copy_keys($restored);
$restored->start;
is($restored->safe_psql('postgres', 'SELECT count(*) FROM notes'), '100',
	'the pre-shred base backup restores with every row');
is($restored->safe_psql('postgres', "SELECT count(*) FROM vecphi.keyring k JOIN vecphi.tenants t USING (tenant_id) WHERE tenant = 'erase_a'"),
	'2', 'it still holds erase_a\'s wrapped data keys');
like(decrypt_note($restored, 'erase_a', 1),
	qr/^58P01: key-encryption key of tenant "erase_a" is missing/,
	'but they cannot be unwrapped: 58P01 naming the tenant');
is(decrypt_note($restored, 'erase_b', 1001), 'erase_b note 1',
	'erase_b decrypts in the restored cluster');
$restored->stop;

# ---- the pg_dump taken before the shred ----
my $fresh = VecphiTest::new_node('fresh');
copy_keys($fresh);
$fresh->start;
# The ehnsw index cannot be rebuilt while erase_a's vectors cannot be
# decrypted (and erase_a is not shredded in this cluster): pg_restore
# reports that error and restores everything else.
my ($rout, $rerr) = ('', '');
IPC::Run::run([ 'pg_restore', '-d', $fresh->connstr('postgres'), $dump ], '>', \$rout, '2>', \$rerr);
like($rerr, qr/key-encryption key of tenant "erase_a" is missing/,
	'pg_restore: the index build fails on erase_a\'s missing key, naming the tenant');
is($fresh->safe_psql('postgres', 'SELECT count(*) FROM notes'), '100', 'the dump restores every row');
like(decrypt_note($fresh, 'erase_a', 1),
	qr/^58P01: key-encryption key of tenant "erase_a" is missing/,
	'the dump\'s erase_a notes cannot be decrypted: 58P01 naming the tenant');
is(decrypt_note($fresh, 'erase_b', 1001), 'erase_b note 1', 'erase_b\'s can');
# Shredding again in the restored cluster records the tombstone there;
# then the index builds without erase_a's vectors.  Key administration in
# another cluster needs the keyring moved there first (docs/keys.md).
like(VecphiCheck::error_of($fresh, 'postgres', "SELECT vecphi.shred_tenant('erase_a')"),
	qr/^55000: keyring [0-9a-f]{16} belongs to another database/,
	'the restored cluster may not shred with keys it does not own');
$fresh->safe_psql('postgres', 'SELECT vecphi.adopt_keyring()');
$fresh->safe_psql('postgres', "SELECT vecphi.shred_tenant('erase_a')");
is(VecphiCheck::error_of($fresh, 'postgres', 'CREATE INDEX notes_emb ON notes USING ehnsw (emb)'),
	'no error', 'after shredding erase_a there too, the index builds');
is(search_ids($fresh),
	'1010,1011,1009', 'and serves erase_b');

$fresh->stop;
$primary->stop;
done_testing();
