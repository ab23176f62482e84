# vecphi on Citus: protect() on a distributed table gives policies whose
# meaning survives Citus's copies on the shards.  Citus recreates a
# distributed table's policies on each shard without AS RESTRICTIVE (and
# again on the target of citus_move_shard_placement); with 0.1.0's shape
# (a permissive "true" base policy and restrictive rules) a claimant-less
# app role read every row of the shards.  Checks: every shard on every
# worker has vecphi's five policies; no claims -> 0 rows (router,
# multi-shard, and a shard read directly on its worker); each tenant sees
# and writes only its rows of the categories its role is granted (all of
# them under break-glass); the same after citus_move_shard_placement, on
# the moved shard at its new worker, and after adding a worker and
# rebalancing.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiTest;
use VecphiCitus;

VecphiCitus::skip_unless_citus();

my $c = VecphiCitus::new_cluster('c182', workers => 2);
my $coord = $c->{coordinator};
my @workers = @{ $c->{workers} };

# Role categories on every node (what keeping them in sync across nodes
# does; added only where missing).
VecphiCitus::on_all($c, q{
	INSERT INTO vecphi.role_categories
	SELECT 'clinician', 'clinical'
	WHERE NOT EXISTS (SELECT 1 FROM vecphi.role_categories
	                  WHERE app_role = 'clinician' AND category = 'clinical')});

$coord->safe_psql(
	'postgres', q{
	CREATE ROLE app LOGIN;
	CREATE TABLE notes (tenant text NOT NULL, id int NOT NULL, category text NOT NULL,
		body text, emb evector(3), PRIMARY KEY (tenant, id));
	SELECT create_distributed_table('notes', 'tenant');
	SELECT vecphi.protect('notes', 'tenant', 'category');
	GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO app;
	-- per tenant: 3 clinical rows, 2 psych rows
	INSERT INTO notes SELECT 't' || t, i, CASE WHEN i <= 3 THEN 'clinical' ELSE 'psych' END,
		'note ' || i
	FROM generate_series(1, 6) t, generate_series(1, 5) i;
});
pass('protect() on a distributed table');

my $nshards = $coord->safe_psql('postgres',
	"SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'notes'::regclass");

# vecphi's policies on every shard, whatever Citus made of AS RESTRICTIVE.
sub shard_policies
{
	my ($w) = @_;
	return $w->safe_psql(
		'postgres', VecphiCitus::SHOW_SHARDS . q{
		SELECT count(DISTINCT c.relname) || ' shards, '
		       || count(*) FILTER (WHERE p.polname LIKE 'vecphi_%') || ' policies, '
		       || count(*) FILTER (WHERE p.polpermissive) || ' permissive'
		FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid
		WHERE c.relname ~ '^notes_[0-9]+$' AND c.relrowsecurity AND c.relforcerowsecurity});
}
my $total = 0;
for my $w (@workers)
{
	my $pol = shard_policies($w);
	my ($n, $p) = $pol =~ /^(\d+) shards, (\d+) policies/;
	$total += $n;
	is($p, 5 * $n, $w->name . ": every shard has row security forced and vecphi's 5 policies ($pol)");
}
is($total, $nshards, 'the shards of both workers together are all the shards');
# The write check over plain columns reached the shards (a whole-row
# reference would not have).
for my $w (@workers)
{
	my ($n) = shard_policies($w) =~ /^(\d+)/;
	is( $w->safe_psql(
			'postgres', VecphiCitus::SHOW_SHARDS . q{
			SELECT count(*) FROM pg_policies
			WHERE tablename ~ '^notes_[0-9]+$' AND policyname IN ('vecphi_insert', 'vecphi_update')
			  AND with_check LIKE '%values_owned_by_claimant(emb)%'}),
		2 * $n,
		$w->name . ': insert and update policies of every shard check the ciphertext column');
}

my %app = (extra_params => [ '-U', 'app' ]);
sub app_sql
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql, %app);
}
sub tok
{
	my ($tenant, %more) = @_;
	return VecphiTest::token(tenant => $tenant, role => 'clinician', sub => "u_$tenant", %more);
}

my $per_tenant = q{SELECT coalesce(string_agg(tenant || ':' || n, ',' ORDER BY tenant), 'none')
	FROM (SELECT tenant, count(*) AS n FROM notes GROUP BY tenant) x;};

