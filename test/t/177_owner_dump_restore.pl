# vecphi: pg_dump and pg_restore of a protected table by its owner, a role
# that is not a superuser (docs/operations.md, "Dump and restore by the
# table's owner").
#
#  1. On the source the owner (granted BYPASSRLS once by a superuser: the
#     table's row-level security is forced, and pg_dump refuses a table whose
#     rows a policy would filter) dumps the database leaving out vecphi's own
#     configuration (--exclude-table-data 'vecphi.*'): the dump holds only
#     ciphertext. Without the exclusion the owner's pg_dump fails on
#     vecphi's key tables, which it may not read.
#  2. The key administration travels separately: a superuser's data-only dump
#     of the key tables, and the KEK files.
#  3. On the target the superuser creates the database and the extension and
#     loads the key tables; the owner restores its dump with pg_restore,
#     leaving out the row-level security entries (only vecphi.protect() may
#     create them: a plain restore is refused, checked here), then calls
#     vecphi.protect() again.
#  4. There the claimant reads the same values through the index, another
#     tenant's claimant sees none of them, and the table is protected again
#     (its owner may not drop the policies).
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

my $claims = VecphiCheck::claims_do(tenant => 'st_marys', role => 'clinician', sub => 'dr_a');
my $claims_b = VecphiCheck::claims_do(tenant => 'county', role => 'clinician', sub => 'dr_b');
my $marker = 'OWNER-DUMP-PLAINTEXT-5521';

my $readback = qq{
	SET ROLE app;
	BEGIN;
	$claims
	SET LOCAL enable_seqscan = off;
	SELECT id, vecphi.decrypt(body), vecphi.decrypt(embedding)
	FROM notes ORDER BY embedding <-> '[10.1,0.7,1]' LIMIT 5;
	COMMIT;
};
my $other_tenant = qq{
	SET ROLE app;
	BEGIN;
	$claims_b
	SELECT count(*) FROM notes;
	COMMIT;
};

# Roles and the extension: what a superuser does once per cluster/database.
sub prepare_database
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
		CREATE ROLE clinic_owner LOGIN BYPASSRLS;
		CREATE ROLE app NOLOGIN;
		CREATE DATABASE clinic OWNER clinic_owner;
	});
	$node->safe_psql('clinic', q{
		CREATE EXTENSION vecphi;
		GRANT CREATE ON SCHEMA public TO clinic_owner;
	});
}

# ---- 1. the source ----
my $src = VecphiTest::new_node('source');
$src->start;
prepare_database($src);
$src->safe_psql('clinic', q{
	SELECT vecphi.create_tenant('st_marys');
	SELECT vecphi.create_tenant('county');
	SET ROLE vecphi_security_officer;
	INSERT INTO vecphi.role_categories VALUES ('clinician', 'clinical');
});
# Everything about the table is done by its owner.
$src->safe_psql('clinic', qq{
	SET ROLE clinic_owner;
	CREATE TABLE notes (
		id        int PRIMARY KEY,
		tenant    text NOT NULL DEFAULT vecphi.tenant(),
		category  text NOT NULL DEFAULT 'clinical',
		body      etext,
		embedding evector(3));
	SELECT vecphi.protect('notes', 'tenant', 'category');
	CREATE INDEX notes_embedding ON notes USING ehnsw (embedding evector_l2_ops);
	GRANT SELECT, INSERT ON notes TO app;
	RESET ROLE;
	SET ROLE app;
	BEGIN;
	$claims
	INSERT INTO notes (id, body, embedding)
		SELECT g, ('$marker ' || g)::etext, ARRAY[g, g % 4, 1]::real[]
		FROM generate_series(1, 30) AS g;
	COMMIT;
	BEGIN;
	$claims_b
	INSERT INTO notes (id, body, embedding) VALUES (100, 'county note', '[10,0,1]');
	COMMIT;
});
my $expected = $src->safe_psql('clinic', $readback);
like($expected, qr/^10\|$marker 10\|\{10,2,1\}$/m, 'the claimant reads its rows on the source');

my $dump = $src->basedir . '/owner.dump';
ok( !$src->run_log(
		[ 'pg_dump', '-h', $src->host, '-p', $src->port, '-U', 'clinic_owner',
		  '-Fc', '-f', "$dump.all", 'clinic' ]),
	'without excluding vecphi\'s configuration the owner cannot dump (its key tables are not the owner\'s to read)');
$src->command_ok(
	[ 'pg_dump', '-h', $src->host, '-p', $src->port, '-U', 'clinic_owner',
	  '--exclude-table-data=vecphi.*', '-Fc', '-f', $dump, 'clinic' ],
	'the owner dumps the database, leaving out vecphi\'s configuration');
