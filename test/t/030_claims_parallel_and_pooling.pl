# vecphi: claims in parallel workers and on pooled connections.
#
#  - Parallel sequential scans under claims: the plan has a Gather, the
#    workers do the scanning and the decrypting (the leader does not take
#    part), and the rows equal those of the same query run serially: the
#    claimant's only, never another tenant's, for every role.
#  - A parallel worker gets the claims only as the leader's verified token
#    (vecphi.claims_token) and verifies it again.  Whatever a client does to
#    that carrier can only take claims away: setting it to a token of its
#    own choosing is refused (SET, set_config, ALTER ROLE, ALTER SYSTEM,
#    connection options); clearing it makes the workers fail, not return
#    rows.
#  - Workers must never hold other claims than the leader: claims the
#    leader dropped (ROLLBACK TO SAVEPOINT, a refused token) or replaced
#    must not live on in the workers.
#  - Pooling: one connection, many transactions; the claims of one never
#    reach the next, in the leader or in its workers.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('parallel');
$node->append_conf('postgresql.conf',
	"max_worker_processes = 16\nmax_parallel_workers = 8\n");
$node->start;

my $rows_per_tenant = 3000;

# Claims statements (DO blocks that print nothing).
my %claims = (
	a_clinician => VecphiCheck::claims_do(tenant => 'par_a', role => 'clinician', sub => 'dr_a'),
	a_billing => VecphiCheck::claims_do(tenant => 'par_a', role => 'billing', sub => 'clerk_a'),
	a_break_glass => VecphiCheck::claims_do(
		tenant => 'par_a',
		role => 'billing',
		sub => 'clerk_a',
		break_glass => 'audit 42'),
	b_clinician => VecphiCheck::claims_do(tenant => 'par_b', role => 'clinician', sub => 'dr_b'),);

# A valid token of par_b, to try where only set_claims() may put one.
my $b_token = VecphiTest::token(tenant => 'par_b', role => 'clinician', sub => 'dr_b');

# Parallel plans whatever the costs, workers only; and serial plans.
my $parallel = join("\n",
	'SET max_parallel_workers_per_gather = 2;',
	'SET parallel_setup_cost = 0;',
	'SET parallel_tuple_cost = 0;',
	'SET min_parallel_table_scan_size = 0;',
	'SET parallel_leader_participation = off;',
	'SET enable_indexscan = off;',
	'SET enable_bitmapscan = off;');
my $serial = 'SET max_parallel_workers_per_gather = 0;';

$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('par_a');
	SELECT vecphi.create_tenant('par_b');
	CREATE ROLE regress_par_owner;
	CREATE ROLE regress_par_app LOGIN;
	GRANT CREATE ON SCHEMA public TO regress_par_owner, regress_par_app;
	INSERT INTO vecphi.role_categories VALUES
		('clinician', 'clinical'), ('clinician', 'clinical_trial'), ('billing', 'billing');
	SET ROLE regress_par_owner;
	CREATE TABLE big (id int PRIMARY KEY, tenant text NOT NULL, category text NOT NULL,
		body etext, emb evector(4));
	SELECT vecphi.protect('big', 'tenant', 'category');
	GRANT SELECT ON big TO regress_par_app;
	-- Not protected: here only the claims needed to decrypt stand between a
	-- query and the plaintext.
	CREATE TABLE plain (id int PRIMARY KEY, tenant text NOT NULL, body etext);
	GRANT SELECT ON plain TO regress_par_app;
	RESET ROLE;
	BEGIN;
	$claims{a_clinician}
	INSERT INTO big SELECT i, 'par_a',
		CASE WHEN i % 10 = 0 THEN 'clinical_trial' WHEN i % 10 IN (1, 2) THEN 'billing' ELSE 'clinical' END,
		vecphi.encrypt('a note ' || i), format('[%s,%s,0,1]', i % 17, i % 13)::evector
	FROM generate_series(1, $rows_per_tenant) i;
	INSERT INTO plain SELECT i, 'par_a', vecphi.encrypt('a plain ' || i) FROM generate_series(1, $rows_per_tenant) i;
	COMMIT;
	BEGIN;
	$claims{b_clinician}
	INSERT INTO big SELECT 100000 + i, 'par_b',
		CASE WHEN i % 10 = 0 THEN 'clinical_trial' WHEN i % 10 IN (1, 2) THEN 'billing' ELSE 'clinical' END,
		vecphi.encrypt('b note ' || i), format('[%s,%s,0,1]', i % 17, i % 13)::evector
	FROM generate_series(1, $rows_per_tenant) i;
	INSERT INTO plain SELECT 100000 + i, 'par_b', vecphi.encrypt('b plain ' || i) FROM generate_series(1, $rows_per_tenant) i;
	COMMIT;
	VACUUM ANALYZE big;
	VACUUM ANALYZE plain;
});

