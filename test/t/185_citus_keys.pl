# vecphi on Citus (#16): key administration on the coordinator reaches every
# worker in the same distributed transaction, with the coordinator's tenant
# ids, versions and wrapped keys; a rollback, or an error on any worker,
# leaves no trace; shredding stops decryption on every worker; the internal
# apply function refuses anyone but a superuser; vecphi.sync_node() brings a
# new worker up to date and vecphi.check_cluster() reports what differs.
#
# Reads on the workers connect to them directly with claims set there
# (claims through the coordinator are the citus-base part of #16).
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

my $c = VecphiCitus::new_cluster('citus_keys', workers => 2);
my $coord = $c->{coordinator};
my @workers = @{ $c->{workers} };

my $KEYS_SQL = q{
	SELECT string_agg(format('%s %s %s %s', tenant_id, tenant, kek_version, current_dek), ',' ORDER BY tenant_id)
	FROM vecphi.tenants;
	SELECT string_agg(format('%s/%s/%s/%s', tenant_id, dek_version, kek_version,
							 encode(sha256(wrapped_dek), 'hex')), ',' ORDER BY tenant_id, dek_version)
	FROM vecphi.keyring;
	SELECT string_agg(tenant, ',' ORDER BY tenant_id) FROM vecphi.shredded_tenants;
	SELECT keyring_id FROM vecphi.keyring_identity;
};

