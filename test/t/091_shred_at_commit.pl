# vecphi: vecphi.shred_tenant() destroys KEKs when its transaction commits,
# for both key providers: a rollback, of the transaction or of a
# subtransaction (ROLLBACK TO SAVEPOINT, a PL/pgSQL EXCEPTION block), keeps
# the tenant whole and readable; a commit destroys.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('shred_commit');
my $kms = $node->basedir . '/kms';
mkdir $kms, 0700 or die "mkdir $kms: $!";
$node->start;
my $keys = VecphiTest::key_dir($node);

sub claims { return VecphiCheck::claims_do(tenant => $_[0], role => 'clinician', sub => 'dr'); }

sub add_tenant
{
	my ($t) = @_;
	my $c = claims($t);
	$node->safe_psql(
		'postgres', qq{
		SELECT vecphi.create_tenant('$t');
		BEGIN;
		$c
		INSERT INTO notes VALUES ('$t', vecphi.encrypt('note of $t'));
		COMMIT;
	});
	return;
}

sub read_note
{
	my ($t) = @_;
	my $c = claims($t);
	# A new session each time: no data key cached.
	return VecphiCheck::error_of($node, 'postgres',
		"BEGIN; $c SELECT vecphi.decrypt(body) FROM notes WHERE t = '$t'; COMMIT;");
}

# KEK files of a tenant in the key directory, whatever their prefix.
sub kek_files
{
	my ($t) = @_;
	return scalar grep { /(^|\.)\Q$t\E\.\d+\.kek$/ } VecphiCheck::dir_files($keys);
}

my @aborts = (
	[ 'ROLLBACK', "BEGIN; SELECT vecphi.shred_tenant('%s'); ROLLBACK;" ],
	[ 'an error after the shred', "BEGIN; SELECT vecphi.shred_tenant('%s'); SELECT 1/0; COMMIT;" ],
	[ 'ROLLBACK TO SAVEPOINT',
		"BEGIN; SAVEPOINT a; SELECT vecphi.shred_tenant('%s'); ROLLBACK TO a; COMMIT;" ],
	[ 'a caught error',
		"DO \$\$BEGIN PERFORM vecphi.shred_tenant('%s'); RAISE EXCEPTION 'no'; EXCEPTION WHEN raise_exception THEN NULL; END\$\$;" ],
);

$node->safe_psql('postgres', 'CREATE EXTENSION vecphi; CREATE TABLE notes (t text, body etext);');

# ---- embedded provider ----
add_tenant('emb');
is(read_note('emb'), 'no error', 'embedded: the tenant reads');
for my $a (@aborts)
{
	$node->psql('postgres', sprintf($a->[1], 'emb'));
	is(kek_files('emb'), 1, "embedded, shred then $a->[0]: the KEK file stays");
	is(read_note('emb'), 'no error', "embedded, shred then $a->[0]: the tenant reads");
}
$node->safe_psql('postgres', "SELECT vecphi.shred_tenant('emb')");
is(kek_files('emb'), 0, 'embedded, shred committed: the KEK file is gone');
like(read_note('emb'), qr/^58P01: keys of tenant "emb" have been crypto-shredded/,
	'embedded, shred committed: the tenant cannot be read');

# ---- vecphi.kek_command provider ----
VecphiCheck::write_file("$kms/cmd.1.hex", ('ab' x 32) . "\n");
$node->append_conf(
	'postgresql.conf', qq{
vecphi.key_directory = ''
vecphi.kek_command = 'cat $kms/%t.%v.hex'
vecphi.kek_destroy_command = 'rm $kms/%t.%v.hex'
});
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('vecphi.key_directory') = ''") or die;
add_tenant('cmd');
is(read_note('cmd'), 'no error', 'command: the tenant reads');
for my $a (@aborts)
{
	$node->psql('postgres', sprintf($a->[1], 'cmd'));
	ok(-e "$kms/cmd.1.hex", "command, shred then $a->[0]: the KEK stays at the provider");
	is(read_note('cmd'), 'no error', "command, shred then $a->[0]: the tenant reads");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM vecphi.shredded_tenants s JOIN vecphi.tenants t USING (tenant_id) WHERE t.tenant = \'cmd\''),
		'0', "command, shred then $a->[0]: no tombstone");
}
# A failing destroy command aborts the shred at commit.
$node->append_conf('postgresql.conf', "vecphi.kek_destroy_command = 'false'\n");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('vecphi.kek_destroy_command') = 'false'") or die;
like(VecphiCheck::error_of($node, 'postgres', "BEGIN; SELECT vecphi.shred_tenant('cmd'); COMMIT;"),
	qr/^58000: vecphi.kek_destroy_command failed for tenant "cmd"/,
	'command: a failing destroy command fails the commit');
is(read_note('cmd'), 'no error', 'command: and the tenant is whole');
$node->append_conf('postgresql.conf', "vecphi.kek_destroy_command = 'rm $kms/%t.%v.hex'\n");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('vecphi.kek_destroy_command') LIKE 'rm %'") or die;
$node->safe_psql('postgres', "BEGIN; SELECT vecphi.shred_tenant('cmd'); SELECT 1; COMMIT;");
ok(!-e "$kms/cmd.1.hex", 'command, shred committed: the KEK is gone from the provider');
like(read_note('cmd'), qr/^58P01: keys of tenant "cmd" have been crypto-shredded/,
	'command, shred committed: the tenant cannot be read');

$node->stop;
done_testing();
