# vecphi: an ehnsw index survives a crash (immediate shutdown) in the
# middle of inserts.
#
# Rows of two tenants are committed in small transactions.  Then one
# session starts inserting a large number of t_a rows in one transaction
# that never commits, while another commits 200 small t_b transactions one
# after another; once those are done, the large transaction goes on alone
# until the index has grown by another 20 pages, and the server is stopped
# in immediate mode.  After restart (crash recovery):
#
#  - vecphi.index_check passes;
#  - VACUUM of the table works (it reads every index page);
#  - none of the in-flight transaction's rows are visible, all committed
#    ones are;
#  - every committed row is found by the index: searching with a row's own
#    vector returns it first (before and after the VACUUM that removes the
#    in-flight transaction's elements);
#  - a search of each tenant returns only committed rows of that tenant;
#  - new rows can be inserted and found, and index_check and VACUUM still
#    work.
#
# The last WAL of a transaction that has not committed need not have
# reached the disk at a crash, while the pages by which the index file grew
# meanwhile have (relation extension writes them, as zeroes, at once): after
# recovery the index may end in pages that are all zeroes, which it must
# tolerate, as PostgreSQL's own index types do.  wal_writer_delay is raised
# so that the WAL writer does not shrink that window to its default 200 ms.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $dims = 32;
my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(t_a t_b);

my $node = VecphiTest::new_node('crash');
$node->append_conf('postgresql.conf', "wal_writer_delay = '10s'\n");
$node->start;
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t_a');
	SELECT vecphi.create_tenant('t_b');
	CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector($dims))
		WITH (autovacuum_enabled = off);
	-- Row g's vector: pseudo-random, different for every g.
	CREATE FUNCTION vec(g int) RETURNS real[] LANGUAGE sql IMMUTABLE AS
		\$\$ SELECT array_agg(((hashint4(g * 64 + j) & 65535) / 6553.6)::real ORDER BY j)
			FROM generate_series(1, $dims) j \$\$;
	CREATE INDEX docs_emb ON docs USING ehnsw (emb);
});

# Committed rows: ids 1..400 (t_a, odd ids; t_b, even ids), 20 at a time.
for my $batch (0 .. 19)
{
	my ($lo, $hi) = ($batch * 20 + 1, $batch * 20 + 20);
	$node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{t_a}
		INSERT INTO docs SELECT g, 't_a', vec(g) FROM generate_series($lo, $hi) g WHERE g % 2 = 1;
		COMMIT;
		BEGIN;
		$claims{t_b}
		INSERT INTO docs SELECT g, 't_b', vec(g) FROM generate_series($lo, $hi) g WHERE g % 2 = 0;
		COMMIT;
	});
}
$node->safe_psql('postgres', 'CHECKPOINT');
my $committed_pages =
  $node->safe_psql('postgres', "SELECT pg_relation_size('docs_emb') / 8192");
note "index pages after the committed phase: $committed_pages";

# ---- in flight: a large transaction, and small ones beside it ----
my $big = $node->background_psql('postgres', on_error_stop => 0);
$big->query_until(
	qr/big started/, qq{
	BEGIN;
	$claims{t_a}
	\\echo big started
	INSERT INTO docs SELECT g, 't_a', vec(g) FROM generate_series(100001, 1000000) g;
	COMMIT;
});
my $token_b = VecphiTest::token(tenant => 't_b', role => 'clinician', sub => 'dr_t_b');
my $small = $node->background_psql('postgres', on_error_stop => 0);
$small->query_until(
	qr/small done/, qq{
	DO \$\$BEGIN
		FOR i IN 10001 .. 10200 LOOP
			PERFORM vecphi.set_claims('$token_b');
			INSERT INTO docs VALUES (i, 't_b', vec(i));
			COMMIT;
		END LOOP;
	END\$\$;
	\\echo small done
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM docs WHERE id > 10000'),
	'200', 'the 200 small transactions committed');
my $pages_small = $node->safe_psql('postgres', "SELECT pg_relation_size('docs_emb') / 8192");

# The large transaction goes on alone for 20 more pages of the index.
$node->poll_query_until('postgres',
	"SELECT pg_relation_size('docs_emb') / 8192 >= $pages_small + 20")
  or die 'the large transaction did not get under way';
note 'index pages: after the committed phase ' . $committed_pages
  . ", after the small transactions $pages_small, at the crash "
  . $node->safe_psql('postgres', "SELECT pg_relation_size('docs_emb') / 8192");

$node->stop('immediate');
eval { $big->quit; };
eval { $small->quit; };
$node->start;

# ---- after crash recovery ----
is($node->safe_psql('postgres', 'SELECT count(*) FROM docs WHERE id > 100000'),
	'0', 'no row of the in-flight transaction is visible');
is($node->safe_psql('postgres', 'SELECT count(*) FROM docs'),
	'600', 'all 600 committed rows are');
note 'index pages after recovery: '
  . $node->safe_psql('postgres', "SELECT pg_relation_size('docs_emb') / 8192");
is(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.index_check('docs_emb')"),
	'no error', 'index_check passes after crash recovery');

# Every visible row of the tenant, searched with its own vector, comes
# first (or a row at distance 0).  The lateral subquery is an index scan,
# rescanned for each row.
sub self_found
{
	my ($tenant) = @_;
	return $node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{$tenant}
		SET LOCAL enable_seqscan = off;
		SELECT count(*) || ' ' || count(*) FILTER (WHERE n.d = 0)
		FROM docs r CROSS JOIN LATERAL
			(SELECT d.emb <-> r.emb AS d FROM docs d ORDER BY d.emb <-> r.emb LIMIT 1) n
		WHERE r.tenant = '$tenant';
		COMMIT;
	});
}

# The ids of a search of 100 rows, under a tenant's claims.
sub search_ids
{
	my ($tenant, $g, $limit) = @_;
	return VecphiCheck::index_search_ids($node, $claims{$tenant},
		"SELECT vec($g)::evector", $limit);
}

my %rows = (t_a => 200, t_b => 400);
for my $when ('before VACUUM', 'after VACUUM')
{
	if ($when eq 'after VACUUM')
	{
		is(VecphiCheck::error_of($node, 'postgres', 'VACUUM docs'),
			'no error', 'VACUUM of the table works after crash recovery');
		is(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.index_check('docs_emb')"),
			'no error', 'index_check passes after the VACUUM');
	}
	for my $tenant (qw(t_a t_b))
	{
		is(self_found($tenant), "$rows{$tenant} $rows{$tenant}",
			"$when, $tenant: every committed row is found by the index with its own vector");

		# A broad search returns only committed rows of the tenant.
		my $ids = search_ids($tenant, 7, 100);
		my @ids = split /,/, $ids;
		is(scalar(@ids), 100, "$when, $tenant: a search for 100 rows returns 100");
		is( $node->safe_psql('postgres',
				"SELECT count(*) FROM docs WHERE tenant = '$tenant' AND id IN ($ids)"),
			100,
			"$when, $tenant: all of them committed rows of $tenant");
	}
}

# The index keeps working.
$node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims{t_a}
	INSERT INTO docs SELECT g, 't_a', vec(g) FROM generate_series(2000001, 2000100) g;
	COMMIT;
});
is(search_ids('t_a', 2000050, 1), '2000050', 'a row inserted after recovery is found');
is(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.index_check('docs_emb')"),
	'no error', 'index_check passes after more inserts');
is(VecphiCheck::error_of($node, 'postgres', 'VACUUM docs'),
	'no error', 'VACUUM works after more inserts');

$node->stop;
done_testing();
