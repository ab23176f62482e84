# vecphi on Citus: vecphi.track_erasure() on a distributed table (issue
# #16, "Erasure").
#
# track_erasure() on the coordinator, with citus.enable_unsafe_triggers off
# as it is by default: its trigger lands on every shard placement, the
# setting is off again afterwards (a trigger of the user's own is still
# refused), and the coordinator's erasure salt is on every worker, so a
# deleted subject's digest is the same everywhere: every worker's erasure
# record after vecphi.scrub() certifies the digest the coordinator's
# vecphi.erasure_digest() computes.  Two multi-shard deletes in open
# transactions do not wait on each other (they did, on each worker's first
# salt insert).  After a shard move the new placement notes deletions; a
# worker added later gets the salt from vecphi.sync_node(), and until then
# vecphi.check_cluster() reports it, and a tracked deletion there is
# refused rather than digested under a salt of its own.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiCitus;
use VecphiTest;

VecphiCitus::skip_unless_citus();

my $c = VecphiCitus::new_cluster('c183', workers => 2, conf => "autovacuum = off\n");
my $coord = $c->{coordinator};
my @workers = @{ $c->{workers} };

my $claims = VecphiCheck::claims_do(tenant => 't_track', role => 'clinician', sub => 'dr_t');
$coord->safe_psql(
	'postgres', qq{
	SELECT vecphi.create_tenant('t_track');
	SET citus.shard_count = 8;
	CREATE TABLE notes (id int PRIMARY KEY, patient text NOT NULL, body etext);
	SELECT create_distributed_table('notes', 'id');
	BEGIN; $claims
	INSERT INTO notes SELECT g, 'p' || (g % 8), repeat('clinical note ' || g, 20)::etext
	FROM generate_series(1, 200) g;
	COMMIT;
});

is( $coord->safe_psql(
		'postgres', q{SHOW citus.enable_unsafe_triggers; SELECT vecphi.track_erasure('notes', 'patient');
		  SHOW citus.enable_unsafe_triggers;}),
	"off\n\noff",
	'vecphi.track_erasure() on a distributed table with citus.enable_unsafe_triggers off; the setting is off after it');

is( $coord->safe_psql(
		'postgres', q{SELECT count(*) || ' placements, ' || count(*) FILTER (WHERE success AND result = 't') || ' with the trigger'
		  FROM run_command_on_placements('notes',
			$$SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = '%s'::regclass AND tgname LIKE 'vecphi_erasure%%'
			  AND tgfoid = 'vecphi.note_erasure'::regproc AND tgenabled = 'O')$$)}),
	'8 placements, 8 with the trigger',
	'the vecphi_erasure trigger is on every shard placement');

like(
	VecphiCheck::error_of(
		$coord, 'postgres', q{CREATE FUNCTION mine() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
		  BEGIN; SELECT vecphi.track_erasure('notes', 'patient');
		  CREATE TRIGGER mine AFTER INSERT ON notes FOR EACH STATEMENT EXECUTE FUNCTION mine();}),
	qr/triggers are not supported on distributed tables/,
	'in the same transaction, a trigger of the user\'s own is still refused (the setting is not left on)');

my @salts = VecphiCitus::on_all($c,
	q{SELECT count(*) || ':' || coalesce(min(encode(sha256(salt), 'hex')), '') FROM vecphi.erasure_salt});
like($salts[0], qr/^1:[0-9a-f]{64}$/, 'the coordinator has an erasure salt');
is_deeply(\@salts, [ ($salts[0]) x 3 ], 'every worker has the coordinator\'s salt (same digest)');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM vecphi.check_cluster()'),
	'0', 'vecphi.check_cluster(): no problem');

# One subject's rows, spread over the shards.
my $p3_rows = $coord->safe_psql('postgres', q{SELECT count(*) FROM notes WHERE patient = 'p3'});
$coord->safe_psql('postgres', q{DELETE FROM notes WHERE patient = 'p3'});
my @pending = map { $_->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure') } @workers;
is($pending[0] + $pending[1], $p3_rows,
	"every deleted row is noted on the worker that held it ($pending[0] + $pending[1] = $p3_rows)");
cmp_ok($pending[0] * $pending[1], '>', 0, 'on both workers');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure'),
	'0', 'and none on the coordinator');

