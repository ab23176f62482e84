# vecphi: the key providers and what they refuse.
#
# Embedded provider (vecphi.key_directory):
#  - a missing KEK file: a new session cannot decrypt (58P01, naming the
#    tenant); putting the file back makes it work again;
#  - a KEK file others may read (0644), or a malformed one: refused
#    (F0000) until fixed;
#  - a key directory inside the data directory, or one others may write:
#    refused.
# Command provider (vecphi.kek_command, vecphi.key_directory = ''):
#  - create_tenant, encryption and decryption with the KEK the command
#    prints; rotate_kek asks the command for version 2;
#  - a command that fails or prints no key: an error naming the tenant;
#  - both providers configured, or neither: a configuration error.
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

my $node = VecphiTest::new_node('provider');
$node->start;
my $keys = VecphiTest::key_dir($node);
my $claims = VecphiCheck::claims_do(
	tenant => 'emb',
	role => 'clinician',
	sub => 'dr_a');

# Set provider settings (undef: leave as is) and reload.
sub set_providers
{
	my (%set) = @_;
	my @sql;
	for my $name (sort keys %set)
	{
		my $value = $set{$name};
		$value =~ s/'/''/g;
		push @sql, "ALTER SYSTEM SET vecphi.$name = '$value';";
	}
	$node->safe_psql('postgres', join("\n", @sql, 'SELECT pg_reload_conf();'));
	# Wait until a new session sees the new values.
	for my $name (sort keys %set)
	{
		(my $value = $set{$name}) =~ s/'/''/g;
		$node->poll_query_until('postgres',
			"SELECT current_setting('vecphi.$name') = '$value'")
		  or die "vecphi.$name did not change";
	}
	return;
}

# ---------------------------------------------------------------------------
# Embedded provider
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('emb');
	CREATE TABLE data (id int, v evector(3));
	BEGIN;
	$claims
	INSERT INTO data VALUES (1, '[1,2,3]');
	COMMIT;
});
my $decrypt = "BEGIN; $claims SELECT vecphi.decrypt(v) FROM data;";
is(VecphiCheck::error_of($node, 'postgres', $decrypt), 'no error', 'decrypts with the KEK file in place');
my $kr = $node->safe_psql('postgres', 'SELECT keyring_id FROM vecphi.keyring_identity');    # KEK files start with it
my $kek = "$keys/$kr.emb.1.kek";
is(sprintf('%04o', VecphiCheck::file_mode($kek)), '0600', 'create_tenant wrote the KEK file with mode 0600');

# KEK file missing.
rename $kek, "$kek.saved" or die "rename: $!";
my $missing = VecphiCheck::error_of($node, 'postgres', $decrypt);
like($missing, qr/^58P01: key-encryption key of tenant "emb" is missing$/,
	'KEK file removed: a new session cannot decrypt (58P01, names the tenant)');
like(VecphiCheck::error_of($node, 'postgres', "BEGIN; $claims SELECT '[1,1,1]'::evector;"),
	qr/^58P01: .*"emb"/, 'nor encrypt');
like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.rotate_kek('emb')"),
	qr/^58P01: .*"emb"/, 'nor rotate its KEK');
rename "$kek.saved", $kek or die "rename: $!";
is(VecphiCheck::error_of($node, 'postgres', $decrypt), 'no error', 'the file back: decrypts again');

# KEK file readable by others.
chmod 0644, $kek or die "chmod: $!";
like(VecphiCheck::error_of($node, 'postgres', $decrypt),
	qr/^F0000: key file ".*emb\.1\.kek" has unsafe ownership or permissions$/,
	'KEK file mode 0644: refused (F0000)');
chmod 0640, $kek or die "chmod: $!";
like(VecphiCheck::error_of($node, 'postgres', $decrypt), qr/^F0000: .*permissions/,
	'KEK file mode 0640: refused');
chmod 0600, $kek or die "chmod: $!";
is(VecphiCheck::error_of($node, 'postgres', $decrypt), 'no error', 'mode 0600 again: decrypts');

# KEK file malformed (the right key with junk added, or cut short).
my $hex = slurp_file($kek);
VecphiCheck::write_file($kek, substr($hex, 0, 63) . "\n");
like(VecphiCheck::error_of($node, 'postgres', $decrypt), qr/^F0000: key file ".*" of tenant "emb" is malformed$/,
	'a KEK file of 63 hex digits is refused');
