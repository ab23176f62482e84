# vecphi on Citus: searches through the coordinator and what every node
# records of them (issue #16: "cross-shard ORDER BY ... LIMIT equals exact
# results", "audit records with row ids for every scan").
#
# A protected table distributed by id over 4 shards on two workers, two
# tenants, an ehnsw index on every shard.  Through the coordinator, as an
# application role with claims:
#  - ORDER BY emb <-> q LIMIT 10 with q an evector_query literal (which
#    Citus deparses into each shard's query: on Citus its text form is the
#    vector sealed under the claimant's key), a float8[] parameter of a
#    prepared statement (custom and generic plans) and an evector envelope
#    all return the exact answer (an exact scan of the same rows), only the
#    claimant tenant's rows;
#  - EXPLAIN VERBOSE shows no value of the query vector;
#  - every worker that served the search recorded its shard scans, each
#    with the distributed table's name, the shard, the distributed
#    transaction and the coordinator backend's global PID, and the row ids
#    it returned; vecphi.cluster_audit_log() on the coordinator joins them
#    to the search by that global PID, and their row ids include the ten
#    rows returned.
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

my $dims = 8;
my $c = VecphiCitus::new_cluster('c187', workers => 2);
my $coord = $c->{coordinator};

$coord->safe_psql(
	'postgres', qq{
	SELECT vecphi.create_tenant('t_a');
	SELECT vecphi.create_tenant('t_b');
	CREATE ROLE app LOGIN;
	CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector($dims));
	SELECT create_distributed_table('docs', 'id');
	SELECT vecphi.protect('docs', 'tenant');
	GRANT SELECT, INSERT ON docs TO app;
	CREATE INDEX docs_emb ON docs USING ehnsw (emb);
	CREATE FUNCTION vec(g int) RETURNS text LANGUAGE sql IMMUTABLE AS
		\$\$ SELECT '[' || string_agg((((hashint4(g * 64 + j) & 65535) / 6553.6)::real)::text, ',' ORDER BY j) || ']'
			FROM generate_series(1, $dims) j \$\$;
});
my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(t_a t_b);
for my $t (qw(t_a t_b))
{
	my $lo = $t eq 't_a' ? 1 : 1001;
	# Multi-row VALUES: Citus sends INSERT ... SELECT to the shards with
	# COPY, which row-level security refuses (see docs/citus.md).
	my $values = $coord->safe_psql('postgres',
		"SELECT string_agg(format('(%s, %L, %L)', g, '$t', vec(g)), ',') FROM generate_series($lo, $lo + 199) g");
	$coord->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{$t}
		INSERT INTO docs VALUES $values;
		COMMIT;}, extra_params => [ '-U', 'app' ]);
}
is($coord->safe_psql('postgres', 'SELECT count(*) FROM docs'), '400', '400 rows in the distributed table');

my $q = $coord->safe_psql('postgres', 'SELECT vec(5000)');
my @qvals = $q =~ /([0-9.]+)/g;

# As app with t_a's claims: what sql returns (one line).  The shards are
# small (about 50 rows of a tenant each): without enable_seqscan = off
# (sent to the workers with the transaction) their planners would scan
# them rather than use the index.
sub as_a
{
	my ($sql) = @_;
	return $coord->safe_psql(
		'postgres', qq{
		BEGIN;
		SET LOCAL citus.propagate_set_commands = 'local';
		SET LOCAL enable_seqscan = off;
		$claims{t_a}
		$sql
		COMMIT;}, extra_params => [ '-U', 'app' ]);
}

# The exact answer: an expression the index cannot serve, so every shard
# scans all its rows.
my $exact = as_a(qq{
	SELECT string_agg(id::text, ',' ORDER BY d, id) FROM
		(SELECT id, (emb <-> '$q'::evector_query) + 0 AS d FROM docs
		 ORDER BY 2, 1 LIMIT 10) x;});
like($exact, qr/^\d+(,\d+){9}$/, 'the exact answer has ten rows');
ok(!grep({ $_ > 200 } split /,/, $exact), 'all of them the claimant tenant\'s');

my $ann_literal = as_a(qq{
	SELECT string_agg(id::text, ',') FROM
		(SELECT id FROM docs ORDER BY emb <-> '$q'::evector_query LIMIT 10) x;});
is($ann_literal, $exact, 'an evector_query literal: the index search through the coordinator equals the exact answer');

my $ann_envelope = as_a(qq{
	SELECT string_agg(id::text, ',') FROM
		(SELECT id FROM docs ORDER BY emb <-> '$q'::evector LIMIT 10) x;});
is($ann_envelope, $exact, 'an evector (encrypted) query vector: the same');

