# vecphi: audit channels (one shared-memory ring per database) are released.
#
# A server has 8 audit channels.  Before issue #12 a channel stayed taken by
# its database for the life of the server, so after eight databases had
# used the audit a ninth failed until restart, even after the others were
# dropped.  Now a channel is released when its writer leaves idle (all its
# records committed), which it does within seconds, and so before DROP
# DATABASE can go ahead.
#
# 1. Twelve databases in a row: each creates the extension, produces audited
#    records (a key event and a denial), checks its chain, and is dropped.
# 2. More databases at once than channels: eight databases whose writers are
#    stalled (a session holds a lock on their vecphi.audit_log) hold all
#    channels; a ninth database's key event waits vecphi.audit_timeout and
#    fails with a clear error (53400), and a denial there is counted as
#    lost (audit_dropped, never silent).  Once one of the eight is done, the
#    ninth gets the channel and its record is written.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiTest;

my $node = VecphiTest::new_node('channels');
$node->append_conf('postgresql.conf',
	"max_worker_processes = 24\nvecphi.audit_queue_size = '64kB'\n");
$node->start;

my $denial = q{
	DO $$BEGIN PERFORM vecphi.set_claims('bad.token');
	EXCEPTION WHEN invalid_authorization_specification THEN NULL; END$$;
};

# 1. Twelve databases in a row.
my $ok = 0;
for my $i (1 .. 12)
{
	my $db = "seq_db$i";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my ($ret, $out, $err) = $node->psql(
		$db, qq{
		SET client_min_messages = warning;
		CREATE EXTENSION vecphi;
		SELECT vecphi.create_tenant('t$i');
		$denial
		SELECT vecphi.audit_flush();
		SELECT count(*) FILTER (WHERE action = 'key_create') || ',' ||
		       count(*) FILTER (WHERE action = 'denial') FROM vecphi.audit_log;
		SELECT ok FROM vecphi.verify_audit();
	}, on_error_stop => 1);
	my @lines = split /\n/, $out;
	if ($ret == 0 && @lines >= 2 && $lines[-2] eq '1,1' && $lines[-1] eq 't')
	{
		$ok++;
	}
	else
	{
		diag("database $i: ret $ret, out: $out, err: $err");
		last;
	}
	# DROP DATABASE waits for the idle writer to leave (a few seconds).
	$node->safe_psql('postgres', "DROP DATABASE $db");
}
is($ok, 12, 'twelve databases in a row each wrote and verified their audit records');

# 2. More databases at once than channels.
my @holders;
for my $i (1 .. 8)
{
	my $db = "busy_db$i";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "SET client_min_messages = warning; CREATE EXTENSION vecphi;");
	my $h = $node->background_psql($db);
	$h->query_safe('BEGIN; LOCK TABLE vecphi.audit_log IN ACCESS EXCLUSIVE MODE;');
	# A denial queues a record that the stalled writer cannot commit.
	$node->safe_psql($db, $denial);
	push @holders, $h;
}
$node->safe_psql('postgres', 'CREATE DATABASE late_db');
$node->safe_psql('late_db', "SET client_min_messages = warning; CREATE EXTENSION vecphi;");

my ($ret, $out, $err) = $node->psql(
	'late_db', q{
	SET vecphi.audit_timeout = '1s';
	SELECT vecphi.create_tenant('late');
});
isnt($ret, 0, 'a ninth database at once: its key event fails');
like($err, qr/too many databases are writing vecphi audit records/,
	'... with a clear error');
($ret, $out, $err) = $node->psql(
	'late_db', qq{
	SET vecphi.audit_timeout = '1s';
	SET vecphi.audit_synchronous = off;
	\\set VERBOSITY verbose
	SELECT vecphi.create_tenant('late');
});
like($err, qr/53400/, '... SQLSTATE 53400 (configuration limit exceeded)');
# A denial that found no channel is counted (it is raised all the same).
$node->safe_psql('late_db', "SET vecphi.audit_timeout = '1s'; $denial");

# One of the eight finishes: its writer commits, leaves idle, the channel
# is free.
$holders[0]->query_safe('COMMIT');
$holders[0]->quit;
$node->safe_psql('busy_db1', 'SELECT vecphi.audit_flush()');

($ret, $out, $err) = $node->psql(
	'late_db', q{
	SET vecphi.audit_timeout = '20s';
	SELECT vecphi.create_tenant('late');
	SELECT vecphi.audit_flush();
	SELECT count(*) FROM vecphi.audit_log WHERE action = 'key_create';
});
is($ret, 0, 'the ninth database gets a channel once one is released');
like($out, qr/\n1$/, '... and its key event is written');

for my $i (1 .. 7)
{
	$holders[$i]->query_safe('COMMIT');
	$holders[$i]->quit;
}
# The lost denial of late_db is counted in some database's chain.
my $lost = 0;
for my $db ('late_db', map { "busy_db$_" } 1 .. 8)
{
	$node->safe_psql($db, 'SELECT vecphi.audit_flush()');
}
for my $db ('late_db', map { "busy_db$_" } 1 .. 8)
{
	$lost += $node->safe_psql($db,
		'SELECT records_lost FROM vecphi.verify_audit()');
}
cmp_ok($lost, '>=', 1,
	'the denial that found no channel is counted as lost (audit_dropped), not silently');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_database WHERE datname LIKE 'busy_db%'}),
	'8', 'all databases still there');

# All channels free again after use: twelve more databases can write.
for my $i (1 .. 8)
{
	$node->safe_psql('postgres', "DROP DATABASE busy_db$i");
}
$node->safe_psql('postgres', 'DROP DATABASE late_db');
$node->safe_psql('postgres', 'CREATE DATABASE after_db');
like( $node->safe_psql(
		'after_db', qq{
	SET client_min_messages = warning;
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('after');
	SELECT vecphi.audit_flush();
	SELECT count(*) FROM vecphi.audit_log WHERE action = 'key_create';
}), qr/\n1$/, 'after the busy databases were dropped a new one writes');

$node->stop;
done_testing();