# Run $sql as the application role (not a superuser: RLS applies).
sub app_sql
{
	my ($sql) = @_;
	return "SET ROLE regress_par_app;\n$sql";
}

sub app
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', app_sql($sql));
}

sub app_error
{
	my ($sql) = @_;
	return VecphiCheck::error_of($node, 'postgres', app_sql($sql));
}

# Run $prefix as the application role, errors or not, then $query, and
# return "SQLSTATE: message" of the error $query raised, or 'no error'.
sub app_final_error
{
	my ($prefix, $query) = @_;
	my ($stdout, $stderr) = ('', '');
	$node->psql(
		'postgres',
		"\\set VERBOSITY verbose\n" . app_sql($prefix) . "\\warn ---final---\n$query",
		stdout => \$stdout,
		stderr => \$stderr,
		on_error_stop => 0);
	my ($final) = $stderr =~ /---final---\n?(.*)\z/s;
	die "no marker in: $stderr" unless defined $final;
	return $final =~ /ERROR:\s+([0-9A-Z]{5}:\s+[^\n]*)/ ? $1 : 'no error';
}

# What a claimant sees of big: rows, rows of the other tenant, rows per
# category, and a digest of every visible id with its decrypted note.  The
# decryption is in the scan's output, so in a parallel plan the workers do
# it.
my $summary = q{
	SELECT count(*) || ' rows, '
		|| count(*) FILTER (WHERE tenant IS DISTINCT FROM vecphi.tenant()) || ' foreign, '
		|| count(*) FILTER (WHERE category = 'clinical') || '/'
		|| count(*) FILTER (WHERE category = 'clinical_trial') || '/'
		|| count(*) FILTER (WHERE category = 'billing') || ' by category, digest '
		|| coalesce(md5(string_agg(line, ',' ORDER BY id)), '-')
	FROM (SELECT id, tenant, category, id || ':' || vecphi.decrypt(body) AS line FROM big) s;
};

# ---------------------------------------------------------------------------
# Parallel plans under claims.
# ---------------------------------------------------------------------------
my $plan = app("$parallel\nBEGIN;\n$claims{a_clinician}\nEXPLAIN (COSTS OFF, VERBOSE) $summary\nCOMMIT;");
like($plan, qr/Gather/, 'the plan has a Gather');
like($plan, qr/Parallel Seq Scan on public\.big/, 'over a parallel sequential scan of the protected table');
like($plan, qr/Parallel Seq Scan on public\.big\n\s+Output: .*vecphi\.decrypt\((?:big\.)?body\)/,
	'which decrypts in the workers');
like($plan, qr/InitPlan/, 'the claims are init plans of the leader');

my $analyze = app("$parallel\nBEGIN;\n$claims{a_clinician}\n"
	  . "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(vecphi.decrypt(body)) FROM big;\nCOMMIT;");
like($analyze, qr/Workers Launched: [12]/, 'workers were launched');

my %expected_summary = (
	a_clinician => qr/^2400 rows, 0 foreign, 2100\/300\/0 by category, digest [0-9a-f]{32}$/,
	a_billing => qr/^600 rows, 0 foreign, 0\/0\/600 by category, digest [0-9a-f]{32}$/,
	a_break_glass => qr/^3000 rows, 0 foreign, 2100\/300\/600 by category, digest [0-9a-f]{32}$/,
	b_clinician => qr/^2400 rows, 0 foreign, 2100\/300\/0 by category, digest [0-9a-f]{32}$/,);