sub same_keys_everywhere
{
	my ($what) = @_;
	my $want = $coord->safe_psql('postgres', $KEYS_SQL);
	for my $i (0 .. $#workers)
	{
		is($workers[$i]->safe_psql('postgres', $KEYS_SQL),
			$want, "$what: worker " . ($i + 1) . " has the coordinator's key rows");
	}
	return $want;
}

sub claims { return VecphiCheck::claims_do(tenant => $_[0], role => 'clinician', sub => 'dr'); }

# --- create_tenant: same ids, versions and wrapped keys on every worker ---
my $id_a = $coord->safe_psql('postgres', "SELECT vecphi.create_tenant('hosp_a')");
my $id_b = $coord->safe_psql('postgres', "SELECT vecphi.create_tenant('hosp_b')");
my $state = same_keys_everywhere('create_tenant');
like($state, qr/^$id_a hosp_a 1 1,$id_b hosp_b 1 1\n/, 'coordinator assigned the ids');
my $kid = $coord->safe_psql('postgres', 'SELECT vecphi.keyring_id()');
like($state, qr/\n\Q$kid\E$/, 'keyring id reached the workers');

# A worker's ids cannot diverge: key administration there is refused.
like(
	VecphiCheck::error_of($workers[0], 'postgres', "SELECT vecphi.create_tenant('local_only')"),
	qr/^55000: vecphi\.create_tenant\(\) must run on the Citus coordinator/,
	'create_tenant on a worker is refused');

# --- an evector table distributed over the workers, ehnsw on the shards ---
$coord->safe_psql('postgres', q{
	CREATE TABLE docs (id integer, tenant text, emb evector(4));
	SELECT create_distributed_table('docs', 'id', shard_count => 4);
});
my @rows;
srand(16);
for my $t ('hosp_a', 'hosp_b')
{
	my $sql = "BEGIN;\n" . claims($t) . "\n";
	for my $i (1 .. 30)
	{
		my $id = ($t eq 'hosp_a' ? 0 : 1000) + $i;
		my @v = map { sprintf('%.3f', rand(2) - 1) } 1 .. 4;
		$sql .= "INSERT INTO docs VALUES ($id, '$t', '[" . join(',', @v) . "]');\n";
	}
	$coord->safe_psql('postgres', $sql . "COMMIT;");
}
$coord->safe_psql('postgres', 'CREATE INDEX docs_emb ON docs USING ehnsw (emb evector_l2_ops)');
pass('ehnsw index built on every shard (keys were on the workers)');

# Shard placements per worker, from the coordinator's metadata.
sub placements
{
	my ($w) = @_;
	return split /\n/, $coord->safe_psql('postgres', qq{
		SELECT shard_name('docs'::regclass, s.shardid)
		FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
		JOIN pg_dist_node n USING (groupid)
		WHERE s.logicalrelid = 'docs'::regclass AND n.nodeport = } . $w->port . ' ORDER BY 1');
}

# Top k of tenant $t over every shard, each shard read on its worker (index
# scan or exact), merged here: what the coordinator's plan does.
my $Q = '[0.1,-0.2,0.3,0.05]';
sub top_k
{
	my ($t, $k, $exact) = @_;
	my @all;
	for my $w (@workers)
	{
		for my $shard (placements($w))
		{
			my $set = $exact ? 'SET LOCAL enable_indexscan = off;' : 'SET LOCAL enable_seqscan = off;';
			my $out = $w->safe_psql('postgres', "BEGIN; $set\n" . claims($t) . qq{
				SELECT id || ' ' || (emb <-> '$Q'::evector_query) FROM $shard
				WHERE tenant = '$t' ORDER BY emb <-> '$Q'::evector_query LIMIT $k;
				COMMIT;});
			push @all, map { [ split / / ] } grep { /\S/ } split /\n/, $out;
		}
	}
	@all = sort { $a->[1] <=> $b->[1] || $a->[0] <=> $b->[0] } @all;
	return join ',', map { $_->[0] } @all[ 0 .. $k - 1 ];
}
my $ann = top_k('hosp_a', 5, 0);
is($ann, top_k('hosp_a', 5, 1), 'ORDER BY emb <-> q LIMIT 5 across shards (ehnsw) equals the exact answer');
# The same through the coordinator: claims travel with the distributed
# transaction (citus-base), each shard answers from its ehnsw index with the
# keys sent to its worker, the coordinator merges.  The query vector goes
# encrypted (an evector envelope under hosp_a's key): Citus deparses the
# shard queries, and an evector_query constant prints as
# "evector_query(4 dimensions)" (never its values), which the workers cannot
# read back (an evector prints as its envelope, which they can).
my $QE = $coord->safe_psql('postgres', "BEGIN;\n" . claims('hosp_a') . "\nSELECT '$Q'::evector::text; COMMIT;");
my $via = $coord->safe_psql('postgres', "BEGIN;\n" . VecphiTest::claims_sql(tenant => 'hosp_a', role => 'clinician', sub => 'dr') . qq{
	SELECT string_agg(id::text, ',' ORDER BY d, id) FROM (
		SELECT id, emb <-> '$QE'::evector AS d FROM docs WHERE tenant = 'hosp_a'
		ORDER BY emb <-> '$QE'::evector LIMIT 5) s;
	COMMIT;});
$via =~ s/^\s+//;
is($via, $ann, 'ORDER BY emb <-> q LIMIT 5 through the coordinator equals the exact answer');
my $plan = $workers[0]->safe_psql('postgres', "BEGIN; SET LOCAL enable_seqscan = off;\n" . claims('hosp_a')
	. "\nEXPLAIN (COSTS OFF) SELECT id FROM " . (placements($workers[0]))[0]
	. " ORDER BY emb <-> '$Q'::evector_query LIMIT 5; COMMIT;");
like($plan, qr/Index Scan using docs_emb/, 'the shard query uses the ehnsw index');

# --- rotate_dek, rotate_kek: new keys on the workers, new rows decrypt there ---
my $dek = $coord->safe_psql('postgres', "SELECT vecphi.rotate_dek('hosp_a')");
$coord->safe_psql('postgres', "SELECT vecphi.rotate_kek('hosp_a')");
same_keys_everywhere('rotate_dek + rotate_kek');
$coord->safe_psql('postgres', "BEGIN;\n" . claims('hosp_a') . "\nINSERT INTO docs VALUES (500, 'hosp_a', '[1,1,1,1]'); COMMIT;");
my $owner = $coord->safe_psql('postgres', q{
	SELECT n.nodeport FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
	JOIN pg_dist_node n USING (groupid)
	WHERE s.logicalrelid = 'docs'::regclass AND s.shardid = get_shard_id_for_distribution_column('docs', 500)});
my ($w500) = grep { $_->port == $owner } @workers;
my $shard500 = $coord->safe_psql('postgres',
	"SELECT shard_name('docs'::regclass, get_shard_id_for_distribution_column('docs', 500))");
is( $w500->safe_psql('postgres', "BEGIN;\n" . claims('hosp_a') . qq{
		SELECT vecphi.key_id(emb) || ' ' || vecphi.decrypt(emb)::text FROM $shard500 WHERE id = 500; COMMIT;}),
	"hosp_a/$dek {1,1,1,1}",
	'a row written under the rotated data key decrypts on its worker');

# --- a rolled-back key administration leaves no trace on the workers ---
my $before = same_keys_everywhere('before rollback');
$coord->safe_psql('postgres', q{
	BEGIN;
	SELECT vecphi.create_tenant('ghost');
	SELECT vecphi.rotate_dek('hosp_b');
	SELECT vecphi.shred_tenant('hosp_a');
	ROLLBACK;});
is(same_keys_everywhere('after rollback'), $before, 'ROLLBACK: no tenant, key or shred record anywhere');

# An error on one worker aborts the key administration on every node: a
# tenant of the same name that a superuser put on worker 2 by hand.
$workers[1]->safe_psql('postgres',
	q{INSERT INTO vecphi.tenants (tenant_id, tenant) VALUES (9999, 'clash')});
like(
	VecphiCheck::error_of($coord, 'postgres', "SELECT vecphi.create_tenant('clash')"),
	qr/tenant "clash" has id 9999 on this node but \d+ on the coordinator/,
	'a worker that cannot apply the rows stops create_tenant');
is($coord->safe_psql('postgres', "SELECT count(*) FROM vecphi.tenants WHERE tenant = 'clash'"),
	'0', 'the coordinator has no tenant clash');
is($workers[0]->safe_psql('postgres', "SELECT count(*) FROM vecphi.tenants WHERE tenant = 'clash'"),
	'0', 'worker 1 has no tenant clash (two-phase commit aborted it there too)');
is($coord->safe_psql('postgres', "SELECT count(*) FROM pg_prepared_xacts"), '0',
	'no prepared transaction left on the coordinator');
is(join('', map { $_->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts') } @workers),
	'00', 'no prepared transaction left on the workers');
$workers[1]->safe_psql('postgres', 'DELETE FROM vecphi.tenants WHERE tenant_id = 9999');

# --- nobody but a superuser writes key rows on a worker ---
$coord->safe_psql('postgres', q{
	CREATE ROLE app LOGIN;
	CREATE ROLE officer LOGIN IN ROLE vecphi_security_officer;
	CREATE ROLE keyadm LOGIN IN ROLE vecphi_key_admin;
	CREATE TABLE app_owned (id integer);
	ALTER TABLE app_owned OWNER TO app;});
my $forged = q{'{"tenants": [{"tenant_id": 77, "tenant": "forged", "kek_version": 1, "current_dek": 1}], "keyring": []}'};
for my $w ($workers[0])
{
	like(VecphiCheck::error_of($w, 'postgres', "SET ROLE app; SELECT vecphi.keysync_apply($forged)"),
		qr/^42501: permission denied for function keysync_apply/,
		'an app role on a worker cannot call vecphi.keysync_apply()');
	like(VecphiCheck::error_of($w, 'postgres', "SET ROLE keyadm; SELECT vecphi.keysync_apply($forged)"),
		qr/^42501: permission denied for function keysync_apply/,
		'a key administrator on a worker cannot call it either');
	# Even granted EXECUTE (a superuser's mistake), it checks for a superuser.
	$w->safe_psql('postgres', 'GRANT EXECUTE ON FUNCTION vecphi.keysync_apply(jsonb) TO app');
	like(VecphiCheck::error_of($w, 'postgres', "SET ROLE app; SELECT vecphi.keysync_apply($forged)"),
		qr/^42501: permission denied for function vecphi\.keysync_apply/,
		'granted EXECUTE, a non-superuser is still refused');
	$w->safe_psql('postgres', 'REVOKE EXECUTE ON FUNCTION vecphi.keysync_apply(jsonb) FROM app');
	like(VecphiCheck::error_of($w, 'postgres',
			"SET ROLE app; INSERT INTO vecphi.tenants (tenant_id, tenant) VALUES (77, 'forged')"),
		qr/^42501: permission denied for table tenants/,
		'the table owner cannot write vecphi.tenants on a worker');
	like(VecphiCheck::error_of($w, 'postgres',
			"SET ROLE officer; INSERT INTO vecphi.role_categories VALUES ('clinician', 'forged')"),
		qr/^55000: vecphi\.role_categories must be changed on the Citus coordinator/,
		'a security officer cannot change role categories on a worker');
}
is($workers[0]->safe_psql('postgres', "SELECT count(*) FROM vecphi.tenants WHERE tenant = 'forged'"),
	'0', 'no forged tenant on the worker');
like(VecphiCheck::error_of($coord, 'postgres', "SELECT vecphi.keysync_apply($forged)"),
	qr/^55000: vecphi\.keysync_apply\(\) runs on Citus workers only/,
	'keysync_apply is refused on the coordinator, even for a superuser');

# --- role categories reach the workers in the same transaction ---
$coord->safe_psql('postgres',
	"SET ROLE officer; INSERT INTO vecphi.role_categories VALUES ('clinician', 'oncology'), ('clinician', 'cardiology')");
$coord->safe_psql('postgres',
	"SET ROLE officer; BEGIN; DELETE FROM vecphi.role_categories WHERE category = 'cardiology'; ROLLBACK;");
is( join('|', VecphiCitus::on_all($c, 'SELECT string_agg(app_role || \'/\' || category, \',\' ORDER BY app_role, category) FROM vecphi.role_categories')),
	'clinician/cardiology,clinician/oncology|clinician/cardiology,clinician/oncology|clinician/cardiology,clinician/oncology',
	'role categories are the same on every node (the rolled-back delete left no trace)');

# --- shred_tenant: decryption fails on every worker ---
for my $w (@workers)
{
	my ($shard) = grep {
		$w->safe_psql('postgres', "SELECT count(*) FROM $_ WHERE tenant = 'hosp_b'") > 0
	} placements($w);
	ok( $w->safe_psql('postgres', "BEGIN;\n" . claims('hosp_b') . "\nSELECT count(vecphi.decrypt(emb)) > 0 FROM $shard WHERE tenant = 'hosp_b'; COMMIT;") eq 't',
		'before the shred, hosp_b decrypts on worker ' . $w->port);
	$w->{_hosp_b_shard} = $shard;
}
# One coordinator session: it decrypts hosp_b through the workers (Citus
# keeps those worker connections, whose backends cache hosp_b's data key),
# shreds, and tries again over the same connections.
{
	my $cl = VecphiTest::claims_sql(tenant => 'hosp_b', role => 'clinician', sub => 'dr');
	my ($out, $err) = ('', '');
	$coord->psql('postgres', qq{
		BEGIN; $cl
		SELECT 'before ' || count(vecphi.decrypt(emb)) FROM docs WHERE tenant = 'hosp_b';
		COMMIT;
		SET ROLE keyadm; SELECT 'shredded ' || vecphi.shred_tenant('hosp_b'); RESET ROLE;
		BEGIN; $cl
		SELECT 'after ' || count(vecphi.decrypt(emb)) FROM docs WHERE tenant = 'hosp_b';
		COMMIT;},
		stdout => \$out, stderr => \$err, on_error_stop => 1);
	like($out, qr/^before 30$/m, 'before the shred, hosp_b decrypts through the coordinator (30 rows)');
	like($out, qr/^shredded \d+$/m, 'shred_tenant in the same session');
	unlike($out, qr/^after /m, 'after the shred, the same session cannot decrypt hosp_b over its cached worker connections');
	like($err, qr/ERROR:.*hosp_b/, '... it fails naming the tenant');
}
same_keys_everywhere('shred_tenant');
for my $w (@workers)
{
	my $shard = $w->{_hosp_b_shard};
	like(VecphiCheck::error_of($w, 'postgres', "BEGIN;\n" . claims('hosp_b') . "\nSELECT vecphi.decrypt(emb) FROM $shard WHERE tenant = 'hosp_b';"),
		qr/^58P01: .*hosp_b/, 'after the shred, hosp_b does not decrypt on worker ' . $w->port);
}

like(VecphiCheck::error_of($coord, 'postgres', "BEGIN;\n" . VecphiTest::claims_sql(tenant => 'hosp_b', role => 'clinician', sub => 'dr')
		. "\nSELECT count(vecphi.decrypt(emb)) FROM docs WHERE tenant = 'hosp_b';"),
	qr/58P01: .*hosp_b/, 'after the shred, hosp_b does not decrypt through the coordinator either');

# --- check_cluster: no rows when consistent; a restrictive policy that a
# shard placement lost is reported ---
is($coord->safe_psql('postgres', 'SET ROLE keyadm; SELECT count(*) FROM vecphi.check_cluster()'),
	'0', 'check_cluster: no rows on a consistent cluster');
$coord->safe_psql('postgres', q{
	CREATE TABLE pol (id integer, owner text);
	SELECT create_distributed_table('pol', 'id', shard_count => 2);
	ALTER TABLE pol ENABLE ROW LEVEL SECURITY;
	CREATE POLICY base ON pol USING (true);
	CREATE POLICY mine ON pol AS RESTRICTIVE USING (owner = current_user);});
my $pol_rows = $coord->safe_psql('postgres',
	"SELECT placement || ' ' || item || ': ' || problem FROM vecphi.check_cluster() ORDER BY 1");
note("check_cluster on a table with a restrictive policy:\n$pol_rows");
# Citus may or may not keep AS RESTRICTIVE: compare with the shards themselves.
my $shard_restrictive = join '', map {
	$_->safe_psql('postgres', VecphiCitus::SHOW_SHARDS . q{SELECT count(*) FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
		WHERE c.relname LIKE 'pol\_%' AND p.polname = 'mine' AND NOT p.polpermissive})
} @workers;
if ($shard_restrictive eq '11')
{
	is($pol_rows, '', 'Citus kept AS RESTRICTIVE on the shards: nothing to report');
}
else
{
	like($pol_rows, qr/^public\.pol_\d+ policy mine: permissive here, restrictive on public\.pol$/m,
		'check_cluster reports the placements whose policy lost AS RESTRICTIVE');
}
# A policy changed by hand on one placement is found.
my ($pol_shard) = grep { /pol_/ } split /\n/, $coord->safe_psql('postgres',
	"SELECT shard_name('pol'::regclass, shardid) FROM pg_dist_shard WHERE logicalrelid = 'pol'::regclass ORDER BY shardid LIMIT 1");
for my $w (@workers)
{
	next unless $w->safe_psql('postgres', "SELECT to_regclass('$pol_shard') IS NOT NULL") eq 't';
	$w->safe_psql('postgres', "SET citus.enable_ddl_propagation = off; DROP POLICY base ON $pol_shard");
}
like($coord->safe_psql('postgres', "SELECT placement || ' ' || item || ': ' || problem FROM vecphi.check_cluster()"),
	qr/^public\.\Q$pol_shard\E policy base: missing on this placement of public\.pol$/m,
	'check_cluster reports a policy dropped on one placement');
$coord->safe_psql('postgres', 'DROP TABLE pol');

# protect() on a distributed table (citus-base's policies): Citus copies its
# restrictive policies as permissive, but every permissive policy holds the
# same condition, so the rows allowed are the same: nothing to report.
$coord->safe_psql('postgres', q{
	CREATE TABLE pnotes (tenant text NOT NULL, id int NOT NULL, category text NOT NULL,
		body text, emb evector(4), PRIMARY KEY (tenant, id));
	SELECT create_distributed_table('pnotes', 'tenant');
	SELECT vecphi.protect('pnotes', 'tenant', 'category');});
is($coord->safe_psql('postgres', "SELECT count(*) FROM vecphi.check_cluster() WHERE placement LIKE '%pnotes%'"),
	'0', 'check_cluster: no rows for the placements of a protect()ed distributed table');
like($coord->safe_psql('postgres', q{SELECT count(*) FROM pg_policy WHERE polrelid = 'pnotes'::regclass}),
	qr/^[1-9]/, '(it has policies to compare)');

# --- a new worker: check_cluster reports it until vecphi.sync_node() ---
my $w3 = VecphiCitus::add_worker($c, 'citus_keys_w3');
my $w3name = $coord->safe_psql('postgres', 'SELECT nodename FROM pg_dist_node WHERE nodeport = ' . $w3->port);
my $node3 = "$w3name:" . $w3->port;
my $report = $coord->safe_psql('postgres',
	"SELECT item || ': ' || problem FROM vecphi.check_cluster() WHERE node = '$node3' ORDER BY 1");
like($report, qr/^keyring id: keyring missing here/m, 'check_cluster: the new node has no keyring id');
like($report, qr/^tenant hosp_a: missing here/m, 'check_cluster: the new node lacks tenant hosp_a');
like($report, qr/^tenant hosp_b: missing here \(shredded/m, 'check_cluster: ... and the shred record of hosp_b');
like($report, qr/^role categories: /m, 'check_cluster: ... and the role categories');
is($coord->safe_psql('postgres', "SELECT count(*) FROM vecphi.check_cluster() WHERE node <> '$node3'"),
	'0', 'check_cluster: the other nodes are fine');

is($coord->safe_psql('postgres', "SET ROLE keyadm; SELECT vecphi.sync_node('$w3name', " . $w3->port . ')'),
	'2', 'sync_node sent both tenants');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM vecphi.check_cluster()'),
	'0', 'check_cluster: no rows after sync_node');
is($w3->safe_psql('postgres', $KEYS_SQL), $coord->safe_psql('postgres', $KEYS_SQL),
	'the new worker has the coordinator\'s key rows');
is($w3->safe_psql('postgres', 'SELECT last_value FROM vecphi.tenant_ids') . ' '
	  . $w3->safe_psql('postgres', 'SELECT last_value FROM vecphi.dek_versions'),
	$coord->safe_psql('postgres', 'SELECT last_value FROM vecphi.tenant_ids') . ' '
	  . $coord->safe_psql('postgres', 'SELECT last_value FROM vecphi.dek_versions'),
	'the new worker\'s id sequences are at the coordinator\'s positions');
is($coord->safe_psql('postgres', "SELECT vecphi.sync_node('$w3name', " . $w3->port . ')'),
	'2', 'sync_node again (idempotent)');
is($w3->safe_psql('postgres', $KEYS_SQL), $coord->safe_psql('postgres', $KEYS_SQL),
	'... and the rows are unchanged');
like(VecphiCheck::error_of($coord, 'postgres', "SELECT vecphi.sync_node('nowhere', 1)"),
	qr/^42704: nowhere:1 is not a worker of this Citus cluster/, 'sync_node of an unknown node is refused');

# Move the shard with row 500 to the new worker: it serves queries there.
# A shard move connects to the nodes themselves by citus.local_hostname
# ('localhost' by default, TCP): here the nodes listen on a socket directory.
for my $n (@{ $c->{nodes} })
{
	$n->safe_psql('postgres', "ALTER SYSTEM SET citus.local_hostname = '" . $n->host . "'; SELECT pg_reload_conf()");
}
my $shardid = $coord->safe_psql('postgres', "SELECT get_shard_id_for_distribution_column('docs', 500)");
$coord->safe_psql('postgres', "SELECT citus_move_shard_placement($shardid, '$w3name', " . $w500->port
	  . ", '$w3name', " . $w3->port . ", shard_transfer_mode => 'block_writes')");
is( $w3->safe_psql('postgres', "BEGIN; SET LOCAL enable_seqscan = off;\n" . claims('hosp_a') . qq{
		SELECT id FROM $shard500 WHERE tenant = 'hosp_a' ORDER BY emb <-> '[1,1,1,1]'::evector_query LIMIT 1;
		COMMIT;}),
	'500', 'the moved shard answers an ehnsw query on the new worker');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM vecphi.check_cluster()'),
	'0', 'check_cluster: no rows after the move');

# A tenant created now reaches all three workers.
$coord->safe_psql('postgres', "SELECT vecphi.create_tenant('hosp_c')");
is($w3->safe_psql('postgres', $KEYS_SQL), $coord->safe_psql('postgres', $KEYS_SQL),
	'a tenant created after the sync reaches the new worker');

done_testing();
