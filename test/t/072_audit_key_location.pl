# vecphi: the audit chain key lives with the other keys, not in $PGDATA.
#
#  - by default the first audit writer creates audit.key in
#    vecphi.key_directory (mode 0600), nothing under the data directory,
#    so a base backup carries no audit key;
#  - a key file others can read or write, or one in the data directory
#    (also through a symbolic link), is refused with an error naming the
#    file and the fix;
#  - a missing key is not silently replaced while the chain has records
#    (that would break the chain): the writer refuses, and once the file is
#    back everything queued is written and verifies;
#  - with the command key provider (no key directory) vecphi.audit_key_file
#    must be set: a clear error otherwise;
#  - a standby without the key creates none: its audited statements fail
#    closed until the primary's key file is copied to it (docs/audit.md).
use strict;
use warnings;

use File::Copy qw(copy);
use File::Find;
use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('keyloc', allows_streaming => 1, default_audit_key => 1);
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION vecphi');
my $keys = VecphiTest::key_dir($node);
my $key = "$keys/audit.key";

# A denial, flushed (in the same session): one record, or the error.
sub denial
{
	my ($n, $timeout) = @_;
	$timeout //= '10s';
	return VecphiCheck::error_of(
		$n, 'postgres', qq{
		SET vecphi.audit_timeout = '$timeout';
		DO \$\$BEGIN PERFORM vecphi.set_claims('bad.token');
		EXCEPTION WHEN invalid_authorization_specification THEN NULL; END\$\$;
		SELECT vecphi.audit_flush();});
}

# Files under a directory whose name contains "audit.key".
sub audit_keys_under
{
	my ($dir) = @_;
	my @found;
	find(sub { push @found, $File::Find::name if /audit\.key/ }, $dir);
	return @found;
}

is(denial($node), 'no error', 'a denial is recorded');
ok(-f $key, 'the writer created audit.key in vecphi.key_directory');
is(VecphiCheck::file_mode($key), 0600, 'with mode 0600');
my $content = do { local $/; open my $fh, '<', $key or die $!; <$fh> };
like($content, qr/^[0-9a-f]{64}$/, '64 hex digits');
is(join(' ', audit_keys_under($node->data_dir)), '', 'no audit key under the data directory');
is(join(' ', grep { /\.tmp/ } VecphiCheck::dir_files($keys)), '', 'no temporary file left in the key directory');

$node->backup('bk');
is(join(' ', audit_keys_under($node->backup_dir . '/bk')), '', 'a base backup carries no audit key');

# ---- unsafe permissions ----
my $verify = 'SELECT ok FROM vecphi.verify_audit()';
chmod 0640, $key or die;
like(VecphiCheck::error_of($node, 'postgres', $verify),
	qr/^F0000: audit key file ".*audit\.key" is readable or writable by other users/,
	'a key readable by the group is refused');
my ($ret, $out, $err) = $node->psql('postgres', $verify);
like($err, qr/chmod 0600/, 'the error says how to fix it');
chmod 0604, $key or die;
like(VecphiCheck::error_of($node, 'postgres', $verify),
	qr/^F0000: audit key file .* is readable or writable by other users/, 'a world-readable key is refused');
chmod 0600, $key or die;
is($node->safe_psql('postgres', $verify), 't', 'mode 0600 again: the chain verifies');

# ---- a key file in the data directory is refused ----
my $inside = $node->data_dir . '/my_audit.key';
copy($key, $inside) or die;
chmod 0600, $inside or die;
$node->safe_psql('postgres', "ALTER SYSTEM SET vecphi.audit_key_file = '$inside'; SELECT pg_reload_conf();");
$node->poll_query_until('postgres', "SELECT current_setting('vecphi.audit_key_file') = '$inside'") or die;
like(VecphiCheck::error_of($node, 'postgres', $verify),
	qr/^F0000: audit key file ".*my_audit\.key" is inside the data directory/,
	'an audit key in the data directory is refused');