for my $who (sort keys %expected_summary)
{
	my $par = app("$parallel\nBEGIN;\n$claims{$who}\n$summary\nCOMMIT;");
	my $ser = app("$serial\nBEGIN;\n$claims{$who}\n$summary\nCOMMIT;");
	like($par, $expected_summary{$who}, "$who, parallel: the claimant's rows only ($par)");
	is($par, $ser, "$who: parallel and serial results are the same");
}
isnt(app("$parallel\nBEGIN;\n$claims{a_clinician}\n$summary\nCOMMIT;"),
	app("$parallel\nBEGIN;\n$claims{b_clinician}\n$summary\nCOMMIT;"),
	'the two tenants see different rows');

# Rows of the other tenant asked for by name: none, in parallel.
is( app("$parallel\nBEGIN;\n$claims{a_break_glass}\n"
		  . "SELECT count(*) FROM big WHERE tenant = 'par_b' OR id > 100000;\nCOMMIT;"),
	'0',
	'break-glass, parallel: none of par_b\'s rows');

# No claims: nothing, in parallel too.
is(app("$parallel\nSELECT count(*) FROM big;"), '0', 'no claims, parallel: no rows');

# A parallel worker verifies the token again and uses the claims itself
# (here vecphi.tenant() per row, in the workers).
is( app("$parallel\nBEGIN;\n$claims{b_clinician}\n"
		  . "SELECT string_agg(DISTINCT t, ',') FROM (SELECT vecphi.tenant() || ':' || tenant AS t FROM plain WHERE id % 7 = 0) s;\nCOMMIT;"),
	'par_b:par_a,par_b:par_b',
	'workers evaluate vecphi.tenant() as par_b, like the leader');

# ---------------------------------------------------------------------------
# The carrier of the claims to the workers cannot be set by a client.
# ---------------------------------------------------------------------------
(my $b_token_lit = $b_token) =~ s/'/''/g;
like(app_error("SET vecphi.claims_token = '$b_token_lit';"),
	qr/^42501: vecphi\.claims_token can only be set by vecphi\.set_claims\(\)/,
	'SET vecphi.claims_token to a valid token is refused (42501)');
like(app_error("BEGIN; SET LOCAL vecphi.claims_token = '$b_token_lit';"),
	qr/^42501: /, 'SET LOCAL too');
like(app_error("SELECT set_config('vecphi.claims_token', '$b_token_lit', true);"),
	qr/^42501: /, 'set_config too');
like(
	VecphiCheck::error_of($node, 'postgres',
		"SET vecphi.claims_token = '$b_token_lit';"),
	qr/^42501: /,
	'also for a superuser');
like(
	VecphiCheck::error_of($node, 'postgres',
		"ALTER ROLE regress_par_app SET vecphi.claims_token = '$b_token_lit';"),
	qr/^42501: /,
	'ALTER ROLE ... SET vecphi.claims_token is refused');
unlike(
	VecphiCheck::error_of($node, 'postgres',
		"ALTER SYSTEM SET vecphi.claims_token = '$b_token_lit';"),
	qr/^no error$/,
	'ALTER SYSTEM SET vecphi.claims_token is refused');
{
	# As a connection option: the connection is refused, or at least the
	# setting and its claims are.
	local $ENV{PGOPTIONS} = "-c vecphi.claims_token=$b_token";
	my ($ret, $stdout, $stderr) = $node->psql(
		'postgres',
		app_sql("$parallel\nSELECT coalesce(vecphi.tenant(), 'none') || ' ' || count(*) FROM big;"));
	ok( $ret != 0 || $stdout eq 'none 0',
		"a token in the connection options gives no claims (exit $ret, \"$stdout\")");
	like($stderr, qr/vecphi\.claims_token can only be set by vecphi\.set_claims\(\)/,
		'and the refusal is reported');
}
# A function's SET clause.
like(
	app_error(
		"CREATE FUNCTION par_forge() RETURNS text LANGUAGE sql SET vecphi.claims_token = '$b_token_lit' AS 'SELECT vecphi.tenant()';"
	),
	qr/^42501: /,
	'a function cannot SET vecphi.claims_token to a token');

