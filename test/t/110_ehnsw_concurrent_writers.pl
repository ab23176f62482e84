# vecphi: the ehnsw lock protocol under load (docs/hnsw.md, "Locking").
#
# Four tenants, 300 rows each, an ehnsw index (default m = 16).  Then for 15
# seconds at the same time:
#
#  - pgbench, 4 clients, each script inserting 5 rows of one tenant under
#    its claims (so inserts of different tenants, and of the same tenant,
#    overlap: they share the update lock);
#  - pgbench, 1 client, deleting 15 random rows among those inserted during
#    the run and running VACUUM on the table, over and over (VACUUM no
#    longer holds the update lock for its run, so it meets inserts at
#    every phase, and inserts reuse the slots it frees, across tenants);
#  - pgbench, 1 client, searching as a random one of the tenants: every
#    search must return LIMIT rows, all of its own tenant.
#
# Afterwards: no transaction failed, index_check passes (it rejects any
# edge between two tenants' graphs and any link to a removed element),
# every row has exactly one live element (pageinspect), all but at most
# one row in a thousand are found by the index with their own vector (see
# below), and recall@10
# against an exact scan is at least 0.9 for each tenant; again after a
# last VACUUM.
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
my $seconds = 15;
my @tenants = qw(w_a w_b w_c w_d);
my %token = map {
	$_ => VecphiTest::token(tenant => $_, role => 'clinician', sub => "dr_$_")
} @tenants;
my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} @tenants;

my $node = VecphiTest::new_node('writers');
$node->append_conf('postgresql.conf', "autovacuum = off\n");
$node->start;
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	CREATE TABLE docs (id bigserial PRIMARY KEY, tenant text NOT NULL, emb evector($dims));
	CREATE FUNCTION rvec(g bigint) RETURNS real[] LANGUAGE sql VOLATILE AS
		\$\$ SELECT array_agg((random() * 10)::real) FROM generate_series(1, $dims) \$\$;
});
for my $tenant (@tenants)
{
	$node->safe_psql('postgres', "SELECT vecphi.create_tenant('$tenant')");
	$node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{$tenant}
		INSERT INTO docs (tenant, emb) SELECT '$tenant', rvec(g) FROM generate_series(1, 300) g;
		COMMIT;
	});
}
$node->safe_psql('postgres',
	'CREATE INDEX docs_emb ON docs USING ehnsw (emb)');
my $first_id = $node->safe_psql('postgres', 'SELECT max(id) FROM docs');

my $dir = $node->basedir;
my @insert_files;
for my $tenant (@tenants)
{
	my $f = "$dir/insert_$tenant.sql";
	open my $fh, '>', $f or die "could not write $f: $!";
	print $fh qq{BEGIN;
SELECT vecphi.set_claims('$token{$tenant}');
INSERT INTO docs (tenant, emb) SELECT '$tenant', rvec(g) FROM generate_series(1, 5) g;
COMMIT;
};
	close $fh;
	push @insert_files, $f;
}
{
	open my $fh, '>', "$dir/vacuum.sql" or die $!;
	print $fh qq{DELETE FROM docs WHERE id IN (SELECT id FROM docs WHERE id > $first_id ORDER BY random() LIMIT 15);
VACUUM docs;
};
	close $fh;
	open $fh, '>', "$dir/search.sql" or die $!;
	print $fh "\\set t random(1, 4)\nBEGIN;\nSET LOCAL enable_seqscan = off;\n";
	for my $i (1 .. 4)
	{
		my $tenant = $tenants[ $i - 1 ];
		print $fh "\\if :t = $i\nSELECT vecphi.set_claims('$token{$tenant}');\n"
		  . "SELECT CASE WHEN count(*) = 10 AND bool_and(tenant = '$tenant') THEN 0 ELSE "
		  . "('wrong result: ' || count(*) || ' rows: ' || coalesce(string_agg(id || ' ' || tenant, ', '), ''))::int END "
		  . "FROM (SELECT id, tenant FROM docs ORDER BY emb <-> (SELECT rvec(0)::evector) LIMIT 10) s;\n\\endif\n";
	}
	print $fh "COMMIT;\n";
	close $fh;
}

my @conn = ('-h', $node->host, '-p', $node->port, '-n', '-T', $seconds, 'postgres');
my %out = map { $_ => '' } qw(ins vac scan);
my %err = %out;
my $timeout = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
my %h;
$h{ins} = IPC::Run::start([ 'pgbench', '-c', 4, '-j', 2, (map { ('-f', $_) } @insert_files), @conn ],
	'>', \$out{ins}, '2>', \$err{ins}, $timeout);
$h{vac} = IPC::Run::start([ 'pgbench', '-c', 1, '-f', "$dir/vacuum.sql", @conn ],
	'>', \$out{vac}, '2>', \$err{vac}, $timeout);
