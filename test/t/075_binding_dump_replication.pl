# vecphi: ciphertext bound to its place survives pg_dump/restore, logical
# replication and pg_upgrade, and a moved value is still refused there.
#
#  1. A protected table with an ehnsw index on the source; a claimant (an
#     ordinary role, subject to row-level security) reads its values.
#  2. pg_dump, restored into a fresh cluster with the KEK files: the
#     binding catalog comes along (label public.notes), the values decrypt;
#     a superuser copying row 1's ciphertext over row 2 there makes the
#     claimant's read fail with XX001 and a denial record, never row 1's
#     vector.
#  3. A logical-replication subscriber (set up from the same dump, table
#     emptied): the initial copy and the apply of new rows pass the binding
#     trigger without claims (values already bound to exactly their row),
#     and the claimant reads them there.
#  4. pg_upgrade (15 to 15, the same binaries) of the source: relation OIDs
#     are kept, so the catalog's regclass still names the table; values
#     decrypt, a move is refused.
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

my $claims = VecphiCheck::claims_do(tenant => 'bind_t', role => 'clinician', sub => 'dr_b');

# What the claimant reads, as an ordinary role (superusers bypass the
# policies that check the binding).
my $readback = qq{
	SET ROLE app;
	BEGIN;
	$claims
	SELECT id, vecphi.decrypt(body), vecphi.decrypt(emb) FROM notes ORDER BY id;
	COMMIT;
};

# Copy the source's KEK files into another node's key directory.
sub copy_keys
{
	my ($from, $to) = @_;
	for my $kek (VecphiCheck::dir_files(VecphiTest::key_dir($from)))
	{
		my $dst = VecphiTest::key_dir($to) . "/$kek";
		copy(VecphiTest::key_dir($from) . "/$kek", $dst) or die "copy $kek: $!";
		chmod 0600, $dst or die "chmod $dst: $!";
	}
	# The audit chain's key goes along too: a cluster whose audit_log already
	# holds records (pg_upgrade copies them) refuses to start a new key.
	my $from_key = VecphiTest::audit_key_dir($from) . '/audit.key';
	if (-f $from_key)
	{
		my $dst = VecphiTest::audit_key_dir($to) . '/audit.key';
		copy($from_key, $dst) or die "copy $from_key: $!";
		chmod 0600, $dst or die "chmod $dst: $!";
	}
	return;
}

# Move row 1's ciphertext over row 2 as a superuser (triggers off), then
# return what the claimant gets for row 2.
sub move_and_read
{
	my ($node, $db) = @_;
	$node->safe_psql(
		$db, q{
		ALTER TABLE notes DISABLE TRIGGER vecphi_binding;
		UPDATE notes SET emb = (SELECT emb FROM notes WHERE id = 1),
			body = (SELECT body FROM notes WHERE id = 1) WHERE id = 2;
		ALTER TABLE notes ENABLE ALWAYS TRIGGER vecphi_binding;
	});
	return VecphiCheck::error_of($node, $db,
		"SET ROLE app; BEGIN; $claims SELECT vecphi.decrypt(emb) FROM notes WHERE id = 2;");
}

# ---- 1. the source ----
my $src = VecphiTest::new_node('source', allows_streaming => 'logical');
$src->start;
$src->safe_psql('postgres', 'CREATE DATABASE clinic');
$src->safe_psql(
	'clinic', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('bind_t');
	CREATE ROLE app;
	CREATE TABLE notes (id int PRIMARY KEY, tenant text NOT NULL DEFAULT vecphi.tenant(),
		body etext, emb evector(3));
	SELECT vecphi.protect('notes', 'tenant');
	CREATE INDEX notes_emb ON notes USING ehnsw (emb);
	GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO app;
	SET ROLE app;
	BEGIN;
	$claims
	INSERT INTO notes (id, body, emb) SELECT g, vecphi.encrypt('note ' || g), ARRAY[g, g, g]::real[]
	FROM generate_series(1, 5) g;
	COMMIT;
});
my $expected = $src->safe_psql('clinic', $readback);
like($expected, qr/^1\|note 1\|\{1,1,1\}\n2\|note 2\|\{2,2,2\}/, 'source: the claimant reads its rows');
is($src->safe_psql('clinic', 'SELECT binding_label, column_labels FROM vecphi.protected_tables'),
	'public.notes|{body,emb}', 'source: the table is registered');

