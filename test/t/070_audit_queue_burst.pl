# vecphi: no denial record is lost silently when the audit queue is full.
#
# The smallest queue (vecphi.audit_queue_size = 64kB) and a stalled audit
# writer: a superuser holds an ACCESS EXCLUSIVE lock on vecphi.audit_log,
# so the writer's INSERT waits and the queue fills.  Four sessions then
# refuse bad tokens as fast as they can, 300 each (each refusal caught by
# an exception handler, so every one is a denial vecphi records itself);
# after two seconds the lock goes.  Afterwards every one of the 1200
# denials is either a `denial` record or counted in an `audit_dropped`
# record (rows_returned = how many were lost), and verify_audit() reports
# the same count in records_lost.  Denying backends wait for queue space
# up to vecphi.audit_timeout first (back-pressure; 100ms for the burst's
# role here), so with the writer back most of them get in.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use VecphiCheck;
use VecphiTest;

my $sessions = 4;
my $per_session = 300;

my $node = VecphiTest::new_node('burst');
$node->append_conf('postgresql.conf', "vecphi.audit_queue_size = '64kB'\n");
$node->start;
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	CREATE ROLE burster LOGIN;
	-- A short wait for queue space, so that records are lost while the
	-- writer stalls.
	ALTER ROLE burster SET vecphi.audit_timeout = '100ms';
});
# One record first, so the writer and the chain exist.
$node->safe_psql(
	'postgres', q{
	DO $$BEGIN PERFORM vecphi.set_claims('warm.up.token');
	EXCEPTION WHEN invalid_authorization_specification THEN NULL; END$$;
	SELECT vecphi.audit_flush();});

# Stall the writer: its INSERT waits for this lock.
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE vecphi.audit_log IN ACCESS EXCLUSIVE MODE;');

my $burst = qq{
DO \$\$
BEGIN
	FOR i IN 1..$per_session LOOP
		BEGIN
			PERFORM vecphi.set_claims('bad.token.' || i);
		EXCEPTION WHEN invalid_authorization_specification THEN
			NULL;
		END;
	END LOOP;
END\$\$;
};
my @runs;
for my $s (1 .. $sessions)
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ $node->installed_command('psql'), '-XAtq', '-U', 'burster', '-d', $node->connstr('postgres'), '-c', $burst ],
		'>', \$out, '2>', \$err);
	push @runs, [ $h, \$out, \$err ];
}
sleep 2;
# The queue is full by now (64kB hold a few hundred denials).
my $queued = $node->safe_psql('postgres', 'SELECT vecphi.audit_flush()');
note "records queued while the writer is stalled: $queued";
$locker->query_safe('COMMIT;');
$locker->quit;

for my $run (@runs)
{
	my ($h, $out, $err) = @$run;
	$h->finish;
	is($h->result(0), 0, 'a burst session ends') or diag $$err;
}

# Everything queued and every count of lost records is written.
ok($node->poll_query_until('postgres', 'SELECT vecphi.audit_flush() = 0'), 'the queue drains');

my $denials = $node->safe_psql('postgres',
	"SELECT count(*) FROM vecphi.audit_log WHERE action = 'denial' AND db_user = 'burster'");
my $lost = $node->safe_psql('postgres',
	"SELECT coalesce(sum(rows_returned), 0) FROM vecphi.audit_log WHERE action = 'audit_dropped'");
note "denial records: $denials, counted as lost: $lost";
is($denials + $lost, $sessions * $per_session,
	'every denial of the burst is either recorded or counted as lost');
cmp_ok($denials, '>', 0, 'denials were recorded');
is( $node->safe_psql(
		'postgres', 'SELECT CASE WHEN ok THEN \'t\' ELSE \'f\' END || \' \' || records_lost FROM vecphi.verify_audit()'),
	"t $lost",
	'verify_audit() passes and reports the lost records');
if ($lost > 0)
{
	like(
		$node->safe_psql(
			'postgres',
			"SELECT outcome || ' ' || detail FROM vecphi.audit_log WHERE action = 'audit_dropped' ORDER BY seq LIMIT 1"),
		qr/^error \d+ audit records? (?:was|were) lost/,
		'an audit_dropped record says how many were lost');
}

# The writer is alive and the chain goes on (one session: audit_flush()
# waits for what this session queued).
is( $node->safe_psql(
		'postgres', q{
	DO $$BEGIN PERFORM vecphi.set_claims('after.burst.token');
	EXCEPTION WHEN invalid_authorization_specification THEN NULL; END$$;
	SELECT vecphi.audit_flush();
	SELECT count(*) FROM vecphi.audit_log WHERE action = 'denial' AND seq = (SELECT max(seq) FROM vecphi.audit_log);}
	),
	"0\n1",
	'a later denial is recorded');
is( $node->safe_psql(
		'postgres', 'SELECT count(*) = max(seq) - min(seq) + 1 FROM vecphi.audit_log'),
	't',
	'no seq gap');

$node->stop;
done_testing();