$h{scan} = IPC::Run::start(
	[ 'pgbench', '-c', 1, '-f', "$dir/search.sql", @conn ],
	'>', \$out{scan}, '2>', \$err{scan}, $timeout);
$_->finish for values %h;
for my $k (qw(ins vac scan))
{
	note "pgbench ($k):\n$out{$k}$err{$k}";
	is($h{$k}->result(0), 0, "pgbench ($k) exits with 0");
	like($out{$k}, qr/number of failed transactions: 0 /, "pgbench ($k): no failed transaction");
	my ($tx) = $out{$k} =~ /number of transactions actually processed: (\d+)/;
	cmp_ok($tx // 0, '>', 0, "pgbench ($k) ran (" . ($tx // 0) . ' transactions)');
	unlike($err{$k}, qr/ERROR|aborted/i, "pgbench ($k): no errors reported");
}

for my $pass ('after the run', 'after a last VACUUM')
{
	$node->safe_psql('postgres', 'VACUUM docs') if $pass eq 'after a last VACUUM';
	is(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.index_check('docs_emb')"),
		'no error', "$pass: index_check passes");

	# No element lost: as many live element items as rows once VACUUM has
	# run (before the last VACUUM, the last DELETE's elements may remain).
  SKIP:
	{
		skip 'pageinspect is not available', 1
		  unless $node->safe_psql('postgres',
			"SELECT count(*) FROM pg_available_extensions WHERE name = 'pageinspect'") eq '1';
		$node->safe_psql('postgres', 'CREATE EXTENSION IF NOT EXISTS pageinspect');
		my ($items, $rows) = split / /, $node->safe_psql(
			'postgres', q{
			SELECT (SELECT count(*) FROM generate_series(1, (pg_relation_size('docs_emb') / 8192)::int - 1) b,
					LATERAL (SELECT get_raw_page('docs_emb', b) AS p) r,
					LATERAL heap_page_items(r.p) i
				WHERE i.lp_flags = 1 AND get_byte(r.p, i.lp_off + 1) = 0)
				|| ' ' || (SELECT count(*) FROM docs)});
		if ($pass eq 'after the run')
		{
			# The last DELETE of the run may not have been vacuumed yet.
			cmp_ok($items, '>=', $rows, "$pass: a live element for every row ($items, $rows rows)");
		}
		else
		{
			is($items, $rows, "$pass: one live element per row ($items)");
		}
	}
	for my $tenant (@tenants)
	{
		my ($rows, $found) = split / /, $node->safe_psql(
			'postgres', qq{
			BEGIN;
			$claims{$tenant}
			SET LOCAL enable_seqscan = off;
			SET LOCAL vecphi.ef_search = 100;
			SELECT count(*) || ' ' || count(*) FILTER (WHERE n.d = 0 AND n.tenant = '$tenant')
			FROM docs r CROSS JOIN LATERAL
				(SELECT d.emb <-> r.emb AS d, d.tenant FROM docs d ORDER BY d.emb <-> r.emb LIMIT 1) n
			WHERE r.tenant = '$tenant';
			COMMIT;
		});
		cmp_ok($rows, '>', 300, "$pass, $tenant: $rows rows");
		# HNSW can leave an element that no search reaches when deletes and
		# inserts churn its neighbourhood (pgvector shares this): with m = 8
		# about one row in 5000 was missed here, while its element was live
		# (checked above).  Allow one in a thousand.
		cmp_ok($rows - $found, '<=', $rows / 1000,
			"$pass, $tenant: $found of $rows rows found by the index with their own vector");

		# recall@10 of 20 queries against an exact scan of the tenant's rows
		my $recall = $node->safe_psql(
			'postgres', qq{
			BEGIN;
			$claims{$tenant}
			CREATE TEMP TABLE q ON COMMIT DROP AS
				SELECT i, rvec(i)::evector AS v FROM generate_series(1, 20) i;
			SET LOCAL enable_seqscan = off;
			CREATE TEMP TABLE approx ON COMMIT DROP AS
				SELECT q.i, a.id FROM q CROSS JOIN LATERAL
					(SELECT id FROM docs ORDER BY emb <-> q.v LIMIT 10) a;
			SET LOCAL enable_seqscan = on;
			SET LOCAL enable_indexscan = off;
			CREATE TEMP TABLE exact ON COMMIT DROP AS
				SELECT q.i, e.id FROM q CROSS JOIN LATERAL
					(SELECT id FROM docs WHERE tenant = '$tenant' ORDER BY emb <-> q.v LIMIT 10) e;
			SELECT round(count(*) / 200.0, 3) FROM approx JOIN exact USING (i, id);
			COMMIT;
		});
		cmp_ok($recall, '>=', 0.9, "$pass, $tenant: recall\@10 $recall >= 0.9");
	}
}

$node->stop;
done_testing();