VecphiCheck::write_file($kek, "zz" . substr($hex, 2));
like(VecphiCheck::error_of($node, 'postgres', $decrypt), qr/^F0000: .*malformed/,
	'a KEK file with non-hex digits is refused');
VecphiCheck::write_file($kek, "  " . uc($hex) . "\n\n");
is(VecphiCheck::error_of($node, 'postgres', $decrypt), 'no error',
	'upper-case hex with surrounding white space is the same key');
VecphiCheck::write_file($kek, $hex);

# Key directory others may write to.
chmod 0770, $keys or die "chmod: $!";
like(VecphiCheck::error_of($node, 'postgres', $decrypt),
	qr/^F0000: key directory ".*" has unsafe ownership or permissions$/,
	'a group-writable key directory is refused');
chmod 0700, $keys or die "chmod: $!";
is(VecphiCheck::error_of($node, 'postgres', $decrypt), 'no error', 'mode 0700 again: decrypts');

# Key directory inside the data directory.
my $inside = $node->data_dir . '/vecphi_keys';
mkdir $inside, 0700 or die "mkdir: $!";
copy($kek, "$inside/$kr.emb.1.kek") or die "copy: $!";
chmod 0600, "$inside/$kr.emb.1.kek";
set_providers(key_directory => $inside);
like(VecphiCheck::error_of($node, 'postgres', $decrypt),
	qr/^F0000: key directory ".*vecphi_keys" is inside the data directory$/,
	'a key directory inside the data directory is refused for reading');
like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.create_tenant('emb2')"),
	qr/^F0000: key directory ".*" is inside the data directory$/,
	'and for creating a tenant');
is(join(' ', VecphiCheck::dir_files($inside)), "$kr.emb.1.kek", 'no key file was written there');
# ... also when named through a path that leads into it.
symlink $inside, $node->basedir . '/keys_link' or die "symlink: $!";
set_providers(key_directory => $node->basedir . '/keys_link');
like(VecphiCheck::error_of($node, 'postgres', $decrypt),
	qr/^F0000: .*inside the data directory/, 'also through a symbolic link');
set_providers(key_directory => 'relative/keys');
like(VecphiCheck::error_of($node, 'postgres', $decrypt),
	qr/^F0000: vecphi.key_directory must be an absolute path$/, 'a relative key directory is refused');
set_providers(key_directory => $node->basedir . '/no_such_dir');
like(VecphiCheck::error_of($node, 'postgres', $decrypt),
	qr/^58P01: key directory ".*no_such_dir" does not exist$/, 'a missing key directory is reported');
set_providers(key_directory => $keys);
is(VecphiCheck::error_of($node, 'postgres', $decrypt), 'no error', 'the right directory again: decrypts');

# Neither provider.
set_providers(key_directory => '');
like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.create_tenant('none')"),
	qr/^F0000: no key provider is configured$/, 'no provider: create_tenant refused');
like(VecphiCheck::error_of($node, 'postgres', $decrypt),
	qr/^F0000: no key provider is configured$/, 'no provider: decryption refused');

# ---------------------------------------------------------------------------
# Command provider
# ---------------------------------------------------------------------------
my $kms = $node->basedir . '/kms';
mkdir $kms, 0700 or die "mkdir: $!";
my %kms_key = (
	'kms_t.1' => '11' x 32,
	'kms_t.2' => '22' x 32,
	'kms_same.1' => '33' x 32,
	'kms_same.2' => '33' x 32);
VecphiCheck::write_file("$kms/$_.hex", "$kms_key{$_}\n") for keys %kms_key;
set_providers(key_directory => '', kek_command => "cat $kms/%t.%v.hex");
my $claims_kms = VecphiCheck::claims_do(
	tenant => 'kms_t',
	role => 'clinician',
	sub => 'dr_k');

is($node->safe_psql('postgres', "SELECT vecphi.create_tenant('kms_t') > 0"), 't',
	'command provider: create_tenant');
is(join(' ', grep { !/\.owner$/ } VecphiCheck::dir_files($keys)), "$kr.emb.1.kek",
	'no key file was written by the command provider');
is( $node->safe_psql(
		'postgres', qq{
	BEGIN;
	$claims_kms
	CREATE TABLE kms_data AS SELECT '[4,5,6]'::evector AS v, 'kms text'::etext AS t;
	SELECT vecphi.decrypt(v), vecphi.decrypt(t) FROM kms_data;
	COMMIT;}),
	'{4,5,6}|kms text',
	'command provider: encrypt and decrypt');
