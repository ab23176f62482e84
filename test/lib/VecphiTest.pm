# vecphi: helpers for the TAP tests in test/t/.
#
# A node from new_node() is ready for CREATE EXTENSION vecphi: the library
# is preloaded, the embedded key provider has a key directory outside the
# data directory, the audit chain's key a directory of its own (see
# audit_key_dir), and the server trusts tokens signed with secret().
#
#   use VecphiTest;
#   my $node = VecphiTest::new_node('primary', allows_streaming => 1);
#   $node->start;
#   $node->safe_psql('postgres', 'CREATE EXTENSION vecphi');
#   my $sql = "BEGIN; " . VecphiTest::claims_sql(tenant => 't1',
#       role => 'clinician', sub => 'u1') . " SELECT vecphi.tenant(); COMMIT;";

package VecphiTest;

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Copy ();
use File::Glob qw(bsd_glob);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

use VecphiJWT;

# The same public, test-only secret as test/run_tests.sh (at least 32 bytes,
# as the server requires).
my $TEST_SECRET = 'vecphi-regression-secret-0123456789abcdef';

# The HS256 secret test nodes trust.
sub secret
{
	return $TEST_SECRET;
}

# Root of the source tree this module was loaded from.
sub source_dir
{
	return abs_path(dirname(__FILE__) . '/../..');
}

# The node's vecphi.key_directory: beside, not inside, its data directory.
sub key_dir
{
	my ($node) = @_;
	return $node->basedir . '/keys';
}

# Where the node's audit key (and the audit head files beside it) live:
# by default a directory of its own beside the data directory, named by
# vecphi.audit_key_file (so that the key directory holds only KEK files);
# with default_audit_key => 1 given to new_node or configure_node, the key
# directory, vecphi's own default.
sub audit_key_dir
{
	my ($node) = @_;
	return $node->{_vecphi_default_audit_key}
	  ? key_dir($node)
	  : $node->basedir . '/audit_key';
}

# The node's vecphi.jwt_secret_file.
sub secret_file
{
	my ($node) = @_;
	return $node->basedir . '/jwt_secret';
}

# Single-quote a value for postgresql.conf.
sub _conf_quote
{
	my ($value) = @_;
	$value =~ s/'/''/g;
	return "'$value'";
}

# Give an initialised node its key directory, audit key directory and
# secret file and point the server at them (also usable on a standby made
# by init_from_backup, which otherwise shares its primary's key directory
# through the copied config).  Options: secret => '...' (default secret());
# default_audit_key => 1: no vecphi.audit_key_file, so the audit key is
# audit.key in the key directory.
sub configure_node
{
	my ($node, %opts) = @_;
	my $secret = $opts{secret} // secret();
	my $keys = key_dir($node);
	my $secret_file = secret_file($node);

	$node->{_vecphi_default_audit_key} = $opts{default_audit_key} ? 1 : 0;
	my $audit_dir = audit_key_dir($node);
	for my $dir ($keys, $audit_dir)
	{
		if (!-d $dir)
		{
			mkdir $dir, 0700 or die "could not create \"$dir\": $!";
		}
		chmod 0700, $dir or die "could not chmod \"$dir\": $!";
	}

	my $old_umask = umask 077;
	open my $fh, '>', $secret_file
	  or die "could not write \"$secret_file\": $!";
	print $fh $secret;
	close $fh or die "could not write \"$secret_file\": $!";
	umask $old_umask;
	chmod 0600, $secret_file or die "could not chmod \"$secret_file\": $!";

	# A node made from another's base backup (a standby, a restored copy)
	# inherits that node's settings: it gets a copy of its audit key, as
	# docs/audit.md says to do (the backup does not carry it).
	if (!$opts{default_audit_key} && -f $node->data_dir . '/postgresql.conf')
	{
		my $from;
		open my $fh, '<', $node->data_dir . '/postgresql.conf' or die $!;
		while (my $line = <$fh>)
		{
			$from = $1 if $line =~ /^vecphi\.audit_key_file = '(.+)'$/;
		}
		close $fh;
		if (defined $from && -f $from && !-e "$audit_dir/audit.key")
		{
			File::Copy::copy($from, "$audit_dir/audit.key")
			  or die "could not copy \"$from\": $!";
			chmod 0600, "$audit_dir/audit.key" or die $!;
		}
	}

	$node->append_conf('postgresql.conf',
		    "shared_preload_libraries = 'vecphi'\n"
		  . 'vecphi.key_directory = ' . _conf_quote($keys) . "\n"
		  . 'vecphi.audit_key_file = '
		  . _conf_quote($opts{default_audit_key} ? '' : "$audit_dir/audit.key") . "\n"
		  . 'vecphi.jwt_secret_file = ' . _conf_quote($secret_file) . "\n");
	return $node;
}

