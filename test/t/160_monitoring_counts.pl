# vecphi monitoring: the activity counters across sessions, the overflow
# row beyond vecphi.stat_max, a restart (the counters start again from
# zero), the audit turned off (activity is not counted, keys still are),
# and the key counters, a provider failure included (no key bytes in the
# view or the server log).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('moncounts');
# Room for three (database, tenant, app role) rows: the rest overflows.
$node->append_conf('postgresql.conf', "vecphi.stat_max = 3\n");
$node->start;
my $keys = VecphiTest::key_dir($node);

sub claims
{
	my ($tenant, $role) = @_;
	return VecphiCheck::claims_do(
		tenant => $tenant,
		role => $role,
		sub => "u_$role");
}

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t_a');
	SELECT vecphi.create_tenant('t_b');
	SELECT vecphi.create_tenant('t_c');
	CREATE ROLE app LOGIN;
	CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL DEFAULT vecphi.tenant(),
		emb evector(4));
	SELECT vecphi.protect('docs', 'tenant');
	GRANT SELECT, INSERT ON docs TO app;
});
my $id = 0;
for my $t ('t_a', 't_b', 't_c')
{
	my $c = claims($t, 'loader');
	my $from = $id + 1;
	$id += 50;
	$node->safe_psql(
		'postgres', qq{
		BEGIN;
		$c
		INSERT INTO docs (id, emb) SELECT g, ARRAY[g, 1, 2, 3]::real[]::evector
			FROM generate_series($from, $id) g;
		COMMIT;});
}
$node->safe_psql('postgres',
	'CREATE INDEX ON docs USING ehnsw (emb evector_l2_ops); ANALYZE docs;');

my $stats_row = q{SELECT count(*) FILTER (WHERE NOT overflow), count(*) FILTER (WHERE overflow),
	coalesce(sum(index_scans + exact_scans), 0), coalesce(sum(reads), 0),
	coalesce(sum(rows_returned), 0), coalesce(sum(decryptions), 0),
	coalesce(sum(denials), 0)
	FROM vecphi.stat_tenants};

# The audit log's view of the same, from seq > $1.
sub log_row
{
	my ($from) = @_;
	return $node->safe_psql(
		'postgres', qq{
		SELECT vecphi.audit_flush();
		SELECT count(*) FILTER (WHERE action IN ('index_scan', 'exact_scan')),
			count(*) FILTER (WHERE action = 'read'),
			coalesce(sum(rows_returned) FILTER (WHERE action IN ('index_scan', 'exact_scan', 'read')), 0),
			coalesce(sum(rows_returned) FILTER (WHERE action = 'decrypt'), 0),
			count(*) FILTER (WHERE action = 'denial')
		FROM vecphi.audit_log WHERE seq > $from;});
}

$node->safe_psql('postgres', 'SELECT vecphi.stat_reset();');
my $from = $node->safe_psql('postgres',
	'SELECT vecphi.audit_flush(); SELECT coalesce(max(seq), 0) FROM vecphi.audit_log;');
$from = (split /\n/, $from)[-1];

# Five app roles of t_a and one of t_b, each in sessions of its own: six
# combinations for three rows.
my $n = 0;
for my $role ('r1', 'r2', 'r3', 'r4', 'r5')
{
	for my $k (1 .. 2)
	{
		my $c = claims('t_a', $role);
		$node->safe_psql(
			'postgres', qq{
			BEGIN;
			$c
			SELECT id FROM docs ORDER BY emb <-> '[$k,1,2,3]' LIMIT 3;
			SELECT vecphi.decrypt(emb) FROM docs WHERE id = $k;
			COMMIT;},
			extra_params => [ '-U', 'app' ]);
		$n++;
	}
}
my $cb = claims('t_b', 'r1');
$node->safe_psql(
	'postgres', qq{
	BEGIN;
	$cb
	SELECT id FROM docs ORDER BY emb <-> '[60,1,2,3]' LIMIT 4;
	COMMIT;},
	extra_params => [ '-U', 'app' ]);

my $log = log_row($from);
my @log = split /\|/, (split /\n/, $log)[-1];
my @st = split /\|/, $node->safe_psql('postgres', $stats_row);
is($st[0], 3, 'vecphi.stat_max = 3: three rows of their own');
is($st[1], 1, 'the other combinations are counted in one overflow row');
is_deeply([ @st[ 2 .. 6 ] ], \@log,
	'searches, reads, rows, decryptions and denials: counters (overflow row included) = audit log');
ok($st[2] >= 11, "every search of the $n + 1 sessions counted ($st[2])");
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM vecphi.stat_tenants WHERE overflow
			AND (datid IS NOT NULL OR tenant IS NOT NULL OR app_role IS NOT NULL)}),
	'0',
	'the overflow row names no database, tenant or role');

# An app role's claims see only their tenant's rows, never the overflow
# row: t_a's first three roles have rows; t_b's activity went to the
# overflow row, so t_b's claims see nothing (docs/monitoring.md).
my $own = q{SELECT coalesce(string_agg(DISTINCT coalesce(tenant, '-') || '/' || overflow, ','), '')
	FROM vecphi.stat_tenants;};
my $ca = claims('t_a', 'r9');
is( $node->safe_psql(
		'postgres', "BEGIN; $ca $own COMMIT;",
		extra_params => [ '-U', 'app' ]),
	't_a/false',
	'claims of t_a: only t_a rows');