my $farray = '{' . join(',', @qvals) . '}';
my $prepared = as_a(qq{
	PREPARE s(float8[]) AS SELECT string_agg(id::text, ',') FROM
		(SELECT id FROM docs ORDER BY emb <-> \$1 LIMIT 10) x;
	EXECUTE s('$farray'); EXECUTE s('$farray'); EXECUTE s('$farray');
	EXECUTE s('$farray'); EXECUTE s('$farray'); EXECUTE s('$farray');
	EXECUTE s('$farray');});
is_deeply([ split /\n/, $prepared ], [ ($exact) x 7 ],
	'a float8[] parameter of a prepared statement (custom and generic plans): the same, every time');

my $plan = as_a(qq{EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM docs ORDER BY emb <-> '$q'::evector_query LIMIT 10;});
like($plan, qr/Index Scan using docs_emb_\d+/, 'the shards\' ehnsw indexes serve the search');
my @shown = grep { length($_) >= 4 && index($plan, $_) >= 0 } @qvals;
is(scalar @shown, 0, 'EXPLAIN VERBOSE through the coordinator shows none of the query vector\'s values');

my $b_rows = $coord->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims{t_b}
	SELECT count(*) FILTER (WHERE id <= 200) || ' of ' || count(*) FROM
		(SELECT id FROM docs ORDER BY emb <-> '$q'::evector_query LIMIT 10) x;
	COMMIT;}, extra_params => [ '-U', 'app' ]);
is($b_rows, '0 of 10', 'another tenant\'s claims: ten rows, none of t_a\'s');

# One search in a session whose global PID we know, then what the nodes
# recorded of it.
my $gpid_and_ids = as_a(qq{
	SELECT citus_backend_gpid();
	SELECT string_agg(id::text, ',') FROM
		(SELECT id FROM docs ORDER BY emb <-> '$q'::evector_query LIMIT 10) x;});
my ($gpid, $ids) = split /\n/, $gpid_and_ids;
is($ids, $exact, 'the audited search returns the exact answer');

# Give the audit writers time to commit the records.
my $recorded = q{SELECT count(*) FROM vecphi.cluster_audit_log()
	WHERE citus_gpid = %s AND action = 'index_scan'};
$coord->poll_query_until('postgres', sprintf("SELECT (%s) > 0", sprintf($recorded, $gpid)))
  or die 'no index_scan record of the search reached the audit logs';
my $records = $coord->safe_psql(
	'postgres', qq{
	SELECT nodeid, relation, tenant, subject, rows_returned,
		coalesce(array_length(row_ids, 1), 0), citus_transaction IS NOT NULL,
		detail ~ 'citus: shard [0-9]+, transaction'
	FROM vecphi.cluster_audit_log()
	WHERE citus_gpid = $gpid AND action = 'index_scan'
	ORDER BY nodeid});
my @recs = map { [ split /\|/ ] } split /\n/, $records;
my %nodes = map { $_->[0] => 1 } @recs;
cmp_ok(scalar keys %nodes, '==', 2, 'both workers recorded scans of the search (' . scalar(@recs) . ' records)');
is(scalar(grep { $_->[0] == 1 } @recs), 0, 'the coordinator, which scanned nothing, recorded none');
is(scalar(grep { $_->[1] ne 'public.docs' } @recs), 0, 'every record names the distributed table');
is(scalar(grep { $_->[2] ne 't_a' || $_->[3] ne 'dr_t_a' } @recs), 0,
	'every record carries the claimant\'s tenant and subject (the workers verified the same token)');
is(scalar(grep { $_->[4] != $_->[5] } @recs), 0, 'every record lists as many row ids as rows it returned');
is(scalar(grep { $_->[6] ne 't' || $_->[7] ne 't' } @recs), 0,
	'every record names its shard and the distributed transaction');
my %txns = map { $_ => 1 } split /\n/, $coord->safe_psql(
	'postgres', qq{SELECT DISTINCT citus_transaction FROM vecphi.cluster_audit_log()
	WHERE citus_gpid = $gpid AND action = 'index_scan'});
is(scalar keys %txns, 1, 'one distributed transaction joins the records of both workers');

my %audited = map { $_ => 1 } split /\n/, $coord->safe_psql(
	'postgres', qq{SELECT DISTINCT r FROM vecphi.cluster_audit_log() a, unnest(a.row_ids) r
	WHERE citus_gpid = $gpid AND action = 'index_scan'});
is(scalar(grep { !$audited{$_} } split /,/, $exact), 0,
	'the row ids the workers recorded include every row the search returned');

is( $coord->safe_psql(
		'postgres', q{SELECT bool_and(ok) FROM vecphi.verify_cluster_audit()}),
	't', 'every node\'s audit chain verifies');

VecphiCitus::stop_cluster($c);
done_testing();
