# vecphi: an ehnsw index under concurrent inserts, searches, deletes and
# VACUUM.
#
# A table with 500 rows of each of two tenants and an ehnsw index.  Then,
# for 12 seconds and at the same time:
#
#  - pgbench, 4 clients, runs a mix of scripts: inserts of 5 rows (per
#    tenant, under that tenant's claims) and searches (ORDER BY <-> LIMIT
#    10 with the index forced, per tenant, then the same with a filter
#    that keeps a quarter of the rows, LIMIT 5, which makes the scan go on
#    past its first ef_search rows).  A search fails (with an error that
#    shows its result) unless it returns exactly LIMIT rows, all of its
#    own tenant (and matching the filter);
#  - another pgbench, 1 client, deletes 20 random rows among those the
#    first one inserted (even ids only, so that some stay), and runs VACUUM
#    on the table, over and over.
#
# Both must finish without any failed transaction, after which
# vecphi.index_check passes, every row is found by the index with its own
# vector, and a last VACUUM and index_check pass too.
#
# Then, deterministically, what the run above hits by chance: a search
# while VACUUM is under way, after it has marked the tenant's entry point
# deleted and before it has named a new one.  The rows of the tenant's
# elements on the entry point's level (found by reading the index pages
# with pageinspect) are deleted and VACUUM runs slowly (cost-based delay)
# in another session; once they are marked deleted on their pages, and
# again once the entry point's item is removed from its page, while the
# metapage still names it, a search must still return its LIMIT.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use VecphiCheck;
use VecphiTest;

my $dims = 16;
my $seconds = 12;
my %token = map {
	$_ => VecphiTest::token(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(t_a t_b);
my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(t_a t_b);

my $node = VecphiTest::new_node('concurrency');
$node->append_conf('postgresql.conf', "autovacuum = off\n");
$node->start;
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t_a');
	SELECT vecphi.create_tenant('t_b');
	CREATE TABLE docs (id bigserial PRIMARY KEY, tenant text NOT NULL, emb evector($dims));
	-- A random vector; g only makes the call depend on the row.
	CREATE FUNCTION rvec(g bigint) RETURNS real[] LANGUAGE sql VOLATILE AS
		\$\$ SELECT array_agg((random() * 10)::real) FROM generate_series(1, $dims) \$\$;
});
for my $tenant (qw(t_a t_b))
{
	$node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{$tenant}
		INSERT INTO docs (tenant, emb) SELECT '$tenant', rvec(g) FROM generate_series(1, 500) g;
		COMMIT;
	});
}
$node->safe_psql('postgres', 'CREATE INDEX docs_emb ON docs USING ehnsw (emb)');
is($node->safe_psql('postgres', "SELECT vecphi.index_check('docs_emb')"),
	't', 'index_check passes before the run');
my $first_id = $node->safe_psql('postgres', 'SELECT max(id) FROM docs');

# ---- the pgbench scripts ----
my $dir = $node->basedir;
my %scripts;
for my $tenant (qw(t_a t_b))
{
	$scripts{"insert_$tenant"} = qq{BEGIN;
SELECT vecphi.set_claims('$token{$tenant}');
INSERT INTO docs (tenant, emb) SELECT '$tenant', rvec(g) FROM generate_series(1, 5) g;
COMMIT;
};
	# A wrong result fails the transaction with an error that shows it
	# ("invalid input syntax for type integer: "wrong result: ...").
	my $check = sub {
		my ($limit, $cond) = @_;
		return "CASE WHEN count(*) = $limit AND bool_and($cond) THEN 0 ELSE "
		  . "('wrong result: ' || count(*) || ' rows: ' || coalesce(string_agg(id || ' ' || tenant, ', '), ''))::int END";
	};
	$scripts{"search_$tenant"} = qq{BEGIN;
SELECT vecphi.set_claims('$token{$tenant}');
SET LOCAL enable_seqscan = off;
SELECT @{[ $check->(10, "tenant = '$tenant'") ]} FROM (SELECT id, tenant FROM docs ORDER BY emb <-> (SELECT rvec(0)::evector) LIMIT 10) s;
SELECT @{[ $check->(5, "tenant = '$tenant' AND id % 4 = 1") ]} FROM (SELECT id, tenant FROM docs WHERE id % 4 = 1 ORDER BY emb <-> (SELECT rvec(0)::evector) LIMIT 5) s;
COMMIT;
};
}
$scripts{vacuum} = qq{DELETE FROM docs WHERE id IN (SELECT id FROM docs WHERE id > $first_id AND id % 2 = 0 ORDER BY random() LIMIT 20);
VACUUM docs;
};
for my $name (keys %scripts)
{
	open my $fh, '>', "$dir/$name.sql" or die "could not write $dir/$name.sql: $!";
	print $fh $scripts{$name};
	close $fh;
}