$ca = claims('t_b', 'r1');
is( $node->safe_psql(
		'postgres', "BEGIN; $ca $own COMMIT;",
		extra_params => [ '-U', 'app' ]),
	'',
	'claims of t_b: its counts are in the overflow row, which it does not see');
is($node->safe_psql('postgres', $own, extra_params => [ '-U', 'app' ]),
	'', 'no claims: nothing');

# Keys: the data keys came from the key directory, and were cached.
my ($hits, $misses, $reads, $failures) = split /\|/,
  $node->safe_psql('postgres',
	'SELECT dek_cache_hits, dek_cache_misses, key_directory_reads, key_directory_failures FROM vecphi.stat_keys');
ok($misses >= 1 && $reads >= 1, "data keys unwrapped from key files ($misses misses, $reads reads)");
# Each backend adds its last hits when it exits: wait for them.
ok( $node->poll_query_until(
		'postgres', 'SELECT dek_cache_hits > dek_cache_misses FROM vecphi.stat_keys'),
	'more cache hits than misses');
is($failures, 0, 'no provider failure yet');

# A provider failure: t_c's key file is gone for a moment.
my ($kek) = glob("$keys/*.t_c.1.kek");
ok(defined $kek && -f $kek, 't_c has a key file');
my $kek_hex = slurp_file($kek);
$kek_hex =~ s/\s+//g;
rename $kek, "$kek.away" or die $!;
my $cc = claims('t_c', 'r1');
my ($ret, $out, $err) = $node->psql(
	'postgres', qq{
	BEGIN;
	$cc
	SELECT vecphi.decrypt(emb) FROM docs WHERE id = 101;
	COMMIT;},
	extra_params => [ '-U', 'app' ]);
isnt($ret, 0, 'decrypting without the key file fails');
rename "$kek.away", $kek or die $!;
my $keyrow = $node->safe_psql('postgres', 'SELECT * FROM vecphi.stat_keys');
my ($f, $prov, $last) = split /\|/,
  $node->safe_psql('postgres',
	'SELECT key_directory_failures, last_failure_provider, last_failure IS NOT NULL FROM vecphi.stat_keys');
is($f, 1, 'the failure is counted');
is($prov, 'key_directory', 'by provider kind');
is($last, 't', 'with its time');
unlike($keyrow, qr/\Q$kek_hex\E/i, 'no key bytes in the view');
unlike(slurp_file($node->logfile), qr/\Q$kek_hex\E/i, 'no key bytes in the server log');

# The audit off: activity is not counted (the audit does not see it),
# the keys still are.
my $before = $node->safe_psql('postgres', $stats_row);
my $misses_before = $node->safe_psql('postgres', 'SELECT dek_cache_misses FROM vecphi.stat_keys');
$node->safe_psql('postgres', 'ALTER SYSTEM SET vecphi.audit = off; SELECT pg_reload_conf();');
$node->poll_query_until('postgres', q{SELECT current_setting('vecphi.audit') = 'off'})
  or die 'vecphi.audit did not turn off';
my $c1 = claims('t_a', 'r1');
$node->safe_psql(
	'postgres', qq{
	BEGIN;
	$c1
	SELECT id FROM docs ORDER BY emb <-> '[1,1,2,3]' LIMIT 3;
	SELECT vecphi.decrypt(emb) FROM docs WHERE id = 7;
	COMMIT;},
	extra_params => [ '-U', 'app' ]);
is($node->safe_psql('postgres', $stats_row), $before,
	'vecphi.audit = off: no activity counted');
ok($node->safe_psql('postgres', 'SELECT dek_cache_misses FROM vecphi.stat_keys') > $misses_before,
	'vecphi.audit = off: the keys are still counted');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET vecphi.audit; SELECT pg_reload_conf();');
$node->poll_query_until('postgres', q{SELECT current_setting('vecphi.audit') = 'on'})
  or die 'vecphi.audit did not turn on';

# A restart: the counters are in memory and start again from zero.
my $reset_before = $node->safe_psql('postgres', 'SELECT stats_reset FROM vecphi.stat_audit');
$node->restart;
is($node->safe_psql('postgres', 'SELECT count(*) FROM vecphi.stat_tenants'),
	'0', 'after a restart: no activity rows');
is( $node->safe_psql(
		'postgres',
		'SELECT dek_cache_hits + dek_cache_misses + key_directory_reads + key_directory_failures FROM vecphi.stat_keys'
	),
	'0',
	'after a restart: key counters at zero');
ok( $node->safe_psql(
		'postgres', "SELECT stats_reset > '$reset_before' FROM vecphi.stat_audit") eq 't',
	'stats_reset says when counting began');

# And they count again, matching the log.
$from = $node->safe_psql('postgres',
	'SELECT vecphi.audit_flush(); SELECT coalesce(max(seq), 0) FROM vecphi.audit_log;');
$from = (split /\n/, $from)[-1];
$node->safe_psql(
	'postgres', qq{
	BEGIN;
	$c1
	SELECT id FROM docs ORDER BY emb <-> '[3,1,2,3]' LIMIT 2;
	COMMIT;},
	extra_params => [ '-U', 'app' ]);
$log = log_row($from);
@log = split /\|/, (split /\n/, $log)[-1];
@st = split /\|/, $node->safe_psql('postgres', $stats_row);
is_deeply([ @st[ 2 .. 6 ] ], \@log, 'after the restart: counters = audit log');

$node->stop;
done_testing();
