# vecphi: a Citus cluster (coordinator + workers) for the TAP tests.
#
# Every node is a VecphiTest node (new_node + configure_node) with
# shared_preload_libraries = 'citus,vecphi' (citus first, as Citus requires),
# max_prepared_transactions for Citus's two-phase commit, wal_level = logical
# for shard moves, the SAME JWT secret file and the SAME vecphi.key_directory
# (on one machine a shared directory stands in for the KMS every host
# reaches), and an audit key of its own.
#
#   use VecphiCitus;
#   VecphiCitus::skip_unless_citus();
#   my $c = VecphiCitus::new_cluster('c', workers => 2);
#   $c->{coordinator}->safe_psql('postgres', "SELECT ...");
#   my @out = VecphiCitus::on_all($c, 'SELECT extversion FROM pg_extension');
#   my $w3 = VecphiCitus::add_worker($c, 'w3');
#
# Citus is not packaged in Debian 12: test/setup.sh builds it from
# ../shared/citus (beside the repository) into the PostgreSQL that
# PG_CONFIG names.

package VecphiCitus;

use strict;
use warnings;

use File::Path qw(rmtree);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use VecphiTest;

# Prefix for SQL run on a worker that must see shard relations: Citus hides
# them from pg_class and friends except for the application names listed
# in citus.show_shards_for_app_name_prefixes.
use constant SHOW_SHARDS => "SET citus.show_shards_for_app_name_prefixes = '*';";

# The pkglibdir and extension directory of the server the tests run.
sub _dirs
{
	my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
	my $libdir = `$pg_config --pkglibdir`;
	my $sharedir = `$pg_config --sharedir`;
	chomp($libdir, $sharedir) if defined $libdir && defined $sharedir;
	return ($libdir, $sharedir);
}

# Whether citus.so and citus.control are installed.
sub citus_installed
{
	my ($libdir, $sharedir) = _dirs();
	return 0 unless $libdir && $sharedir;
	return -f "$libdir/citus.so" && -f "$sharedir/extension/citus.control";
}

# plan skip_all when Citus is not installed.
sub skip_unless_citus
{
	return if citus_installed();
	my ($libdir) = _dirs();
	$libdir //= '(pg_config --pkglibdir failed)';
	plan skip_all => "Citus not installed in $libdir; "
	  . 'it is built from ../shared/citus by test/setup.sh';
}

# postgresql.conf lines every node of a cluster gets (after VecphiTest's).
sub _cluster_conf
{
	my ($c, %opts) = @_;
	my $conf = "shared_preload_libraries = 'citus,vecphi'\n"
	  . "max_prepared_transactions = 20\n"
	  . "max_connections = 60\n"
	  . "max_worker_processes = 20\n"
	  . "wal_level = logical\n"
	  . "max_replication_slots = 10\n"
	  . "max_wal_senders = 10\n"
	  # Unix sockets carry no SSL: connections between nodes must not
	  # require it.
	  . "citus.node_conninfo = 'sslmode=prefer'\n"
	  # One shard count for every test, small enough for 2 cores but more
	  # than one shard per worker.
	  . "citus.shard_count = 4\n"
	  . 'vecphi.key_directory = ' . _quote($c->{key_dir}) . "\n"
	  . 'vecphi.jwt_secret_file = ' . _quote($c->{secret_file}) . "\n";
	$conf .= $opts{conf} if defined $opts{conf};
	return $conf;
}

sub _quote
{
	my ($v) = @_;
	$v =~ s/'/''/g;
	return "'$v'";
}