# The plan of a search uses the index.
like(
	$node->safe_psql(
		'postgres', qq{
	BEGIN;
	$claims{t_a}
	SET LOCAL enable_seqscan = off;
	EXPLAIN (COSTS OFF) SELECT id FROM docs ORDER BY emb <-> (SELECT rvec(0)::evector) LIMIT 10;
	COMMIT;}),
	qr/Index Scan using docs_emb on docs/,
	'the search script\'s query uses the ehnsw index');

# ---- run both pgbench at once ----
my @conn = ('-h', $node->host, '-p', $node->port, '-n', '-T', $seconds, 'postgres');
my ($out1, $err1, $out2, $err2) = ('', '', '', '');
my $timeout = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
my $h1 = IPC::Run::start(
	[
		'pgbench', '-c', 4, '-j', 2,
		(map { ('-f', "$dir/$_.sql\@3") } qw(insert_t_a insert_t_b)),
		(map { ('-f', "$dir/$_.sql\@2") } qw(search_t_a search_t_b)),
		@conn
	],
	'>', \$out1, '2>', \$err1, $timeout);
my $h2 = IPC::Run::start([ 'pgbench', '-c', 1, '-f', "$dir/vacuum.sql", @conn ],
	'>', \$out2, '2>', \$err2, $timeout);
$h1->finish;
$h2->finish;
my ($rc1, $rc2) = ($h1->result(0), $h2->result(0));
note "pgbench (inserts, searches):\n$out1$err1";
note "pgbench (deletes, VACUUM):\n$out2$err2";