# Create and initialise a node configured for vecphi.  %opts go to
# PostgreSQL::Test::Cluster::init (allows_streaming, has_archiving, extra,
# ...), except secret => '...', which replaces the test secret, and
# default_audit_key => 1 (see configure_node).
sub new_node
{
	my ($name, %opts) = @_;
	my $secret = delete $opts{secret};
	my $default_audit_key = delete $opts{default_audit_key};

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%opts);
	configure_node($node, (defined $secret ? (secret => $secret) : ()),
		default_audit_key => $default_audit_key);
	return $node;
}

# An HS256 JWT for %claims, signed with the test secret unless
# secret => '...' is given.  exp defaults to now + 1 hour; exp => undef
# leaves it out.  header => {...} and signature => '...' build malformed
# tokens (see VecphiJWT::token).
sub token
{
	my (%claims) = @_;
	$claims{secret} = secret() unless exists $claims{secret};
	return VecphiJWT::token(%claims);
}

# "SELECT vecphi.set_claims('<token>');" for a BEGIN ... COMMIT script:
# claims last only until the end of the transaction.
sub claims_sql
{
	my (%claims) = @_;
	my $token = token(%claims);
	$token =~ s/'/''/g;
	return "SELECT vecphi.set_claims('$token');";
}

# Absolute paths of every file of a relation: all forks and segments of the
# table, its TOAST table and TOAST index, and all its indexes.  Only files
# that exist are returned (an empty relation may have none yet).
sub relation_files
{
	my ($node, $dbname, $relname) = @_;
	(my $lit = $relname) =~ s/'/''/g;

	my $out = $node->safe_psql(
		$dbname, qq{
		WITH rel AS (SELECT '$lit'::regclass AS oid),
		toast AS (
			SELECT c.reltoastrelid AS oid FROM pg_class c, rel
			WHERE c.oid = rel.oid AND c.reltoastrelid <> 0),
		members AS (
			SELECT oid FROM rel
			UNION SELECT oid FROM toast
			UNION SELECT i.indexrelid FROM pg_index i, rel WHERE i.indrelid = rel.oid
			UNION SELECT i.indexrelid FROM pg_index i, toast WHERE i.indrelid = toast.oid)
		SELECT pg_relation_filepath(oid) FROM members
		WHERE pg_relation_filepath(oid) IS NOT NULL
		ORDER BY 1});

	my $datadir = $node->data_dir;
	my @files;
	for my $rel (grep { length } split /\n/, $out)
	{
		my $base = "$datadir/$rel";
		# main fork, its segments (.1, .2, ...), other forks and theirs
		push @files,
		  grep { -f } ($base, bsd_glob("$base.*"), bsd_glob("${base}_*"));
	}
	return @files;
}

# How many of @files contain the byte string $pattern.
sub files_contain
{
	my ($pattern, @files) = @_;
	my $count = 0;
	for my $file (@files)
	{
		open my $fh, '<:raw', $file or die "could not open \"$file\": $!";
		my $content = do { local $/; <$fh> };
		close $fh;
		$count++ if index($content // '', $pattern) >= 0;
	}
	return $count;
}

1;