# A shard of tenant t1 and the worker holding it, read directly.
sub shard_of
{
	my ($tenant) = @_;
	my ($shard, $port) = split /\|/, $coord->safe_psql(
		'postgres', qq{
		SELECT s.shardid, p.nodeport FROM pg_dist_shard s
		JOIN pg_dist_shard_placement p USING (shardid)
		WHERE s.shardid = get_shard_id_for_distribution_column('notes', '$tenant')});
	my ($w) = grep { $_->port == $port } @workers;
	return ($shard, $w);
}

sub check_isolation
{
	my ($when) = @_;

	is(app_sql($coord, $per_tenant), 'none', "$when: no claims, multi-shard: 0 rows");
	is(app_sql($coord, "SELECT count(*) FROM notes WHERE tenant = 't1'"),
		'0', "$when: no claims, router: 0 rows");

	for my $t (1 .. 6)
	{
		my $token = tok("t$t");
		is( app_sql(
				$coord, "BEGIN; SELECT vecphi.set_claims('$token'); $per_tenant
				SELECT count(*) FROM notes WHERE tenant = 't$t';
				SELECT count(*) FROM notes WHERE category = 'psych'; COMMIT;"),
			"\nt$t:3\n3\n0",
			"$when: tenant t$t sees its 3 clinical rows only (router and multi-shard)");
	}
	my $bg = tok('t2', break_glass => 'emergency');
	is( app_sql($coord, "BEGIN; SELECT vecphi.set_claims('$bg'); $per_tenant COMMIT;"),
		"\nt2:5", "$when: break-glass: every category of its own tenant, no other tenant");

	# Writes: only the claimant's own tenant (and categories).
	my $t3 = tok('t3');
	my ($ret, $out, $err) = $coord->psql('postgres',
		"BEGIN; SELECT vecphi.set_claims('$t3'); INSERT INTO notes VALUES ('t4', 100, 'clinical', 'x'); COMMIT;",
		%app);
	like($err, qr/row-level security/, "$when: insert into another tenant refused");
	($ret, $out, $err) = $coord->psql('postgres',
		"BEGIN; SELECT vecphi.set_claims('$t3'); INSERT INTO notes VALUES ('t3', 100, 'psych', 'x'); COMMIT;",
		%app);
	like($err, qr/row-level security/, "$when: insert of a category not granted refused");
	is( app_sql(
			$coord, "BEGIN; SELECT vecphi.set_claims('$t3');
			UPDATE notes SET body = 'changed' WHERE tenant = 't4';
			UPDATE notes SET body = 'changed' WHERE true;
			DELETE FROM notes WHERE tenant <> 't3';
			INSERT INTO notes VALUES ('t3', 100, 'clinical', 'mine');
			DELETE FROM notes WHERE tenant = 't3' AND id = 100;
			ROLLBACK;"),
		'', "$when: updates and deletes under t3 run");
	is( $coord->safe_psql('postgres',
			"SELECT count(*) FROM notes WHERE body = 'changed'"),
		'0', "$when: (the transaction rolled back)");
	is( app_sql(
			$coord, "BEGIN; SELECT vecphi.set_claims('$t3');
			WITH u AS (UPDATE notes SET body = 'changed' WHERE true RETURNING tenant, category)
			SELECT string_agg(DISTINCT tenant || '/' || category, ',') FROM u;
			WITH d AS (DELETE FROM notes WHERE tenant <> 't3' RETURNING 1) SELECT count(*) FROM d;
			ROLLBACK;"),
		"\nt3/clinical\n0", "$when: UPDATE reaches only t3's clinical rows, DELETE of others none");

	# Committed writes (Citus's two-phase commit on the workers).
	is( app_sql(
			$coord, "BEGIN; SELECT vecphi.set_claims('$t3');
			INSERT INTO notes VALUES ('t3', 100, 'clinical', 'mine'); COMMIT;
			BEGIN; SELECT vecphi.set_claims('$t3'); SELECT count(*) FROM notes; COMMIT;
			BEGIN; SELECT vecphi.set_claims('$t3');
			DELETE FROM notes WHERE id = 100; COMMIT;
			SELECT count(*) FROM notes;"),
		"\n\n4\n\n0", "$when: a committed insert and delete by t3, seen by t3 only");

	# A shard read directly on its worker: the shard's own policies.
	my ($shard, $w) = shard_of('t1');
	is( app_sql($w, VecphiCitus::SHOW_SHARDS . "SELECT count(*) FROM notes_$shard"),
		'0', "$when: shard $shard read directly on " . $w->name . ' without claims: 0 rows');
	my $t1 = tok('t1');
	is( app_sql(
			$w, VecphiCitus::SHOW_SHARDS
			  . "BEGIN; SET LOCAL vecphi.claims_token = '$t1';
			SELECT string_agg(DISTINCT tenant || '/' || category, ',') FROM notes_$shard; COMMIT;"),
		't1/clinical',
		"$when: shard $shard read directly with t1's token: t1's clinical rows only");
}

# The attack, on 0.1.0's shape (what protect() gives a local table): a
# permissive "true" base policy and a restrictive tenant rule.  Citus's
# shard copies are all permissive, so the rule is OR-ed with "true".
$coord->safe_psql(
	'postgres', q{
	CREATE TABLE legacy (tenant text NOT NULL, id int NOT NULL);
	SELECT create_distributed_table('legacy', 'tenant');
	ALTER TABLE legacy ENABLE ROW LEVEL SECURITY;
	ALTER TABLE legacy FORCE ROW LEVEL SECURITY;
	CREATE POLICY legacy_base ON legacy AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true);
	CREATE POLICY legacy_rule ON legacy AS RESTRICTIVE FOR ALL
		USING (tenant = vecphi.tenant()) WITH CHECK (tenant = vecphi.tenant());
	GRANT SELECT ON legacy TO app;
	INSERT INTO legacy SELECT 't' || t, t FROM generate_series(1, 6) t;
});
my $leak = app_sql($coord, 'SELECT count(*) FROM legacy');
note("0.1.0's policy shape on a distributed table: an app role without claims reads $leak of 6 rows"
	  . ' (Citus recreates shard policies without AS RESTRICTIVE)');
is(app_sql($coord, $per_tenant), 'none', 'the same query on the table protect() made: 0 rows');

# protect() before create_distributed_table(): 0.1.0's shape (subqueries,
# whole-row references), which Citus cannot copy to the shards.
$coord->safe_psql('postgres', q{
	CREATE TABLE early (tenant text NOT NULL, id int NOT NULL, PRIMARY KEY (tenant, id));
	SELECT vecphi.protect('early', 'tenant');});
my ($eret, $eout, $eerr) = $coord->psql('postgres', "SELECT create_distributed_table('early', 'tenant')");
note("create_distributed_table() of a table protected before: exit $eret: $eerr");
isnt($eret, 0, 'distributing a table protected before fails (protect() after distributing)');

check_isolation('before a move');

# Move t1's shard to the other worker: Citus recreates its policies there.
my ($shard, $from) = shard_of('t1');
my ($to) = grep { $_ != $from } @workers;
$coord->safe_psql('postgres',
	    "SELECT citus_move_shard_placement($shard, '"
	  . $from->host . "', " . $from->port . ", '" . $to->host . "', " . $to->port
	  . ", shard_transfer_mode => 'block_writes')");
my ($shard2, $now) = shard_of('t1');
is($now->name, $to->name, "shard $shard moved from " . $from->name . ' to ' . $to->name);
like(shard_policies($to), qr/^\d+ shards, \d+ policies/, 'target worker: shards with policies');
is( $to->safe_psql(
		'postgres', VecphiCitus::SHOW_SHARDS . qq{
		SELECT count(*) FROM pg_policy WHERE polrelid = 'notes_$shard'::regclass
		  AND polname LIKE 'vecphi_%'}),
	'5', "the moved shard has vecphi's 5 policies on " . $to->name);

check_isolation('after citus_move_shard_placement');

# A third worker, then the rebalancer moves shards onto it.
my $w3 = VecphiCitus::add_worker($c, 'c182_w3');
push @workers, $w3;
$w3->safe_psql('postgres', q{
	INSERT INTO vecphi.role_categories
	SELECT 'clinician', 'clinical'
	WHERE NOT EXISTS (SELECT 1 FROM vecphi.role_categories
	                  WHERE app_role = 'clinician' AND category = 'clinical')});
$coord->safe_psql('postgres',
	"SELECT rebalance_table_shards('notes', shard_transfer_mode => 'block_writes')");
my ($n3, $p3) = shard_policies($w3) =~ /^(\d+) shards, (\d+) policies/;
cmp_ok($n3 // 0, '>', 0, 'the rebalancer moved shards to the new worker');
is($p3, 5 * ($n3 // 0), "the new worker's shards have vecphi's 5 policies each");

check_isolation('after adding a worker and rebalancing');

VecphiCitus::stop_cluster($c);
done_testing();
