# vecphi on Citus: claims across nodes.  set_claims() on the coordinator
# sends the signed token with the distributed transaction (SET LOCAL
# vecphi.claims_token, propagated by Citus); each worker verifies it itself
# and derives its claims from the setting's current value only.
#
# Checks, on a distributed table whose row policy is the claimant's tenant:
# no claims -> 0 rows (router and multi-shard queries); each tenant sees
# only its rows; a token of tenant A then set_claims() of tenant B in the
# same transaction -> only B's rows on every worker (the leak of a first
# prototype); clear_claims() and the end of the transaction drop them on
# the workers too; set_claims() outside a transaction block is refused;
# expired and forged tokens are refused on the coordinator, and on a worker
# reached directly; the token is in no server log (log_statement = all,
# citus.log_remote_commands), no notice and no worker's pg_stat_activity.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiJWT;
use VecphiTest;
use VecphiCitus;

VecphiCitus::skip_unless_citus();

my $c = VecphiCitus::new_cluster(
	'c181',
	workers => 2,
	conf => "log_statement = 'all'\nlog_min_error_statement = error\n");
my $coord = $c->{coordinator};
my @workers = @{ $c->{workers} };

# Six tenants' rows, spread over the shards of both workers.
$coord->safe_psql(
	'postgres', q{
	CREATE ROLE app LOGIN;
	CREATE TABLE notes (tenant text NOT NULL, id int NOT NULL, body text,
		PRIMARY KEY (tenant, id));
	SELECT create_distributed_table('notes', 'tenant');
	ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
	CREATE POLICY notes_tenant ON notes
		USING (tenant = vecphi.tenant()) WITH CHECK (tenant = vecphi.tenant());
	GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO app;
	INSERT INTO notes SELECT 't' || t, i, 'note ' || i
	FROM generate_series(1, 6) t, generate_series(1, 5) i;
});
is( $coord->safe_psql(
		'postgres', q{SELECT count(DISTINCT p.nodeport)
		  FROM pg_dist_placement pl JOIN pg_dist_node p USING (groupid)
		  JOIN pg_dist_shard s USING (shardid)
		  WHERE s.logicalrelid = 'notes'::regclass
		    AND s.shardid IN (SELECT get_shard_id_for_distribution_column('notes', 't' || t)
		                      FROM generate_series(1, 6) t)}),
	'2',
	'the tenants\' rows are on both workers');

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

my $per_tenant = q{SELECT string_agg(tenant || ':' || n, ',' ORDER BY tenant)
	FROM (SELECT tenant, count(*) AS n FROM notes GROUP BY tenant) x;};

# ---- no claims: nothing, router or multi-shard ----
is(app_sql($coord, 'SELECT count(*) FROM notes'), '0', 'no claims: multi-shard query sees 0 rows');
is(app_sql($coord, "SELECT count(*) FROM notes WHERE tenant = 't1'"),
	'0', 'no claims: router query sees 0 rows');
is(app_sql($coord, "BEGIN; SELECT count(*) FROM notes WHERE tenant = 't2'; COMMIT;"),
	'0', 'no claims, in a transaction block: router query sees 0 rows');