# Make, configure and start one node of cluster $c.  Its own key directory
# (basedir/keys, what VecphiTest::key_dir returns) is replaced by a symlink
# to the cluster's shared one, so that VecphiTest::key_dir stays true.
sub _make_node
{
	my ($c, $name) = @_;
	my $node = VecphiTest::new_node($name, %{ $c->{init_opts} });
	my $own = VecphiTest::key_dir($node);
	if ($own ne $c->{key_dir})
	{
		rmdir $own or die "could not remove \"$own\": $!";
		symlink $c->{key_dir}, $own
		  or die "could not link \"$own\" to \"$c->{key_dir}\": $!";
	}
	# citus.local_hostname: how a node reaches itself (shard moves, the
	# rebalancer); 'localhost' by default, but test nodes listen on a Unix
	# socket directory only.
	$node->append_conf('postgresql.conf',
		_cluster_conf($c, %{ $c->{opts} })
		  . 'citus.local_hostname = ' . _quote($node->host) . "\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	return $node;
}

# Register $node with the coordinator as a worker.
sub _register
{
	my ($c, $node) = @_;
	my $host = $node->host;
	$host =~ s/'/''/g;
	$c->{coordinator}->safe_psql('postgres',
		"SELECT citus_add_node('$host', " . $node->port . ')');
	return;
}

# A started cluster: { coordinator => $node, workers => [...],
# nodes => [coordinator, workers...], key_dir => shared KEK store,
# secret_file => shared JWT secret file }.
# Options: workers => N (default 2); conf => extra postgresql.conf lines for
# every node; secret => JWT secret (default VecphiTest::secret());
# init => { options for PostgreSQL::Test::Cluster::init }.
# CREATE EXTENSION vecphi runs on the coordinator; Citus propagates it to
# the workers registered at that moment (and to workers added later, with
# citus_add_node), so no node is left without it.
sub new_cluster
{
	my ($name, %opts) = @_;
	my $nworkers = delete $opts{workers} // 2;
	my $init = delete $opts{init} // {};
	my $secret = delete $opts{secret} // VecphiTest::secret();

	my $c = {
		name => $name,
		opts => \%opts,
		init_opts => $init,
		workers => [],
		nodes => [],
		next_worker => 1,
	};

	# The shared KEK store and JWT secret live in a directory of the
	# cluster's own (removed with the test's tmp_check).
	my $shared = PostgreSQL::Test::Utils::tempdir("${name}_shared");
	chmod 0700, $shared or die "could not chmod \"$shared\": $!";
	$c->{key_dir} = "$shared/keys";
	mkdir $c->{key_dir}, 0700 or die "could not create \"$c->{key_dir}\": $!";
	$c->{secret_file} = "$shared/jwt_secret";
	my $old_umask = umask 077;
	open my $fh, '>', $c->{secret_file} or die "could not write secret: $!";
	print $fh $secret;
	close $fh or die $!;
	umask $old_umask;

	my $coord = _make_node($c, "${name}_coord");
	$c->{coordinator} = $coord;
	push @{ $c->{nodes} }, $coord;
	my $host = $coord->host;
	$host =~ s/'/''/g;
	$coord->safe_psql('postgres',
		"SELECT citus_set_coordinator_host('$host', " . $coord->port . ')');

	for (1 .. $nworkers)
	{
		add_worker($c, "${name}_w" . $c->{next_worker});
	}

	$coord->safe_psql('postgres', 'CREATE EXTENSION vecphi');
	return $c;
}

# One more worker like the others, registered with citus_add_node (Citus
# creates the extensions the cluster has on it; vecphi is created on it
# first, see below).  Does not call vecphi.sync_node.  Returns the node.
sub add_worker
{
	my ($c, $name) = @_;
	$c->{next_worker}++;
	my $node = _make_node($c, $name);
	# vecphi first, in a transaction of its own.  Otherwise citus_add_node
	# creates it in the transaction that also creates the shells of the
	# distributed tables: for a protected one vecphi's audit records the
	# DDL and waits for its writer, which cannot write into an audit log
	# that transaction has not committed yet; the record times out
	# (vecphi.audit_timeout) and citus_add_node fails.
	$node->safe_psql('postgres', 'CREATE EXTENSION vecphi')
	  if $c->{coordinator}
	  && $c->{coordinator}->safe_psql('postgres',
		"SELECT count(*) FROM pg_extension WHERE extname = 'vecphi'") eq '1';
	_register($c, $node);
	push @{ $c->{workers} }, $node;
	push @{ $c->{nodes} }, $node;
	return $node;
}

# safe_psql($sql) on every node (coordinator first); the list of outputs.
sub on_all
{
	my ($c, $sql, $dbname) = @_;
	$dbname //= 'postgres';
	return map { $_->safe_psql($dbname, $sql) } @{ $c->{nodes} };
}

# Stop every node.
sub stop_cluster
{
	my ($c) = @_;
	$_->stop for reverse @{ $c->{nodes} };
	return;
}

1;
