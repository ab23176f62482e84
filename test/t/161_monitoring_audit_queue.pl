# vecphi monitoring: vecphi.stat_audit while the audit writer is stalled
# and records pile up, then when it drains.
#
# A superuser holds an ACCESS EXCLUSIVE lock on vecphi.audit_log, so the
# writer's INSERT waits (as in 070_audit_queue_burst).  Sessions refuse
# bad tokens (each a denial record, queued without waiting for the
# writer).  While the lock is held the view shows the records and bytes
# waiting, the oldest one's time and the writer's lag; a second, larger
# burst overflows the small queue and records are counted as lost.  After
# the lock goes the queue empties, records_written grows by what was
# queued, and records_lost equals the audit_dropped counts in the log.
# No timing is asserted: every check polls for a state.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiTest;

my $node = VecphiTest::new_node('monqueue');
$node->append_conf('postgresql.conf', "vecphi.audit_queue_size = '64kB'\n");
$node->start;
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	CREATE ROLE burster LOGIN;
	ALTER ROLE burster SET vecphi.audit_timeout = '100ms';
	CREATE ROLE watcher LOGIN IN ROLE pg_monitor;
});

sub denials_sql
{
	my ($n, $tag) = @_;
	return qq{
DO \$\$
BEGIN
	FOR i IN 1..$n LOOP
		BEGIN
			PERFORM vecphi.set_claims('bad.$tag.' || i);
		EXCEPTION WHEN invalid_authorization_specification THEN
			NULL;
		END;
	END LOOP;
END\$\$;};
}

# A first record, so that the writer and the chain exist; then zero.
$node->safe_psql('postgres', denials_sql(1, 'warm') . ' SELECT vecphi.audit_flush();');
$node->safe_psql('postgres', 'SELECT vecphi.stat_reset(); SELECT vecphi.audit_flush();');
my $from = $node->safe_psql('postgres', 'SELECT max(seq) FROM vecphi.audit_log');
my $written0 = $node->safe_psql('postgres', 'SELECT records_written FROM vecphi.stat_audit');

is( $node->safe_psql(
		'postgres',
		'SELECT queued_records, queued_bytes, oldest_queued IS NULL, writer_lag IS NULL FROM vecphi.stat_audit',
		extra_params => [ '-U', 'watcher' ]),
	'0|0|t|t',
	'idle: nothing queued, no lag (read by a pg_monitor member)');

# Stall the writer.
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE vecphi.audit_log IN ACCESS EXCLUSIVE MODE;');

# 60 denials fit into the queue: they wait there.
$node->safe_psql('postgres', denials_sql(60, 'small'), extra_params => [ '-U', 'burster' ]);
ok( $node->poll_query_until(
		'postgres',
		'SELECT queued_records >= 60 FROM vecphi.stat_audit',
		't'),
	'stalled writer: the waiting records are counted');
my ($recs, $bytes, $has_oldest, $lag_positive, $writers) = split /\|/,
  $node->safe_psql(
	'postgres', q{SELECT queued_records, queued_bytes, oldest_queued IS NOT NULL,
		writer_lag > interval '0', writers_running FROM vecphi.stat_audit});
cmp_ok($bytes, '>', $recs * 50, "queued bytes ($bytes for $recs records)");
is($has_oldest, 't', 'the oldest waiting record has a time');
is($lag_positive, 't', 'and the writer lags behind it');
cmp_ok($writers, '>=', 1, 'the writer is running (blocked)');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT writer_lag > interval '0' AND oldest_queued < now() FROM vecphi.stat_audit}),
	'the lag stays while the writer is stalled');

# A burst larger than the queue: some denials are counted as lost.
my @runs;
for my $s (1 .. 3)
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq', '-U', 'burster', '-d',
			$node->connstr('postgres'), '-c', denials_sql(300, "big$s")
		],
		'>', \$out, '2>', \$err);
	push @runs, [ $h, \$err ];
}
for my $run (@runs)
{
	my ($h, $err) = @$run;
	$h->finish;
	is($h->result(0), 0, 'a burst session ends') or diag $$err;
}
my ($lost_now, $lost_pending) = split /\|/,
  $node->safe_psql('postgres', 'SELECT records_lost, lost_pending FROM vecphi.stat_audit');
cmp_ok($lost_now, '>', 0, "a full queue: records counted as lost ($lost_now)");
is($lost_pending, $lost_now, 'and waiting to be written as audit_dropped');

$locker->query_safe('COMMIT;');
$locker->quit;

ok($node->poll_query_until('postgres', 'SELECT vecphi.audit_flush() = 0'), 'the queue drains');
ok( $node->poll_query_until(
		'postgres',
		'SELECT queued_records = 0 AND lost_pending = 0 AND oldest_queued IS NULL FROM vecphi.stat_audit'),
	'the view shows it empty');
my ($written, $lost, $quarantined, $last_write) = split /\|/,
  $node->safe_psql(
	'postgres', q{SELECT records_written, records_lost, records_quarantined,
		last_write > now() - interval '1 hour' FROM vecphi.stat_audit});
my ($log_records, $log_dropped) = split /\|/,
  $node->safe_psql(
	'postgres', qq{SELECT count(*) FILTER (WHERE action <> 'audit_dropped'),
		coalesce(sum(rows_returned) FILTER (WHERE action = 'audit_dropped'), 0)
		FROM vecphi.audit_log WHERE seq > $from});
is($written - $written0, $log_records,
	"records_written grew by the records the log gained ($log_records)");
is($lost, $log_dropped, 'records_lost = the audit_dropped counts in the log');
is($quarantined, 0, 'nothing quarantined');
is($last_write, 't', 'last_write is set');

$node->stop;
done_testing();