# ---------------------------------------------------------------------------
# The carrier follows the leader's claims, whatever a client does to it:
# before every query the leader sets it to its own claims, so clearing or
# resetting it neither strands the workers nor lets them act on other
# claims.
# ---------------------------------------------------------------------------
is( app("$parallel\nBEGIN;\n$claims{a_clinician}\nSET LOCAL vecphi.claims_token = '';\n"
		  . "SELECT count(vecphi.decrypt(body)) = count(*) FROM big;\nCOMMIT;"),
	't',
	'carrier cleared: the workers still decrypt with the leader\'s claims, protected table');
is( app("$parallel\nBEGIN;\n$claims{a_clinician}\nRESET vecphi.claims_token;\n"
		  . "SELECT count(vecphi.decrypt(body)) = count(*) FROM plain WHERE tenant = 'par_a';\nCOMMIT;"),
	't',
	'carrier reset: the workers still decrypt with the leader\'s claims, unprotected table');
is( app("$parallel\nBEGIN;\n$claims{a_clinician}\nSET LOCAL vecphi.claims_token = '';\n"
		  . "SELECT count(*) FILTER (WHERE tenant <> 'par_a') FROM big;\nCOMMIT;"),
	'0',
	'carrier cleared: still none of par_b\'s rows');
# The leader's claims cleared: nothing anywhere.
is( app("$parallel\nBEGIN;\n$claims{a_clinician}\nDO \$\$BEGIN PERFORM vecphi.clear_claims(); END\$\$;\n"
		  . "SELECT count(*) FROM big;\nCOMMIT;"),
	'0',
	'clear_claims(): no rows in parallel');
like(
	app_error("$parallel\nBEGIN;\n$claims{a_clinician}\nDO \$\$BEGIN PERFORM vecphi.clear_claims(); END\$\$;\n"
		  . "SELECT count(vecphi.decrypt(body)) FROM plain WHERE tenant = 'par_a';"),
	qr/^42501: /,
	'clear_claims(): decrypting in the workers fails');

# Claims the leader dropped must not come back in the workers.  The serial
# run shows what the leader holds; the parallel run must agree with it.
my %dropped = (
	'replaced in a savepoint that rolled back' => "BEGIN;\n$claims{a_clinician}\n"
	  . "SAVEPOINT s;\n$claims{b_clinician}\nROLLBACK TO s;\n",
	'refused token after good claims' => "BEGIN;\n$claims{a_clinician}\n"
	  . "SAVEPOINT s;\nSELECT vecphi.set_claims('x.y.z');\n",
	'refused token, caught in PL/pgSQL' => "BEGIN;\n$claims{a_clinician}\n"
	  . "DO \$\$BEGIN PERFORM vecphi.set_claims('x.y.z'); EXCEPTION WHEN OTHERS THEN NULL; END\$\$;\n",
);
for my $how (sort keys %dropped)
{
	my $prefix = $dropped{$how};
	# (a savepoint whose statement failed is rolled back before going on)
	$prefix .= "ROLLBACK TO s;\n" if $prefix =~ /SAVEPOINT s;\nSELECT vecphi.set_claims\('x\.y\.z'\);\n$/;
	my $query = "SELECT count(vecphi.decrypt(body)) FROM plain WHERE tenant = 'par_a';";
	like(app_final_error("$serial\n$prefix", $query), qr/^42501: no verified claims/,
		"$how: the leader has no claims (serial decryption fails)");
	like(app_final_error("$parallel\n$prefix", $query), qr/^(?:42501|28000): /,
		"$how: parallel workers have none either (parallel decryption fails)");
}

# Claims replaced inside a function that resets the carrier on exit (any
# role may SET it to ''): leader and workers must hold the same claims.
app(qq{CREATE FUNCTION par_switch(tok text) RETURNS text LANGUAGE plpgsql
	SET vecphi.claims_token = '' AS \$\$
	BEGIN PERFORM vecphi.set_claims(tok); RETURN vecphi.tenant(); END \$\$;});