is($rc1, 0, 'pgbench of inserts and searches exits with 0');
is($rc2, 0, 'pgbench of deletes and VACUUM exits with 0');
like($out1, qr/number of failed transactions: 0 /, 'no insert or search failed');
like($out2, qr/number of failed transactions: 0 /, 'no delete or VACUUM failed');
my ($tx1) = $out1 =~ /number of transactions actually processed: (\d+)/;
my ($tx2) = $out2 =~ /number of transactions actually processed: (\d+)/;
cmp_ok($tx1 // 0, '>', 0, 'inserts and searches ran (' . ($tx1 // 0) . ' transactions)');
cmp_ok($tx2 // 0, '>', 0, 'deletes and VACUUM ran (' . ($tx2 // 0) . ' rounds)');
unlike($err1 . $err2, qr/ERROR|aborted/i, 'no errors reported');

# ---- afterwards ----
is(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.index_check('docs_emb')"),
	'no error', 'index_check passes after the run');

my $counts = $node->safe_psql('postgres',
	"SELECT count(*) FILTER (WHERE id > $first_id) || ' ' || count(*) FROM docs");
note "rows inserted during the run and kept, all rows: $counts";

# Every row, searched with its own vector, comes first (or a row at
# distance 0), under its tenant's claims.
for my $pass ('after the run', 'after a last VACUUM')
{
	if ($pass eq 'after a last VACUUM')
	{
		$node->safe_psql('postgres', 'VACUUM docs');
		is(VecphiCheck::error_of($node, 'postgres', "SELECT vecphi.index_check('docs_emb')"),
			'no error', 'index_check passes after a last VACUUM');
	}
	for my $tenant (qw(t_a t_b))
	{
		my ($rows, $found) = split / /, $node->safe_psql(
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
		cmp_ok($rows, '>', 500, "$pass, $tenant: $rows rows");
		is($found, $rows, "$pass, $tenant: every row is found by the index with its own vector");
	}
}

# ---- a search while VACUUM replaces the entry point ----
SKIP:
{
	skip 'pageinspect is not available', 6
	  unless $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_available_extensions WHERE name = 'pageinspect'") eq '1';
	$node->safe_psql('postgres', 'CREATE EXTENSION pageinspect');

	my $tenant = 't_b';
	my $tenant_id = $node->safe_psql('postgres',
		"SELECT tenant_id FROM vecphi.tenants WHERE tenant = '$tenant'");
	my $entry = entry_point($tenant_id);
	my @top = grep { $_->{tenant} == $tenant_id && !$_->{deleted} && $_->{level} == $entry->{level} }
	  index_elements();
	note "entry point of $tenant: ($entry->{blkno},$entry->{offno}) on level $entry->{level}; "
	  . scalar(@top) . ' live element(s) on that level';
	my $ctids = join(', ', map { "'$_->{heap}'" } @top);
	is($node->safe_psql('postgres', "DELETE FROM docs WHERE ctid IN ($ctids) RETURNING tenant"),
		join("\n", ($tenant) x @top), "deleted the rows of $tenant\'s top-level elements");

	my $vacuum = $node->background_psql('postgres');
	$vacuum->query_until(
		qr/vacuum started/, q{
		SET vacuum_cost_delay = '10ms';
		SET vacuum_cost_limit = 1;
		\echo vacuum started
		VACUUM (INDEX_CLEANUP ON) docs;
		\echo vacuum done
	});

	# Is the old entry point still the tenant's in the metapage?
	my $in_window = sub {
		my $now = entry_point($tenant_id);
		return $now->{blkno} == $entry->{blkno} && $now->{offno} == $entry->{offno};
	};
	# Wait until every top-level element is marked deleted (or already
	# removed from its page), or at most until VACUUM named a new entry.
	my $all = sub {
		my ($want) = @_;
		for my $t (@top)
		{
			my ($e) = grep { $_->{offno} == $t->{offno} } index_elements($t->{blkno});
			my $state = !$e ? 'removed' : $e->{deleted} ? 'deleted' : 'live';
			return 0 if $state eq 'live' || ($want eq 'removed' && $state ne 'removed');
		}
		return 1;
	};
	my $waited = 0;
	usleep(100_000) until $all->('deleted') || $waited++ > 1000;
	ok($all->('deleted'), 'VACUUM marked the top-level elements deleted');
	ok(!$in_window->(),
		'by then the metapage names a new entry point (VACUUM moves it before deleting)');
	is(search_result($tenant), 10, 'a search at that point returns its LIMIT 10');

	# VACUUM then removes the deleted items from their pages.
	my $entry_removed = sub {
		return !grep { $_->{offno} == $entry->{offno} } index_elements($entry->{blkno});
	};
	$waited = 0;
	usleep(50_000) until $entry_removed->() || $waited++ > 2000;
	ok($entry_removed->(), 'VACUUM removed the old entry point\'s item');
	is(search_result($tenant), 10,
		'a search once the old entry point\'s item is removed returns its LIMIT 10');

	$vacuum->query_until(qr/vacuum done/, '');
	$vacuum->quit;
	ok(!$in_window->(), 'after VACUUM: the tenant still has the new entry point');
	is(search_result($tenant), 10, 'after VACUUM: a search returns its LIMIT 10');
}

$node->stop;
done_testing();

# How many rows a LIMIT 10 search of a tenant returns, or its error.
sub search_result
{
	my ($tenant) = @_;
	my ($ret, $out, $err) = $node->psql(
		'postgres', qq{
		BEGIN;
		$claims{$tenant}
		SET LOCAL enable_seqscan = off;
		SELECT count(*) FROM (SELECT id FROM docs ORDER BY emb <-> (SELECT rvec(0)::evector) LIMIT 10) s;
		COMMIT;
	}, on_error_stop => 1);
	return $ret == 0 ? $out : "psql exit $ret: $err";
}

# A page of the index as pageinspect reads it (from shared buffers).
sub raw_page
{
	my ($blkno) = @_;
	return pack('H*',
		$node->safe_psql('postgres', "SELECT encode(get_raw_page('docs_emb', $blkno), 'hex')"));
}

# The entry point of a tenant in the metapage (layout in src/ehnsw/ehnsw.h:
# after the 24-byte page header, magic, version, dims, m, ef_construction,
# metric, insert block, ntenants, then 12-byte entries).
sub entry_point
{
	my ($tenant_id) = @_;
	my $meta = raw_page(0);
	my $ntenants = unpack('L', substr($meta, 24 + 24, 4));
	for my $i (0 .. $ntenants - 1)
	{
		my ($tid, $blkno, $offno, $level) = unpack('L L S S', substr($meta, 24 + 28 + 12 * $i, 12));
		return { blkno => $blkno, offno => $offno, level => $level } if $tid == $tenant_id;
	}
	return { blkno => -1, offno => -1, level => -1 };
}

# The elements of the index (of one block, if given): location, level,
# deleted flag, tenant and heap ctid.
sub index_elements
{
	my ($only) = @_;
	my $nblocks = $node->safe_psql('postgres', "SELECT pg_relation_size('docs_emb') / 8192");
	my @elements;
	for my $blkno (defined $only ? ($only) : (1 .. $nblocks - 1))
	{
		my $page = raw_page($blkno);
		my $lower = unpack('S', substr($page, 12, 2));
		for my $offno (1 .. ($lower - 24) / 4)
		{
			my $lp = unpack('L', substr($page, 24 + 4 * ($offno - 1), 4));
			next unless (($lp >> 15) & 3) == 1;    # LP_NORMAL
			my ($level, $deleted, $nslots, $tenant, $bhi, $blo, $posid) =
			  unpack('C C S L S S S', substr($page, $lp & 0x7fff, 14));
			push @elements,
			  {
				blkno => $blkno,
				offno => $offno,
				level => $level,
				deleted => $deleted,
				tenant => $tenant,
				heap => '(' . (($bhi << 16) | $blo) . ",$posid)"
			  };
		}
	}
	return @elements;
}