# ... also through a symbolic link to it.
my $link = $node->basedir . '/linked_audit.key';
symlink $inside, $link or die "symlink: $!";
$node->safe_psql('postgres', "ALTER SYSTEM SET vecphi.audit_key_file = '$link'; SELECT pg_reload_conf();");
$node->poll_query_until('postgres', "SELECT current_setting('vecphi.audit_key_file') = '$link'") or die;
like(VecphiCheck::error_of($node, 'postgres', $verify),
	qr/^F0000: audit key file ".*linked_audit\.key" is inside the data directory/,
	'also through a symbolic link');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET vecphi.audit_key_file; SELECT pg_reload_conf();');
$node->poll_query_until('postgres', "SELECT current_setting('vecphi.audit_key_file') = ''") or die;
unlink $inside, $link;

# ---- a missing key is not replaced while the chain has records ----
my $count = $node->safe_psql('postgres', 'SELECT count(*) FROM vecphi.audit_log');
my $no_writer = "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'vecphi audit writer'";
ok($node->poll_query_until('postgres', $no_writer), 'no audit writer is running');
rename $key, "$key.away" or die;
like(denial($node, '1s'), qr/^55000: vecphi audit record was not written/,
	'without its key the writer writes nothing');
ok(!-e $key, 'and did not create a new key');
like(slurp_file($node->logfile), qr/audit key file ".*audit\.key" is missing/, 'the log says why');
rename "$key.away", $key or die;
is(denial($node), 'no error', 'with the key back the records are written');
is($node->safe_psql('postgres', "SELECT count(*) - $count FROM vecphi.audit_log"), '2',
	'both denials are there');
is($node->safe_psql('postgres', $verify), 't', 'and the chain verifies');

# ---- the command provider: no key directory ----
$node->safe_psql('postgres',
	"ALTER SYSTEM SET vecphi.key_directory = ''; ALTER SYSTEM SET vecphi.kek_command = 'false'; SELECT pg_reload_conf();");
$node->poll_query_until('postgres', "SELECT current_setting('vecphi.key_directory') = ''") or die;
like(VecphiCheck::error_of($node, 'postgres', $verify),
	qr/^F0000: vecphi.audit_key_file must be set when vecphi.key_directory is empty/,
	'without a key directory vecphi.audit_key_file is required');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET vecphi.audit_key_file = '$key'; SELECT pg_reload_conf();");
$node->poll_query_until('postgres', "SELECT current_setting('vecphi.audit_key_file') <> ''") or die;
is($node->safe_psql('postgres', $verify), 't', 'set, the same key verifies the chain');
$node->safe_psql('postgres',
	'ALTER SYSTEM RESET vecphi.key_directory; ALTER SYSTEM RESET vecphi.kek_command; ALTER SYSTEM RESET vecphi.audit_key_file; SELECT pg_reload_conf();');
$node->poll_query_until('postgres', "SELECT current_setting('vecphi.audit_key_file') = ''") or die;

# ---- a standby without the key ----
my $standby = PostgreSQL::Test::Cluster->new('keyloc_standby');
$standby->init_from_backup($node, 'bk', has_streaming => 1);
VecphiTest::configure_node($standby, default_audit_key => 1);
$standby->start;
like(denial($standby, '1s'), qr/^55000: /, 'a standby without the audit key records nothing');
ok(!-e VecphiTest::key_dir($standby) . '/audit.key', 'and creates no key of its own');
like(slurp_file($standby->logfile), qr/copy the primary's/, 'the log says to copy the primary\'s key');
copy($key, VecphiTest::key_dir($standby) . '/audit.key') or die;
chmod 0600, VecphiTest::key_dir($standby) . '/audit.key' or die;
is(denial($standby), 'no error', 'with the primary\'s key copied, the standby records');
is($standby->safe_psql('postgres', 'SELECT bool_and(chain_ok) FROM vecphi.standby_audit_log()'),
	't', 'its file chain verifies with that key');
$standby->stop;

$node->stop;
done_testing();
