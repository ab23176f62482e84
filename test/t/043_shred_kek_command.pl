# vecphi: crypto-shredding with a vecphi.kek_command key provider.
#
# The "KMS" is a directory of hex key files read by vecphi.kek_command and
# removed by vecphi.kek_destroy_command.  Without a destroy command the
# shred is refused; a destroy command that fails leaves everything as it
# was; one that works removes the key at the provider, and the tenant's
# data can no longer be decrypted.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $claims = VecphiCheck::claims_do(tenant => 'erase_k', role => 'clinician', sub => 'dr_k');

my $node = VecphiTest::new_node('kms');
my $kms = $node->basedir . '/kms';
mkdir $kms, 0700 or die "mkdir $kms: $!";
# The administrator creates the tenant's key in the KMS first.
VecphiCheck::write_file("$kms/erase_k.1.hex", ('ab' x 32) . "\n");
$node->append_conf(
	'postgresql.conf', qq{
vecphi.key_directory = ''
vecphi.kek_command = 'cat $kms/%t.%v.hex'
});
$node->start;
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('erase_k');
	CREATE TABLE notes (id int PRIMARY KEY, body etext);
	BEGIN;
	$claims
	INSERT INTO notes VALUES (1, vecphi.encrypt('kms note'));
	COMMIT;
});

sub decrypt
{
	return VecphiCheck::error_of($node, 'postgres',
		"BEGIN; $claims SELECT vecphi.decrypt(body) FROM notes WHERE id = 1; COMMIT;");
}
is(decrypt(), 'no error', 'the tenant decrypts through vecphi.kek_command');

like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.shred_tenant('erase_k')"),
	qr/^F0000: vecphi.kek_destroy_command is not set/,
	'without vecphi.kek_destroy_command the shred is refused');

$node->append_conf('postgresql.conf', "vecphi.kek_destroy_command = 'false'\n");
$node->reload;
like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.shred_tenant('erase_k')"),
	qr/^58000: vecphi.kek_destroy_command failed for tenant "erase_k", key-encryption key version 1/,
	'a destroy command that fails stops the shred (58000)');
is(decrypt(), 'no error', 'and nothing was shredded');
is($node->safe_psql('postgres', 'SELECT count(*) FROM vecphi.keyring'), '1', 'the data key is still there');

$node->append_conf('postgresql.conf', "vecphi.kek_destroy_command = 'rm $kms/%t.%v.hex'\n");
$node->reload;
is($node->safe_psql('postgres', "SELECT vecphi.shred_tenant('erase_k')"), '1',
	'with a working destroy command the shred succeeds');
ok(!-e "$kms/erase_k.1.hex", 'the key is gone from the provider');
like(decrypt(), qr/^58P01: keys of tenant "erase_k" have been crypto-shredded/,
	'the tenant\'s data can no longer be decrypted');

$node->stop;
done_testing();