$coord->safe_psql('postgres', q{SELECT * FROM vecphi.scrub('notes')});
is_deeply(
	[ map { $_->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure') } @workers ],
	[ 0, 0 ], 'vecphi.scrub() on the coordinator certifies every noted deletion');
my $want = $coord->safe_psql('postgres', q{SELECT vecphi.erasure_digest(ARRAY['p3'])});
like($want, qr/^sha256:[0-9a-f]{64}$/, 'the coordinator computes the subject\'s digest');
my $records = $coord->safe_psql(
	'postgres', q{SELECT count(DISTINCT nodeid) || ' workers, ' || count(*) || ' records, '
	  || string_agg(DISTINCT substring(detail, 'subjects (sha256:[0-9a-f]+)'), ',')
	  FROM vecphi.cluster_audit_log() WHERE action = 'erasure' AND relation = 'public.notes'
	  AND detail ~ 'subjects'});
like($records, qr/^2 workers, \d+ records, \Q$want\E$/,
	"every worker's erasure records certify the subject with the coordinator's digest ($records)");

# Two transactions deleting on both workers in opposite orders (rows of
# p1 and p2): neither waits for the other.  Before the salt was synced,
# each one's first tracked deletion on a worker created that worker's salt,
# and the other then waited for it there: a deadlock across the cluster.
sub ids_on
{
	my ($worker, $patient) = @_;
	return split /\n/, $coord->safe_psql(
		'postgres', qq{SELECT id FROM notes n JOIN pg_dist_shard_placement p
		  ON p.shardid = get_shard_id_for_distribution_column('notes', n.id)
		  WHERE n.patient = '$patient' AND p.nodeport = } . $worker->port . ' ORDER BY id');
}
my @a1 = ids_on($workers[0], 'p1');
my @a2 = ids_on($workers[1], 'p1');
my @b1 = ids_on($workers[0], 'p2');
my @b2 = ids_on($workers[1], 'p2');
my $sa = $coord->background_psql('postgres');
my $sb = $coord->background_psql('postgres');
my $ok = eval {
	$sa->query_safe("SET statement_timeout = '20s'; BEGIN; DELETE FROM notes WHERE id = $a1[0];");
	$sb->query_safe("SET statement_timeout = '20s'; BEGIN; DELETE FROM notes WHERE id = $b2[0];");
	$sa->query_safe("DELETE FROM notes WHERE id = $a2[0];");
	$sb->query_safe("DELETE FROM notes WHERE id = $b1[0];");
	$sa->query_safe('COMMIT;');
	$sb->query_safe('COMMIT;');
	1;
};
ok($ok, 'two transactions deleting on both workers in opposite orders do not wait on each other');
$sa->quit;
$sb->quit;
is( $coord->safe_psql(
		'postgres', q{SELECT sum(result::int) FROM run_command_on_workers('SELECT count(*) FROM vecphi.pending_erasure')}),
	4, 'their four deletions are noted');

# A shard move: the new placement carries the trigger and notes deletions.
my ($shard, $from_port) = split /\|/, $coord->safe_psql(
	'postgres', q{SELECT p.shardid, p.nodeport FROM pg_dist_shard_placement p
	  JOIN pg_dist_shard s USING (shardid) WHERE s.logicalrelid = 'notes'::regclass
	  ORDER BY p.shardid LIMIT 1});
my ($from) = grep { $_->port == $from_port } @workers;
my ($to) = grep { $_->port != $from_port } @workers;
$coord->safe_psql('postgres',
	    "SELECT citus_move_shard_placement($shard, '"
	  . $from->host . "', " . $from->port . ", '" . $to->host . "', " . $to->port
	  . ", shard_transfer_mode => 'block_writes')");
is($coord->safe_psql('postgres', 'SELECT count(*) FROM vecphi.check_cluster()'),
	'0', "after moving shard $shard: vecphi.check_cluster() finds no placement without the trigger");
my $before = $to->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure');
my $moved_ids = $coord->safe_psql(
	'postgres', qq{SELECT string_agg(id::text, ',') FROM notes
	  WHERE get_shard_id_for_distribution_column('notes', id) = $shard});
my $on_shard = scalar(split /,/, $moved_ids);
cmp_ok($on_shard, '>', 0, "the moved shard holds rows ($on_shard)");
$coord->safe_psql('postgres', "DELETE FROM notes WHERE id IN ($moved_ids)");
is($to->safe_psql('postgres', 'SELECT count(*) FROM vecphi.pending_erasure') - $before,
	$on_shard, 'deletions on the moved shard are noted on its new worker');

# A checker's view of a placement whose trigger was disabled by hand.
# (A placement the metadata has on that worker: the old placement of the
# moved shard may still be there, waiting for Citus's deferred drop.)
my $victim = $coord->safe_psql(
	'postgres', q{SELECT shard_name('notes', p.shardid, false) FROM pg_dist_shard_placement p
	  JOIN pg_dist_shard s USING (shardid) WHERE s.logicalrelid = 'notes'::regclass
	  AND p.nodeport = } . $from->port . ' ORDER BY p.shardid LIMIT 1');
$from->safe_psql('postgres', VecphiCitus::SHOW_SHARDS . "ALTER TABLE $victim DISABLE TRIGGER ALL");
like(
	$coord->safe_psql('postgres', q{SELECT placement || ': ' || item || ': ' || problem FROM vecphi.check_cluster()}),
	qr/^\Q$victim\E: erasure tracking: vecphi_erasure trigger .*"enabled": "D"/,
	'a placement whose erasure trigger was disabled is reported by vecphi.check_cluster()');
$from->safe_psql('postgres', VecphiCitus::SHOW_SHARDS . "ALTER TABLE $victim ENABLE TRIGGER ALL");

# A worker added later: no salt until vecphi.sync_node().
my $w3 = VecphiCitus::add_worker($c, 'c183_w3');
like(
	$coord->safe_psql('postgres',
		q{SELECT string_agg(item || ': ' || problem, E'\n') FROM vecphi.check_cluster() WHERE item = 'erasure salt'}),
	qr/^erasure salt: missing here: run vecphi.sync_node\(\)$/,
	'vecphi.check_cluster() reports the new worker without the salt');
$w3->safe_psql(
	'postgres', q{
	CREATE TABLE w3_local (id int, patient text);
	INSERT INTO w3_local VALUES (1, 'p9');
	SELECT vecphi.track_erasure('w3_local', 'patient');
});
like(
	VecphiCheck::error_of($w3, 'postgres', 'DELETE FROM w3_local'),
	qr/^55000: this Citus worker has no erasure salt/,
	'a tracked deletion on a worker without the salt is refused, not digested under a salt of its own');
is($w3->safe_psql('postgres', 'SELECT count(*) FROM vecphi.erasure_salt'),
	'0', 'and the worker made no salt of its own');
$coord->safe_psql('postgres',
	"SELECT vecphi.sync_node('" . $w3->host . "', " . $w3->port . ')');
is($w3->safe_psql('postgres', q{SELECT encode(sha256(salt), 'hex') FROM vecphi.erasure_salt}),
	(split /:/, $salts[0])[1], 'vecphi.sync_node() brings the coordinator\'s salt');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM vecphi.check_cluster()'),
	'0', 'vecphi.check_cluster(): no problem after vecphi.sync_node()');
$w3->safe_psql('postgres', 'DELETE FROM w3_local');
is( $w3->safe_psql('postgres', 'SELECT subject_digest = sha256(s.salt || convert_to(\'p9\', \'UTF8\')) FROM vecphi.pending_erasure, vecphi.erasure_salt s'),
	't', 'the deletion is then noted under the coordinator\'s salt');

VecphiCitus::stop_cluster($c);
done_testing();
