# vecphi: query vectors as drivers send them (issue #15), through libpq's
# extended protocol, with auto_explain logging every plan verbosely.
#
# A small libpq client (test/lib/qv_libpq_client.py, ctypes: no driver package)
# sends the query vector of "ORDER BY emb <-> $1 LIMIT 5" as float8[] and
# real[] in text and binary, as evector_query in text and in pgvector's
# binary layout, and untyped '[..]' (an evector), each in an unnamed
# statement and a server-side prepared one (custom, then generic plans).
# Every form must use the ehnsw index and return the exact nearest rows;
# EXPLAIN VERBOSE through the protocol must not show the values.  Bad
# input (a raw Float32Array as evector, short or NaN binary, wrong
# dimension, NULL, NaN, infinity, too long, 2-D, text[], an evector_query
# into an evector column) gets its SQLSTATE and writes nothing.  Last, the
# server log, where auto_explain (log_verbose) printed every plan, holds
# none of the query's values.  (Statement logging is off: with
# log_statement or log_min_duration_statement the core logs bind
# parameters, plaintext included, unless log_parameter_max_length = 0;
# docs/security.md says so.)
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiTest;

my $node = VecphiTest::new_node('queryvec');
# auto_explain is contrib: a server built without it runs the rest.
my $has_auto_explain = -f $node->config_data('--pkglibdir') . '/auto_explain.so';
$node->append_conf('postgresql.conf', q{
session_preload_libraries = 'auto_explain'
auto_explain.log_min_duration = 0
auto_explain.log_verbose = on
auto_explain.log_nested_statements = on
}) if $has_auto_explain;
$node->append_conf(
	'postgresql.conf', q{
log_error_verbosity = verbose
log_statement = none
log_parameter_max_length = 0
log_parameter_max_length_on_error = 0
});
$node->start;

my $claims = VecphiTest::claims_sql(tenant => 'qv_a', role => 'clinician', sub => 'dr_qv');
my $claims_b = VecphiTest::claims_sql(tenant => 'qv_b', role => 'clinician', sub => 'dr_qvb');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('qv_a');
	SELECT vecphi.create_tenant('qv_b');
	CREATE TABLE qv (id int PRIMARY KEY, tenant text NOT NULL, emb evector(3));
	BEGIN; $claims
	INSERT INTO qv SELECT i, 'qv_a', format('[%s,%s,%s]', i % 7 * 0.3 + i * 0.001,
		(i / 7) % 7 * 0.3 + i * 0.0007, i % 3 * 0.2)::evector FROM generate_series(1, 200) i;
	COMMIT;
	BEGIN; $claims_b
	INSERT INTO qv SELECT i, 'qv_b', format('[%s,%s,%s]', i % 7 * 0.3, (i / 7) % 7 * 0.3, 0.4)::evector
		FROM generate_series(1001, 1100) i;
	COMMIT;
	CREATE INDEX qv_l2 ON qv USING ehnsw (emb evector_l2_ops);
});

my $token = VecphiTest::token(tenant => 'qv_a', role => 'clinician', sub => 'dr_qv');
my ($stdout, $stderr);
my $ok = IPC::Run::run(
	[ 'python3', "$FindBin::RealBin/../lib/qv_libpq_client.py", $node->connstr('postgres'), $token ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'the libpq client ran') or diag($stderr);
note($stdout);
my %r = map { /^(\w+): (.*)$/ ? ($1, $2) : () } split /\n/, $stdout;

like($r{exact}, qr/^\d+(,\d+){4}$/, 'the exact search found 5 rows');
for my $form (qw(float8_text float8_binary float4_text float4_binary query_text query_binary untyped_text))
{
	is($r{$form}, 'same=True index=True shows_values=False',
		"$form: index scan, exact rows, no values in EXPLAIN VERBOSE");
	is($r{"${form}_prepared"}, 'ok same=True',
		"$form: prepared statement, custom and generic plans, exact rows");
}
for my $form (qw(float8_text float4_binary query_binary))
{
	is($r{"${form}_generic"}, 'index=True same=True', "$form: forced generic plan uses the index");
}
is($r{float32array_as_evector}, 'ERROR 22P03', 'a raw Float32Array as evector is 22P03');
is($r{pgvector_binary_as_evector}, 'ERROR 22P03', 'pgvector binary as evector is 22P03');
is($r{query_binary_short}, 'ERROR 22P03', 'short binary evector_query is 22P03');
is($r{query_binary_nan}, 'ERROR 22000', 'NaN in binary evector_query is 22000');
is($r{wrong_dimension}, 'ERROR 22000', 'a wrong dimension is 22000');
is($r{null_element}, 'ERROR 22004', 'a NULL element is 22004');
is($r{nan_element}, 'ERROR 22000', 'NaN is 22000');
is($r{infinite_element}, 'ERROR 22000', 'infinity is 22000');
is($r{too_long}, 'ERROR 22000', 'too many dimensions is 22000');
is($r{two_dimensional}, 'ERROR 22000', 'a 2-D array is 22000');
is($r{text_array}, 'ERROR 42883', 'text[] has no operator (42883)');
is($r{insert_query}, 'ERROR 42804', 'an evector_query does not go into an evector column');
is($r{rows}, '300', 'nothing was written');

# auto_explain logged the plans (with the plan's constants printed by the
# types' output functions) and none of the query's values.
my $log = slurp_file($node->logfile);
SKIP:
{
	skip 'auto_explain is not installed in this PostgreSQL', 2 unless $has_auto_explain;
	like($log, qr/Index Scan using qv_l2/, 'auto_explain logged the index scans');
	like($log, qr/'evector_query\(3 dimensions\)'::evector_query/,
		'custom plans show the evector_query constant by its dimensions');
}
unlike($log, qr/0\.87654|1\.98765|0\.45678/, 'the log holds none of the query vector values');
ok(index($log, $token) < 0, 'the log does not hold the token');

# ALTER EXTENSION UPDATE from the released 0.1.0 brings the same objects.
$node->safe_psql('postgres', 'CREATE DATABASE upd');
$node->safe_psql('upd', "CREATE EXTENSION vecphi VERSION '0.1.0'");
is($node->safe_psql('upd', "SELECT to_regtype('evector_query') IS NULL"), 't', '0.1.0 has no evector_query');
$node->safe_psql('upd', 'ALTER EXTENSION vecphi UPDATE');
is( $node->safe_psql(
		'upd', q{SELECT '[1,2,3]'::evector_query,
		(SELECT count(*) FROM pg_amop WHERE amoprighttype = 'evector_query'::regtype),
		(SELECT count(*) FROM pg_cast WHERE casttarget = 'evector_query'::regtype)}),
	'evector_query(3 dimensions)|3|6',
	'after ALTER EXTENSION UPDATE: the type, its ehnsw members and casts');

$node->stop;
done_testing();