# ---- 2. pg_dump and restore ----
my $dump = $src->basedir . '/clinic.sql';
$src->command_ok([ 'pg_dump', '--format=plain', '--file', $dump, '--dbname', 'clinic' ],
	'pg_dump of the source');
like(slurp_file($dump), qr/^COPY vecphi\.protected_tables .*\npublic\.notes\tpublic\.notes\t/m,
	'the dump carries the binding catalog');

my $restored = VecphiTest::new_node('restored');
copy_keys($src, $restored);
$restored->start;
$restored->safe_psql('postgres', 'CREATE ROLE app; CREATE DATABASE clinic');
$restored->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump, '-d', 'clinic' ],
	'restore into a fresh cluster');
is($restored->safe_psql('clinic', $readback), $expected,
	'restored: the claimant reads the same values');
like(move_and_read($restored, 'clinic'),
	qr/^XX001: ciphertext of column "body" of table public\.notes is bound to another row/,
	'restored: a value moved from row 1 to row 2 is refused (XX001)');
ok( (grep { /^denial denied .*is bound to another row/ } VecphiCheck::audit_lines($restored, 'clinic')),
	'restored: the refusal left a denial record');

# ---- 3. logical replication ----
my $sub = VecphiTest::new_node('subscriber');
copy_keys($src, $sub);
$sub->start;
$sub->safe_psql('postgres', 'CREATE ROLE app; CREATE DATABASE clinic');
$sub->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump, '-d', 'clinic' ],
	'subscriber: schema, keyring and binding catalog from the dump');
$sub->safe_psql('clinic', 'TRUNCATE notes');
$src->safe_psql('clinic', 'CREATE PUBLICATION notes_pub FOR TABLE notes');
my $connstr = $src->connstr . ' dbname=clinic';
$sub->safe_psql('clinic', "CREATE SUBSCRIPTION notes_sub CONNECTION '$connstr' PUBLICATION notes_pub");
$sub->wait_for_subscription_sync($src, 'notes_sub');
$src->safe_psql(
	'clinic', qq{
	SET ROLE app;
	BEGIN;
	$claims
	INSERT INTO notes (id, body, emb) VALUES (6, 'note 6', '[6,6,6]');
	UPDATE notes SET body = 'note 3, amended' WHERE id = 3;
	COMMIT;
});
$src->wait_for_catchup('notes_sub');
is($sub->safe_psql('clinic', $readback), $src->safe_psql('clinic', $readback),
	'subscriber: the claimant reads the replicated rows, initial copy and apply');
like(move_and_read($sub, 'clinic'),
	qr/^XX001: .*is bound to another row/, 'subscriber: a moved value is refused');
$sub->safe_psql('clinic', 'DROP SUBSCRIPTION notes_sub');
$sub->stop;
$restored->stop;

# ---- 4. pg_upgrade ----
my $oid_before = $src->safe_psql('clinic', "SELECT 'notes'::regclass::oid");
my $expected_now = $src->safe_psql('clinic', $readback);
$src->stop;
my $new = VecphiTest::new_node('upgraded');
copy_keys($src, $new);
my $bindir = $new->config_data('--bindir');
my $upgrade_dir = $new->basedir . '/upgrade';
mkdir $upgrade_dir or die "mkdir $upgrade_dir: $!";
my $ok = run_log(
	[
		'sh', '-c',
		"cd '$upgrade_dir' && pg_upgrade --no-sync -b '$bindir' -B '$bindir' "
		  . "-d '" . $src->data_dir . "' -D '" . $new->data_dir . "' "
		  . "-p " . $src->port . " -P " . $new->port
	]);
ok($ok, 'pg_upgrade of the source');
SKIP:
{
	skip 'pg_upgrade failed', 4 unless $ok;
	$new->start;
	is($new->safe_psql('clinic', "SELECT 'notes'::regclass::oid"), $oid_before,
		'upgraded: the table keeps its OID');
	is($new->safe_psql('clinic', 'SELECT relid, binding_label FROM vecphi.protected_tables'),
		'notes|public.notes', 'upgraded: the binding catalog names the table');
	is($new->safe_psql('clinic', $readback), $expected_now,
		'upgraded: the claimant reads the same values');
	like(move_and_read($new, 'clinic'),
		qr/^XX001: .*is bound to another row/, 'upgraded: a moved value is refused');
	$new->stop;
}
done_testing();