# ---- each tenant sees its own rows only ----
for my $t (1 .. 6)
{
	my $token = tok("t$t");
	is( app_sql(
			$coord, "BEGIN; SELECT vecphi.set_claims('$token'); $per_tenant
			SELECT count(*) FROM notes WHERE tenant = 't$t';
			SELECT count(*) FROM notes WHERE tenant <> 't$t'; COMMIT;"),
		"\nt$t:5\n5\n0",
		"tenant t$t: multi-shard and router queries see its 5 rows, no other tenant's");
}

# ---- A then B in one transaction: only B, on every worker ----
my ($ta, $tb) = (tok('t1'), tok('t4'));
is( app_sql(
		$coord, "BEGIN;
		SELECT vecphi.set_claims('$ta');
		$per_tenant
		SELECT vecphi.set_claims('$tb');
		$per_tenant
		SELECT count(*) FROM notes WHERE tenant = 't1';
		SELECT vecphi.tenant();
		COMMIT;"),
	"\nt1:5\n\nt4:5\n0\nt4",
	'set_claims(A), query, set_claims(B): only B\'s rows, on connections opened under A');
is( app_sql(
		$coord, "BEGIN;
		SELECT vecphi.set_claims('$ta');
		SELECT vecphi.set_claims('$tb');
		$per_tenant
		COMMIT;"),
	"\n\nt4:5",
	'set_claims(A), set_claims(B) before any query: only B\'s rows');
# Every tenant's shard, on both workers, by router queries on connections
# opened under A: only B's shard answers.
is( app_sql(
		$coord, "BEGIN;
		SELECT vecphi.set_claims('$ta');
		SELECT count(*) FROM notes WHERE tenant = 't1';
		SELECT vecphi.set_claims('$tb');
		"
		  . join('', map { "SELECT count(*) FROM notes WHERE tenant = 't$_';" } 1 .. 6)
		  . 'COMMIT;'),
	"\n5\n\n0\n0\n0\n5\n0\n0",
	'after A then B, a router query to each tenant\'s shard returns only B\'s rows');
# A worker's backend: its claims follow the setting sent to it.
is( app_sql(
		$coord, "BEGIN;
		SELECT vecphi.set_claims('$ta');
		SELECT count(*) FROM notes;
		SELECT vecphi.clear_claims();
		SELECT count(*) FROM notes;
		SELECT count(*) FROM notes WHERE tenant = 't1';
		COMMIT;"),
	"\n5\n\n0\n0",
	'clear_claims() after a query: the workers drop the claims too');
is( app_sql(
		$coord, "BEGIN;
		SELECT vecphi.set_claims('$ta');
		SELECT count(*) FROM notes;
		SAVEPOINT s;
		SELECT vecphi.set_claims('$tb');
		$per_tenant
		ROLLBACK TO s;
		$per_tenant
		COMMIT;"),
	"\n5\n\nt4:5\nt1:5",
	'ROLLBACK TO a savepoint restores the claims held there, on every node alike');

# ---- set_claims() inside a function with a SET clause ----
# The function's SET clause makes the SET LOCAL of the token end when the
# function returns; coordinator and workers must agree on what is left.
$coord->safe_psql(
	'postgres', q{
	CREATE FUNCTION app_login(tok text) RETURNS void LANGUAGE plpgsql
	SET search_path = pg_catalog AS $$BEGIN PERFORM vecphi.set_claims(tok); END$$;
	GRANT EXECUTE ON FUNCTION app_login(text) TO app;});
my $login = app_sql(
	$coord, "BEGIN; SELECT app_login('$ta');
	SELECT coalesce(vecphi.tenant(), 'none'); $per_tenant
	SELECT count(*) FROM notes WHERE tenant = 't1'; COMMIT;");
ok($login eq "\nnone\n\n0" || $login eq "\nt1\nt1:5\n5",
	"set_claims() in a function with a SET clause: coordinator and workers agree ($login)");

# ---- claims never outlive the transaction ----
# One session, so that Citus reuses its connections to the workers.
is( app_sql(
		$coord, "BEGIN; SELECT vecphi.set_claims('$ta'); SELECT count(*) FROM notes; COMMIT;
		SELECT count(*) FROM notes;
		SELECT count(*) FROM notes WHERE tenant = 't1';
		BEGIN; SELECT count(*) FROM notes; COMMIT;
		BEGIN; SELECT vecphi.set_claims('$ta'); SELECT count(*) FROM notes; ROLLBACK;
		SELECT count(*) FROM notes;"),
	"\n5\n0\n0\n0\n\n5\n0",
	'after COMMIT or ROLLBACK the next statements and transactions see 0 rows');

# ---- outside a transaction block: refused, not silently coordinator-only ----
my ($ret, $out, $err) = $coord->psql('postgres', "SELECT vecphi.set_claims('$ta')", %app);
isnt($ret, 0, 'set_claims() outside a transaction block fails');
like($err, qr/must be called inside a transaction block on a Citus cluster/,
	'... saying claims reach the workers only inside a transaction block');
($ret, $out, $err) = $coord->psql('postgres',
	"SELECT vecphi.set_claims('$ta'); SELECT count(*) FROM notes;", %app);
isnt($ret, 0, 'set_claims() in autocommit mode, then a query: refused too');

# ---- expired and forged tokens ----
my $expired = tok('t1', exp => time() - 3600);
my $forged = tok('t1', secret => 'not-the-cluster-secret-0123456789abcdef');
for my $case ([ expired => $expired ], [ forged => $forged ])
{
	my ($what, $token) = @$case;
	($ret, $out, $err) = $coord->psql('postgres',
		"BEGIN; SELECT vecphi.set_claims('$token'); SELECT count(*) FROM notes; COMMIT;", %app);
	isnt($ret, 0, "$what token: refused by set_claims() on the coordinator");
	unlike($out, qr/5/, "$what token: no rows");

	($ret, $out, $err) = $coord->psql('postgres',
		"BEGIN; SET LOCAL vecphi.claims_token = '$token'; SELECT count(*) FROM notes; COMMIT;", %app);
	isnt($ret, 0, "$what token: SET LOCAL on the coordinator refused");

	for my $w (@workers)
	{
		my $name = $w->name;
		($ret, $out, $err) = $w->psql('postgres',
			VecphiCitus::SHOW_SHARDS
			  . "BEGIN; SET LOCAL vecphi.claims_token = '$token'; SELECT vecphi.tenant(); COMMIT;",
			%app);
		isnt($ret, 0, "$what token: SET LOCAL directly on worker $name refused");
		unlike($out, qr/t1/, "$what token: worker $name holds no claims from it");
	}
}

# On a worker, only SET LOCAL in a transaction block carries a token: a
# session-wide SET, set_config() and a function's SET clause stay refused.
my $w1 = $workers[0];
for my $sql (
	"SET vecphi.claims_token = '$ta'",
	"BEGIN; SELECT set_config('vecphi.claims_token', '$ta', true); COMMIT",
	"SET LOCAL vecphi.claims_token = '$ta'",
	"CREATE FUNCTION f_tok() RETURNS text LANGUAGE sql SET vecphi.claims_token = '$ta' AS 'SELECT vecphi.tenant()'")
{
	($ret, $out, $err) = $w1->psql('postgres', "$sql; SELECT vecphi.tenant();", %app);
	ok($ret != 0 || $out eq '', 'worker refuses: ' . substr($sql, 0, 40) . '...');
}
# A valid token by SET LOCAL on a worker is set_claims() there: verified.
is(app_sql($w1, "BEGIN; SET LOCAL vecphi.claims_token = '$ta'; SELECT vecphi.tenant(); COMMIT;"),
	't1', 'a valid token by SET LOCAL on a worker gives its claims (verified like set_claims)');
is(app_sql($w1, 'SELECT vecphi.tenant() IS NULL'), 't', '... and they end with the transaction');

# ---- the token stays out of logs, notices and pg_stat_activity ----
my $logged = tok('t2');
my ($sig) = $logged =~ /\.([^.]+)$/;
my $rsig = reverse $sig;
# citus.log_remote_commands reports every command Citus sends, the remote
# BEGIN with its SET LOCAL included, as a NOTICE that (below
# log_min_messages) reaches the client without passing vecphi's log hook:
# vecphi turns it off for a transaction that carries a token.
($ret, $out, $err) = $coord->psql(
	'postgres', "SET citus.log_remote_commands = on;
	BEGIN; SELECT count(*) FROM notes; SELECT vecphi.set_claims('$logged'); SELECT count(*) FROM notes;
	SET LOCAL citus.log_remote_commands = on;
	SELECT count(*) FROM notes WHERE tenant = 't2'; SHOW citus.log_remote_commands; COMMIT;
	SHOW citus.log_remote_commands;");
is($ret, 0, 'a transaction with citus.log_remote_commands = on');
like($err, qr/issuing SELECT count/, 'remote commands are logged before the claims are set');
unlike($err, qr/claims_token/, 'but not the SET LOCAL carrying the token');
unlike($err, qr/\Q$sig\E/, 'no notice carries the token');
like($out, qr/off\non$/, 'log_remote_commands is off while the token is set (even when set on again), back on after');

# While a transaction holds claims on the workers, their pg_stat_activity:
# connections opened first, so that the SET LOCAL Citus then sends them
# is the last statement each worker backend shows.
my $bg = $coord->background_psql('postgres', extra_params => [ '-U', 'app' ]);
$bg->query_safe("BEGIN; SELECT count(*) FROM notes; SELECT vecphi.set_claims('$logged');");
for my $node (@{ $c->{nodes} })
{
	my $name = $node->name;
	is( $node->safe_psql(
			'postgres', "SELECT count(*) FROM pg_stat_activity
			  WHERE strpos(query, reverse('$rsig')) > 0"),
		'0',
		"$name: no backend shows the token in pg_stat_activity");
	next if $node == $coord;
	cmp_ok(
		$node->safe_psql(
			'postgres', q{SELECT count(*) FROM pg_stat_activity
			  WHERE query LIKE '%vecphi.claims_token = ''<token>''%'}),
		'>=', 1, "$name: the SET LOCAL from the coordinator shows redacted");
}
$bg->query_safe('COMMIT;');
$bg->quit;

# ---- RS256: every node holds only the public key ----
# The issuer keeps the private key; the nodes verify with the public one,
# and no node holds anything that signs tokens.
my $keydir = PostgreSQL::Test::Utils::tempdir('c181_rsa');
my ($kout, $kerr) = run_command([ 'openssl', 'genrsa', '-out', "$keydir/issuer.key", '2048' ]);
($kout, $kerr) = run_command(
	[ 'openssl', 'pkey', '-in', "$keydir/issuer.key", '-pubout', '-out', "$keydir/issuer.pub" ]);
ok(-s "$keydir/issuer.pub", 'an RS256 issuer key pair');
sub rs_token
{
	my (%claims) = @_;
	$claims{exp} = time() + 3600 unless exists $claims{exp};
	my $input = VecphiJWT::b64url(VecphiJWT::json({ alg => 'RS256', typ => 'JWT' })) . '.'
	  . VecphiJWT::b64url(VecphiJWT::json(\%claims));
	my $in = "$keydir/input";
	open my $fh, '>', $in or die $!;
	print $fh $input;
	close $fh;
	run_command([ 'openssl', 'dgst', '-sha256', '-sign', "$keydir/issuer.key", '-out', "$in.sig", $in ]);
	return $input . '.' . VecphiJWT::b64url(slurp_file("$in.sig"));
}
for my $node (@{ $c->{nodes} })
{
	my $pub = $node->basedir . '/jwt_public_key.pem';
	open my $fh, '>', $pub or die $!;
	print $fh slurp_file("$keydir/issuer.pub");
	close $fh;
	chmod 0644, $pub;
	$node->append_conf('postgresql.conf',
		"vecphi.jwt_secret_file = ''\nvecphi.jwt_public_key_file = '$pub'\n");
	$node->reload;
}
my $rs5 = rs_token(tenant => 't5', role => 'clinician', sub => 'u_t5');
is( app_sql(
		$coord, "BEGIN; SELECT vecphi.set_claims('$rs5'); $per_tenant
		SELECT count(*) FROM notes WHERE tenant = 't5'; COMMIT;"),
	"\nt5:5\n5",
	'RS256, public key only on every node: the tenant sees its rows, router and multi-shard');
($ret, $out, $err) = $coord->psql('postgres',
	"BEGIN; SELECT vecphi.set_claims('$ta'); SELECT count(*) FROM notes; COMMIT;", %app);
isnt($ret, 0, 'an HS256 token is refused once no node holds the secret');
($ret, $out, $err) = $workers[0]->psql('postgres',
	"BEGIN; SET LOCAL vecphi.claims_token = '$ta'; SELECT vecphi.tenant(); COMMIT;", %app);
isnt($ret, 0, '... by a worker too');

VecphiCitus::stop_cluster($c);
for my $node (@{ $c->{nodes} })
{
	my $log = slurp_file($node->logfile);
	my $name = $node->name;
	my @found = grep { index($log, (/\.([^.]+)$/)[0]) >= 0 } ($ta, $tb, $logged, $expired, $forged);
	is(scalar @found, 0, "$name: the server log holds no token's signature");
	like($log, qr/<token>/, "$name: the log shows the token redacted") if $node != $coord;
}
done_testing();