my $switch = "BEGIN;\n$claims{a_clinician}\nSELECT par_switch('$b_token_lit');\n"
  . "SELECT vecphi.tenant() || ' ' || string_agg(DISTINCT tenant, ',') || ' ' || count(*) FROM plain WHERE tenant = vecphi.tenant();\nCOMMIT;";
my $switch_serial = app("$serial\n$switch");
my $switch_parallel = app("$parallel\n$switch");
is($switch_serial, "par_b\npar_b par_b 3000", 'claims switched in a function: the leader holds par_b');
is($switch_parallel, $switch_serial, 'and the parallel workers hold the same claims as the leader');

# ---------------------------------------------------------------------------
# Pooling: one connection, one transaction after another.
# ---------------------------------------------------------------------------
my $line = q{SELECT pg_backend_pid() AS pid, coalesce(vecphi.tenant(), 'none') || ' ' || count(*) || ' '
	|| count(*) FILTER (WHERE tenant IS DISTINCT FROM vecphi.tenant()) AS state FROM big \\gset
\\echo :pid :state};
my $pooled = app(
	qq{$parallel
BEGIN;
$claims{a_clinician}
$line
COMMIT;
$line
BEGIN;
$claims{b_clinician}
$line
ROLLBACK;
BEGIN;
$line
COMMIT;
BEGIN;
$claims{a_billing}
$line
COMMIT AND CHAIN;
$line
COMMIT;
$line
});
my @pooled = split /\n/, $pooled;
my %pids = map { (split / /)[0] => 1 } @pooled;
is(scalar(keys %pids), 1, 'pooling: all transactions ran on one connection (one backend)');
is( join('; ', map { s/^\d+ //r } @pooled),
	'par_a 2400 0; none 0 0; par_b 2400 0; none 0 0; par_a 600 0; none 0 0; none 0 0',
	'pooling: each transaction sees its own claims only, never the previous transaction\'s');
# The next transaction cannot decrypt in workers with the claims of the
# previous one either.
like(
	app_error("$parallel\nBEGIN;\n$claims{a_clinician}\nSELECT count(*) FROM plain;\nCOMMIT;\n"
		  . "SELECT count(vecphi.decrypt(body)) FROM plain WHERE tenant = 'par_a';"),
	qr/^42501: no verified claims/,
	'next transaction, parallel: no claims left for the workers');

# ---------------------------------------------------------------------------
# Another session of the same database role (the next client of the pool,
# another tenant's) must not be able to pick up a claimant's token: a
# token passed as a literal is in pg_stat_activity.query for every session
# of the role while its transaction is open.
# ---------------------------------------------------------------------------
my $a_token = VecphiTest::token(tenant => 'par_a', role => 'clinician', sub => 'dr_a');
(my $a_token_lit = $a_token) =~ s/'/''/g;
my $victim = $node->background_psql('postgres', extra_params => [ '-U', 'regress_par_app' ]);
$victim->query_safe('BEGIN');
$victim->query_safe("SELECT vecphi.set_claims('$a_token_lit')");
my $harvest = $node->safe_psql(
	'postgres', q{
	BEGIN;
	DO $$
	DECLARE
		stolen text;
	BEGIN
		SELECT substring(query FROM 'set_claims\(''([A-Za-z0-9_.-]+)''\)') INTO stolen
		FROM pg_stat_activity
		WHERE usename = current_user AND pid <> pg_backend_pid() AND query LIKE '%set_claims(%'
		LIMIT 1;
		PERFORM vecphi.set_claims(stolen);
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END
	$$;
	SELECT coalesce(vecphi.tenant(), 'none') || ' ' || count(*) FROM big;
	COMMIT;
},
	extra_params => [ '-U', 'regress_par_app' ]);
is($harvest, 'none 0',
	'another session of the same role cannot take over a claimant\'s token from pg_stat_activity');
$victim->query_safe('COMMIT');
$victim->quit;

$node->stop;
done_testing();
