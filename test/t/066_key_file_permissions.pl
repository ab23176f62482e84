# vecphi: key material on disk must be the server user's own (issue #11,
# section 6).
#
# The HS256 secret and the KEK files: owned by the server's user, readable
# and writable by it only.  The public key file and the key directory:
# owned by it, writable by nobody else.  Anything else is refused with an
# error that names the file and a HINT with the chown/chmod that fixes it.
# The tests run as the server's user, so "owned by someone else" is a
# symbolic link to a root-owned file (the check judges the file read).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('keyfiles');
$node->start;
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('kf');
});
my $keys = VecphiTest::key_dir($node);
my $secret_file = VecphiTest::secret_file($node);
my $claims = VecphiCheck::claims_do(tenant => 'kf', role => 'clinician', sub => 'dr_kf');
my $use_claims = "BEGIN; $claims SELECT vecphi.tenant(); COMMIT;";
my $use_kek = "BEGIN; $claims SELECT '[1,2,3]'::evector IS NOT NULL; COMMIT;";

# The HINT line psql prints for $sql, or ''.
sub hint_of
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err, on_error_stop => 1);
	return $err =~ /HINT:\s+([^\n]*)/ ? $1 : '';
}

is(VecphiCheck::error_of($node, 'postgres', $use_claims), 'no error', 'the secret file as made by the test helpers (0600) works');
is(VecphiCheck::error_of($node, 'postgres', $use_kek), 'no error', 'the key directory and KEK file as made work');

# ---------------------------------------------------------------------------
# HS256 secret file
# ---------------------------------------------------------------------------
for my $mode (0640, 0604, 0620, 0602, 0644, 0660)
{
	chmod $mode, $secret_file or die "chmod: $!";
	like(
		VecphiCheck::error_of($node, 'postgres', $use_claims),
		qr/^F0000: token secret file ".*jwt_secret" has unsafe ownership or permissions$/,
		sprintf('secret file mode %04o: refused, naming the file', $mode));
}
chmod 0640, $secret_file or die "chmod: $!";
like(hint_of($use_claims), qr/chown \S+ '.*jwt_secret' && chmod 0600 '.*jwt_secret'/,
	'the hint gives the chown and chmod that fix it');
chmod 0400, $secret_file or die "chmod: $!";
is(VecphiCheck::error_of($node, 'postgres', $use_claims), 'no error', 'secret file mode 0400: accepted');
chmod 0600, $secret_file or die "chmod: $!";

# A secret file that is someone else's (root's), reached through a link.
my $linked_secret = $node->basedir . '/secret_link';
symlink('/etc/hostname', $linked_secret) or die "symlink: $!";
$node->append_conf('postgresql.conf', "vecphi.jwt_secret_file = '$linked_secret'\n");
$node->reload;
like(VecphiCheck::error_of($node, 'postgres', $use_claims),
	qr/^F0000: token secret file ".*secret_link" has unsafe ownership or permissions$/,
	'a secret file owned by root: refused');
$node->append_conf('postgresql.conf', "vecphi.jwt_secret_file = '$secret_file'\n");
$node->reload;

# ---------------------------------------------------------------------------
# Public key file (ES256)
# ---------------------------------------------------------------------------
my $dir = PostgreSQL::Test::Utils::tempdir();
system_or_bail('openssl', 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', "$dir/ec.key");
system_or_bail('openssl', 'ec', '-in', "$dir/ec.key", '-pubout', '-out', "$dir/ec.pub");
my $pub = $node->basedir . '/jwt.pub';
VecphiCheck::write_file($pub, slurp_file("$dir/ec.pub"), 0644);
$node->append_conf('postgresql.conf', "vecphi.jwt_public_key_file = '$pub'\n");
$node->reload;
# An ES256 token: it gets as far as reading the public key file.
my $es_token = VecphiJWT::b64url('{"alg":"ES256","typ":"JWT"}') . '.'
  . VecphiJWT::b64url('{"exp":' . (time() + 600) . ',"role":"clinician","sub":"x","tenant":"kf"}')
  . '.' . VecphiJWT::b64url('x' x 64);
my $use_pub = "BEGIN; SELECT vecphi.set_claims('$es_token'); COMMIT;";
like(VecphiCheck::error_of($node, 'postgres', $use_pub), qr/^28000: invalid claims token$/,
	'public key file mode 0644: read (the bad signature is then refused)');
chmod 0664, $pub or die "chmod: $!";
like(VecphiCheck::error_of($node, 'postgres', $use_pub),
	qr/^F0000: token public key file ".*jwt\.pub" has unsafe ownership or permissions$/,
	'public key file group-writable: refused');
like(hint_of($use_pub), qr/chmod 0644 '.*jwt\.pub'/, 'with a hint to chmod 0644');
chmod 0644, $pub or die "chmod: $!";
my $linked_pub = $node->basedir . '/pub_link';
symlink('/etc/hostname', $linked_pub) or die "symlink: $!";
$node->append_conf('postgresql.conf', "vecphi.jwt_public_key_file = '$linked_pub'\n");
$node->reload;
like(VecphiCheck::error_of($node, 'postgres', $use_pub),
	qr/^F0000: token public key file ".*pub_link" has unsafe ownership or permissions$/,
	'a public key file owned by root (another user could replace it): refused');

# ---------------------------------------------------------------------------
# KEK files and the key directory
# ---------------------------------------------------------------------------
my $kr = $node->safe_psql('postgres', 'SELECT keyring_id FROM vecphi.keyring_identity');    # KEK files start with it
my $kek = "$keys/$kr.kf.1.kek";
for my $mode (0640, 0604, 0644, 0660)
{
	# A new session, so the data key is not cached.
	chmod $mode, $kek or die "chmod: $!";
	like(
		VecphiCheck::error_of($node, 'postgres', $use_kek),
		qr/^F0000: key file ".*kf\.1\.kek" has unsafe ownership or permissions$/,
		sprintf('KEK file mode %04o: refused, naming the file', $mode));
}
like(hint_of($use_kek), qr/chmod 0600 '.*kf\.1\.kek'/, 'with a hint to chmod 0600');
chmod 0600, $kek or die "chmod: $!";
rename $kek, "$kek.real" or die "rename: $!";
symlink('/etc/hostname', $kek) or die "symlink: $!";
like(VecphiCheck::error_of($node, 'postgres', $use_kek),
	qr/^F0000: key file ".*kf\.1\.kek" has unsafe ownership or permissions$/,
	'a KEK file owned by root: refused');
unlink $kek;
rename "$kek.real", $kek or die "rename: $!";
is(VecphiCheck::error_of($node, 'postgres', $use_kek), 'no error', 'the KEK file back: works');

for my $mode (0770, 0730, 0702, 0707)
{
	chmod $mode, $keys or die "chmod: $!";
	like(
		VecphiCheck::error_of($node, 'postgres', $use_kek),
		qr/^F0000: key directory ".*keys" has unsafe ownership or permissions$/,
		sprintf('key directory mode %04o: refused', $mode));
}
like(hint_of($use_kek), qr/chmod 0700 '.*keys'/, 'with a hint to chmod 0700');
chmod 0700, $keys or die "chmod: $!";
is(VecphiCheck::error_of($node, 'postgres', $use_kek), 'no error', 'key directory 0700 again: works');

$node->stop;
done_testing();
