# vecphi: the audit log under concurrent searches.
#
# A table with 300 rows of each of two tenants and an ehnsw index.  pgbench
# runs 8 clients, a fixed number of transactions each, of two scripts
# (one per tenant): set the tenant's claims, then one ehnsw search
# (ORDER BY <-> LIMIT 10) that fails its transaction unless it returns 10
# rows.  It runs three times: the simple query protocol, the extended
# protocol with unnamed statements, and prepared statements.  Afterwards:
#
#  - no transaction failed, and the index_scan records of the table number
#    exactly the searches pgbench ran, per tenant (subject) as well;
#  - each record has 10 rows, 10 row ids, outcome ok, and a statement of
#    its own;
#  - seq has no gap from 1 to the newest row, and verify_audit() checks
#    every row and passes.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $dims = 16;
my $clients = 8;
my $per_client = 40;
my %token = map {
	$_ => VecphiTest::token(tenant => $_, role => 'clinician', sub => "dr_$_", exp => time() + 7200)
} qw(aud_a aud_b);
my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(aud_a aud_b);

my $node = VecphiTest::new_node('audit_concurrency');
$node->append_conf('postgresql.conf', "autovacuum = off\nmax_connections = 40\n");
$node->start;
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('aud_a');
	SELECT vecphi.create_tenant('aud_b');
	CREATE TABLE docs (id bigserial PRIMARY KEY, tenant text NOT NULL, emb evector($dims));
	CREATE FUNCTION rvec(g bigint) RETURNS real[] LANGUAGE sql VOLATILE AS
		\$\$ SELECT array_agg((random() * 10)::real) FROM generate_series(1, $dims) \$\$;
});
for my $tenant (qw(aud_a aud_b))
{
	$node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{$tenant}
		INSERT INTO docs (tenant, emb) SELECT '$tenant', rvec(g) FROM generate_series(1, 300) g;
		COMMIT;
	});
}
$node->safe_psql('postgres', 'CREATE INDEX docs_emb ON docs USING ehnsw (emb)');

# ---- the pgbench scripts ----
my $dir = $node->basedir;
for my $tenant (qw(aud_a aud_b))
{
	# A short result fails the transaction with an error that shows it.
	my $script = qq{BEGIN;
SELECT vecphi.set_claims('$token{$tenant}');
SET LOCAL enable_seqscan = off;
SELECT CASE WHEN count(*) = 10 AND bool_and(tenant = '$tenant') THEN 0 ELSE ('wrong result: ' || count(*))::int END FROM (SELECT id, tenant FROM docs ORDER BY emb <-> (SELECT rvec(0)::evector) LIMIT 10) s;
COMMIT;
};
	open my $fh, '>', "$dir/search_$tenant.sql" or die "could not write $dir/search_$tenant.sql: $!";
	print $fh $script;
	close $fh;
}

is( $node->safe_psql(
		'postgres', qq{
	BEGIN;
	$claims{aud_a}
	SET LOCAL enable_seqscan = off;
	EXPLAIN (COSTS OFF) SELECT id, tenant FROM docs ORDER BY emb <-> (SELECT rvec(0)::evector) LIMIT 10;
	COMMIT;}) =~ /Index Scan using docs_emb on docs/ ? 1 : 0,
	1,
	'the search uses the ehnsw index');

my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM vecphi.audit_log');

# ---- pgbench, once per protocol ----
my %searches = (aud_a => 0, aud_b => 0);
my $total = 0;
for my $mode (qw(simple extended prepared))
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::run(
		[
			'pgbench', '-n', '-c', $clients, '-j', 2, '-t', $per_client, '-M', $mode,
			(map { ('-f', "$dir/search_$_.sql\@1") } qw(aud_a aud_b)),
			'-l', "--log-prefix=$dir/tx_$mode",
			'-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	note "pgbench -M $mode:\n$out$err";
	ok($h, "pgbench -M $mode exits with 0");
	like($out, qr/number of failed transactions: 0 /, "-M $mode: no search failed");
	my ($tx) = $out =~ /number of transactions actually processed: (\d+)/;
	is($tx, $clients * $per_client, "-M $mode: $clients clients ran $per_client searches each");
	$total += $tx // 0;
	# Which tenant's script each transaction ran: pgbench's transaction log
	# (-l: "client transaction time script ..."; script 0 is aud_a's), one
	# line per transaction.  (Its summary's per-script counts can miss one
	# when a run ends.)
	for my $log (glob("$dir/tx_$mode.*"))
	{
		for my $line (split /\n/, slurp_file($log))
		{
			my @f = split / /, $line;
			$searches{ $f[3] == 0 ? 'aud_a' : 'aud_b' }++;
		}
		unlink $log;
	}
}
is($searches{aud_a} + $searches{aud_b}, $total, 'pgbench logged the searches of each tenant');
note "searches: aud_a $searches{aud_a}, aud_b $searches{aud_b}";

# ---- the records ----
# Everything the searches queued is committed: each was synchronous.
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM vecphi.audit_log WHERE action = 'index_scan' AND relation = 'public.docs'"),
	$total,
	'one index_scan record per search');
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(subject || ' ' || n, ', ' ORDER BY subject) FROM
		(SELECT subject, count(*) AS n FROM vecphi.audit_log
		 WHERE action = 'index_scan' AND relation = 'public.docs' GROUP BY subject) s}),
	"dr_aud_a $searches{aud_a}, dr_aud_b $searches{aud_b}",
	'as many per subject as that tenant\'s searches');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM vecphi.audit_log
	WHERE action = 'index_scan' AND relation = 'public.docs'
		AND (rows_returned <> 10 OR cardinality(row_ids) <> 10 OR outcome <> 'ok'
			 OR tenant <> substr(subject, 4) OR index_name IS NULL)}),
	'0',
	'every record has 10 rows, 10 row ids, outcome ok, its tenant and the index');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(DISTINCT (backend_pid, statement_id)) FROM vecphi.audit_log
	WHERE action = 'index_scan' AND relation = 'public.docs'}),
	$total,
	'each record is a statement of its own');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM vecphi.audit_log l
	WHERE action = 'index_scan' AND relation = 'public.docs'
		AND EXISTS (SELECT 1 FROM unnest(l.row_ids) x JOIN docs d ON d.id = x::bigint
					WHERE d.tenant <> l.tenant)}),
	'0',
	'no record names a row of another tenant');
is($node->safe_psql('postgres', "SELECT count(*) - $before - $total FROM vecphi.audit_log"),
	'0', 'and nothing else was recorded (no denial, no decrypt)');

is($node->safe_psql('postgres', 'SELECT min(seq) || \' \' || count(*) - max(seq) FROM vecphi.audit_log'),
	'1 0', 'seq runs from 1 without a gap');
is($node->safe_psql('postgres',
		"SELECT ok || ' ' || (rows_checked = (SELECT count(*) FROM vecphi.audit_log)) || ' ' || coalesce(problem, '-') FROM vecphi.verify_audit()"),
	'true true -', 'verify_audit() checks every row and passes');

$node->stop;
done_testing();
