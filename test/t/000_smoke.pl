# vecphi smoke test: a server with vecphi preloaded starts, CREATE EXTENSION
# works, and the installed version is the one vecphi.control declares.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiTest;

# The control file is the single source of the version.
my $control = VecphiTest::source_dir() . '/vecphi.control';
my ($version) = slurp_file($control) =~ /^default_version\s*=\s*'([^']+)'/m;
ok(defined $version, "default_version found in $control");

my $node = VecphiTest::new_node('main');
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION vecphi');
is( $node->safe_psql(
		'postgres', "SELECT extversion FROM pg_extension WHERE extname = 'vecphi'"),
	$version,
	'installed extension version matches vecphi.control');

$node->stop;
done_testing();