my $kms_decrypt = "BEGIN; $claims_kms SELECT vecphi.decrypt(v) FROM kms_data;";
is(VecphiCheck::error_of($node, 'postgres', $kms_decrypt), 'no error',
	'command provider: a new session decrypts');
# The embedded tenant's KEK is not reachable through the command.
like(VecphiCheck::error_of($node, 'postgres', $decrypt),
	qr/^58P01: key-encryption key of tenant "emb" is not available$/,
	'command provider: a tenant the command has no key for is named');

# rotate_kek asks for version 2.
is($node->safe_psql('postgres', "SELECT vecphi.rotate_kek('kms_t')"), '2',
	'command provider: rotate_kek uses version 2');
unlink "$kms/kms_t.1.hex" or die "unlink: $!";
is(VecphiCheck::error_of($node, 'postgres', $kms_decrypt), 'no error',
	'after rotation only version 2 is needed');
like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.rotate_kek('kms_t')"),
	qr/^58P01: key-encryption key of tenant "kms_t" is not available$/,
	'rotate_kek to a version the command does not have fails, naming the tenant');
is(VecphiCheck::error_of($node, 'postgres', $kms_decrypt), 'no error',
	'and leaves the tenant readable');
# A provider that returns the same key for two versions is refused.
$node->safe_psql('postgres', "SELECT vecphi.create_tenant('kms_same')");
like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.rotate_kek('kms_same')"),
	qr/^F0000: key provider returned the same key-encryption key for versions 1 and 2 of tenant "kms_same"$/,
	'rotate_kek refuses an unchanged KEK');

# A command that prints a wrong key: the data keys do not unwrap.
VecphiCheck::write_file("$kms/kms_t.2.hex", ('44' x 32) . "\n");
like(VecphiCheck::error_of($node, 'postgres', $kms_decrypt),
	qr/^XX001: data key 1 of tenant "kms_t" cannot be unwrapped$/,
	'a wrong KEK from the command is detected');
VecphiCheck::write_file("$kms/kms_t.2.hex", "$kms_key{'kms_t.2'}\n");

# A command that fails.
set_providers(kek_command => 'false');
like(VecphiCheck::error_of($node, 'postgres', $kms_decrypt),
	qr/^58P01: key-encryption key of tenant "kms_t" is not available$/,
	'a failing command: error naming the tenant');
like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.create_tenant('kms_fail')"),
	qr/^58P01: .*"kms_fail"/, 'create_tenant with a failing command fails');
is($node->safe_psql('postgres', "SELECT count(*) FROM vecphi.tenants WHERE tenant = 'kms_fail'"),
	'0', 'and leaves no tenant behind');
# A command that prints something else than a key.
set_providers(kek_command => 'echo not-a-key-for-%t');
like(VecphiCheck::error_of($node, 'postgres', $kms_decrypt),
	qr/^F0000: vecphi.kek_command printed no valid key for tenant "kms_t"$/,
	'a command printing no key: error naming the tenant');
set_providers(kek_command => "cat $kms/%t.%v.hex");
is(VecphiCheck::error_of($node, 'postgres', $kms_decrypt), 'no error', 'the right command again: decrypts');

# Both providers.
set_providers(key_directory => $keys);
like(VecphiCheck::error_of($node, 'postgres', $kms_decrypt),
	qr/^F0000: both vecphi.key_directory and vecphi.kek_command are set$/,
	'both providers configured: configuration error');
like(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.create_tenant('both')"),
	qr/^F0000: both vecphi.key_directory and vecphi.kek_command are set$/,
	'also for create_tenant');
set_providers(kek_command => '');
is(VecphiCheck::error_of($node, 'postgres', $decrypt), 'no error',
	'embedded provider alone again: its tenant decrypts');

# The provider settings are for superusers only.
$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
like(VecphiCheck::error_of($node, 'postgres', "SET ROLE plain; SHOW vecphi.key_directory;"),
	qr/^42501: /, 'a plain role cannot read vecphi.key_directory');
like(VecphiCheck::error_of($node, 'postgres', "SET ROLE plain; SHOW vecphi.kek_command;"),
	qr/^42501: /, 'nor vecphi.kek_command');

$node->stop;
done_testing();