my $dump_sql = $src->basedir . '/owner.sql';
$src->command_ok([ 'pg_restore', '-f', $dump_sql, $dump ], 'the dump reads back as SQL');
my $dump_text = slurp_file($dump_sql);
like($dump_text, qr/^COPY public\.notes .*\n1\tst_marys\tclinical\tvecphi:[A-Za-z0-9+\/=]+\tvecphi:/m,
	'the dump holds the notes as envelopes');
unlike($dump_text, qr/\Q$marker\E|county note/, 'and no plaintext');
unlike($dump_text, qr/^COPY vecphi\./m, 'and none of vecphi\'s tables');

# ---- 2. the key tables, and the KEK files ----
my $keys_sql = $src->basedir . '/keys.sql';
$src->command_ok(
	[ 'pg_dump', '-h', $src->host, '-p', $src->port, '--data-only',
	  map({ ('-t', "vecphi.$_") } qw(keyring_identity tenants keyring tenant_ids dek_versions
		  role_categories shredded_tenants)),
	  '-f', $keys_sql, 'clinic' ],
	'the superuser dumps the key tables');

# ---- 3. the target ----
my $dst = VecphiTest::new_node('target');
for my $kek (VecphiCheck::dir_files(VecphiTest::key_dir($src)))
{
	next unless $kek =~ /\.kek$/;
	my $to = VecphiTest::key_dir($dst) . "/$kek";
	copy(VecphiTest::key_dir($src) . "/$kek", $to) or die "copy $kek: $!";
	chmod 0600, $to or die "chmod $to: $!";
}
$dst->start;
prepare_database($dst);
$dst->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $dst->host, '-p', $dst->port,
	'-f', $keys_sql, '-d', 'clinic' ], 'the superuser loads the key tables');

# A plain restore by the owner: the row-level security entries are refused.
$dst->safe_psql('postgres', 'CREATE DATABASE scratch OWNER clinic_owner');
$dst->safe_psql('scratch', 'CREATE EXTENSION vecphi; GRANT CREATE ON SCHEMA public TO clinic_owner');
my ($out, $err) = ('', '');
IPC::Run::run([ 'pg_restore', '-h', $dst->host, '-p', $dst->port, '-U', 'clinic_owner',
	'-d', 'scratch', $dump ], '>', \$out, '2>', \$err);
like($err, qr/CREATE POLICY would make it a protected table outside vecphi\.protect\(\)/,
	'a plain restore by the owner may not create vecphi\'s policies');

# The restore the docs give: everything but the row-level security entries.
my $list = $dst->basedir . '/restore.list';
my $toc = `pg_restore -l '$dump'`;
die "pg_restore -l failed" if $?;
my @kept = grep { !/ (POLICY|ROW SECURITY) | TRIGGER public notes vecphi_binding | (COMMENT|EXTENSION) - EXTENSION vecphi / } split /\n/, $toc;
cmp_ok(scalar(@kept), '<', scalar(split /\n/, $toc), 'the restore list leaves entries out');
open my $fh, '>', $list or die "$list: $!";
print $fh "$_\n" for @kept;
close $fh;
$dst->command_ok(
	[ 'pg_restore', '-h', $dst->host, '-p', $dst->port, '-U', 'clinic_owner', '--exit-on-error',
	  '-L', $list, '-d', 'clinic', $dump ],
	'the owner restores everything but the row-level security entries');
$dst->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $dst->host, '-p', $dst->port,
	  '-U', 'clinic_owner', '-d', 'clinic', '-c', "SELECT vecphi.protect('notes', 'tenant', 'category')" ],
	'the owner protects the restored table');

# ---- 4. the restored table ----
is($dst->safe_psql('clinic', $readback), $expected,
	'the claimant reads the same values through the index');
like($dst->safe_psql('clinic', "BEGIN; $claims EXPLAIN (COSTS OFF) SELECT id FROM notes ORDER BY embedding <-> '[10.1,0.7,1]' LIMIT 5; COMMIT;"),
	qr/Index Scan using notes_embedding/, 'through the restored ehnsw index');
is($dst->safe_psql('clinic', $other_tenant), '1', 'another tenant\'s claimant sees only its own row');
is($dst->safe_psql('clinic',
	"SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = 'notes'"),
	't', 'row-level security is on and forced');
like(VecphiCheck::error_of($dst, 'clinic', 'SET ROLE clinic_owner; DROP POLICY vecphi_select ON notes;'),
	qr/^42501: /, 'the owner may not drop the policies of the restored table');
is($dst->safe_psql('clinic', "SELECT vecphi.index_check('notes_embedding')"), 't',
	'the restored index checks out');

$src->stop;
$dst->stop;
done_testing();
