# vecphi: index and key operations survive an immediate shutdown at
# several points, on the primary after crash recovery and on a streaming
# standby that replays the same WAL.
#
# A primary with two tenants streams to a standby made from a base backup
# (with copies of the KEK files, as docs/keys.md says a replica needs).
# The primary is stopped with pg_ctl -m immediate:
#
#  1. during CREATE INDEX, while rows are loaded into the in-memory graph;
#  2. during CREATE INDEX of wide vectors with maintenance_work_mem at its
#     minimum, after the graph was written out and rows are being inserted
#     on disk one by one;
#  3. right after a CREATE INDEX commits, before any checkpoint (the index
#     exists only as full page images in the WAL);
#  4. during inserts: one large transaction that never commits, beside
#     small ones that do;
#  5. during VACUUM, while it is working on the index (slowed down with
#     vacuum_cost_delay so that the stop lands there);
#  6. after rotate_kek and rotate_dek of a tenant, before the transaction
#     commits (also with rows inserted under the new data key); and right
#     after a rotation commits.
#
# After every restart: vecphi.index_check passes on the primary and, once
# it has replayed everything, on the standby; every committed row of each
# tenant is found by the index with its own vector, no uncommitted row is
# visible, and the standby returns exactly the primary's results.  The
# interrupted operation can be run again to completion.
use strict;
use warnings;

use File::Copy qw(copy);
use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $dims = 16;
my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(t_a t_b);

my $primary = VecphiTest::new_node('primary', allows_streaming => 1);
$primary->append_conf('postgresql.conf', "autovacuum = off\n");
$primary->start;
$primary->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('t_a');
	SELECT vecphi.create_tenant('t_b');
});

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
VecphiTest::configure_node($standby);

# The standby's key directory gets copies of the primary's KEK files.
sub copy_keys
{
	my $from = VecphiTest::key_dir($primary);
	my $to = VecphiTest::key_dir($standby);
	for my $f (VecphiCheck::dir_files($from))
	{
		copy("$from/$f", "$to/$f") or die "copy $f: $!";
		chmod 0600, "$to/$f" or die "chmod $f: $!";
	}
	return;
}
copy_keys();
$standby->start;

$primary->safe_psql(
	'postgres', qq{
	CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector($dims));
	CREATE TABLE wide (id int PRIMARY KEY, tenant text NOT NULL, emb evector(512));
	-- Row g's vector: pseudo-random, different for every g.
	CREATE FUNCTION vec(g int, n int DEFAULT $dims) RETURNS real[] LANGUAGE sql IMMUTABLE AS
		\$\$ SELECT array_agg(((hashint4(g * 1024 + j) & 65535) / 6553.6)::real ORDER BY j)
			FROM generate_series(1, n) j \$\$;
});

# Committed rows: t_a has odd ids, t_b even ids.
sub insert_rows
{
	my ($lo, $hi) = @_;
	$primary->safe_psql(
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
	return;
}
insert_rows(1, 1600);
$primary->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims{t_a}
	INSERT INTO wide SELECT g, 't_a', vec(g, 512) FROM generate_series(1, 700) g;
	COMMIT;
});

# Restart the primary after an immediate stop, and quit the sessions the
# stop killed.
sub crash_restart
{
	my ($what, @sessions) = @_;
	$primary->stop('immediate');
	eval { $_->quit; } for @sessions;
	$primary->start;
	note "restarted after an immediate stop $what";
	return;
}

# "found of rows" for the tenant's rows of a table: how many, searched
# with their own vector through the index, come back first (at distance 0).
sub self_found
{
	my ($node, $tenant, $table) = @_;
	return $node->safe_psql(
		'postgres', qq{
		BEGIN;
		$claims{$tenant}
		SET LOCAL enable_seqscan = off;
		SET LOCAL vecphi.ef_search = 100;
		SELECT count(*) FILTER (WHERE n.d = 0) || ' of ' || count(*)
		FROM $table r CROSS JOIN LATERAL
			(SELECT d.emb <-> r.emb AS d FROM $table d ORDER BY d.emb <-> r.emb LIMIT 1) n
		WHERE r.tenant = '$tenant';
		COMMIT;
	});
}

# The ids of 20-row index searches for a few query vectors, one line each.
sub results
{
	my ($node, $tenant, $table) = @_;
	my $sql = "BEGIN;\n$claims{$tenant}\nSET LOCAL enable_seqscan = off;\n";
	for my $g (3, 500, 1001, 7777)
	{
		my $n = $table eq 'wide' ? 512 : $dims;
		$sql .= "SELECT string_agg(id::text, ',') FROM (SELECT id FROM $table "
		  . "ORDER BY emb <-> (SELECT vec($g, $n)::evector) LIMIT 20) s;\n";
	}
	$sql .= "COMMIT;\n";
	return $node->safe_psql('postgres', $sql);
}

# The checks after each restart, for the ehnsw indexes named in @indexes.
sub check_both
{
	my ($label, $table, @indexes) = @_;
	my %rows = map {
		$_ => $primary->safe_psql('postgres',
			"SELECT count(*) FROM $table WHERE tenant = '$_'")
	} qw(t_a t_b);
	for my $idx (@indexes)
	{
		is(VecphiCheck::error_of($primary, 'postgres', "SELECT vecphi.index_check('$idx')"),
			'no error', "$label: index_check($idx) passes on the primary");
	}
	for my $tenant (qw(t_a t_b))
	{
		next if $rows{$tenant} == 0;
		is(self_found($primary, $tenant, $table), "$rows{$tenant} of $rows{$tenant}",
			"$label: the index finds every committed $tenant row of $table on the primary");
	}
	$primary->wait_for_catchup($standby);
	for my $idx (@indexes)
	{
		is(VecphiCheck::error_of($standby, 'postgres', "SELECT vecphi.index_check('$idx')"),
			'no error', "$label: index_check($idx) passes on the standby");
	}
	for my $tenant (qw(t_a t_b))
	{
		next if $rows{$tenant} == 0;
		is(results($standby, $tenant, $table), results($primary, $tenant, $table),
			"$label: the standby returns the primary's $tenant results");
	}
	return;
}

sub index_exists
{
	my ($name) = @_;
	return $primary->safe_psql('postgres',
		"SELECT count(*) FROM pg_class WHERE relname = '$name'");
}

# ---- 1. during CREATE INDEX, in-memory load ----
$primary->safe_psql('postgres', 'CREATE INDEX docs_base ON docs USING ehnsw (emb)');
my $bg = $primary->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/build started/, qq{
	\\echo build started
	CREATE INDEX docs_emb ON docs USING ehnsw (emb) WITH (ef_construction = 200);
});
$primary->poll_query_until('postgres',
	"SELECT coalesce(max(tuples_done), 0) >= 100 FROM pg_stat_progress_create_index")
  or die 'the build did not get under way';
note 'rows loaded at the stop: '
  . $primary->safe_psql('postgres', 'SELECT max(tuples_done) FROM pg_stat_progress_create_index');
crash_restart('during the load phase of a build', $bg);
is(index_exists('docs_emb'), '0', 'build interrupted while loading: no index left behind');
check_both('build interrupted while loading', 'docs', 'docs_base');

# ---- 2. during CREATE INDEX, on-disk phase ----
$bg = $primary->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/build started/, qq{
	SET maintenance_work_mem = '1MB';
	\\echo build started
	CREATE INDEX wide_emb ON wide USING ehnsw (emb);
});
$primary->poll_query_until('postgres',
	"SELECT coalesce(max(tuples_done), 0) >= 500 FROM pg_stat_progress_create_index")
  or die 'the build did not get to its on-disk phase';
crash_restart('during the on-disk phase of a build', $bg);
is(index_exists('wide_emb'), '0', 'build interrupted on disk: no index left behind');
# The same build again, to its end: its NOTICE shows that the stop above
# (at 500 rows or more) came after the switch to the on-disk phase.
my ($out, $err) = ('', '');
$primary->psql('postgres',
	"SET maintenance_work_mem = '1MB'; CREATE INDEX wide_emb ON wide USING ehnsw (emb)",
	stdout => \$out, stderr => \$err, on_error_stop => 1);
like($err, qr/no longer fits into maintenance_work_mem after (\d+) rows/,
	'the wide build goes on on disk');
my ($switch) = $err =~ /after (\d+) rows/;
cmp_ok($switch // 1e9, '<', 500, 'before the row at which the first build was stopped');
check_both('wide build run again', 'wide', 'wide_emb');

# ---- 3. right after a build commits, before a checkpoint ----
$primary->safe_psql('postgres', 'CHECKPOINT');
$primary->safe_psql('postgres',
	'CREATE INDEX docs_emb ON docs USING ehnsw (emb) WITH (ef_construction = 200)');
crash_restart('right after a build committed');
is(index_exists('docs_emb'), '1', 'a committed build survives the crash');
$primary->safe_psql('postgres', 'DROP INDEX docs_base');
check_both('build committed, then crash', 'docs', 'docs_emb');

# ---- 4. during inserts ----
$primary->safe_psql('postgres', 'CHECKPOINT');
my $big = $primary->background_psql('postgres', on_error_stop => 0);
$big->query_until(qr/big started/, qq{
	BEGIN;
	$claims{t_a}
	\\echo big started
	INSERT INTO docs SELECT g, 't_a', vec(g) FROM generate_series(100001, 1000000) g;
	COMMIT;
});
insert_rows(1601, 1700);
my $pages = $primary->safe_psql('postgres', "SELECT pg_relation_size('docs_emb') / 8192");
$primary->poll_query_until('postgres',
	"SELECT pg_relation_size('docs_emb') / 8192 >= $pages + 5")
  or die 'the large insert did not get under way';
crash_restart('during inserts', $big);
is($primary->safe_psql('postgres', 'SELECT count(*) FROM docs WHERE id > 100000'),
	'0', 'inserts interrupted: no row of the uncommitted transaction is visible');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM docs'),
	'1700', 'inserts interrupted: every committed row is');
check_both('inserts interrupted', 'docs', 'docs_emb');

# ---- 5. during VACUUM, in the index ----
$primary->safe_psql('postgres', 'DELETE FROM docs WHERE id % 3 = 0 OR id > 100000');
$primary->safe_psql('postgres', 'CHECKPOINT');
my $vac = $primary->background_psql('postgres', on_error_stop => 0);
$vac->query_until(qr/vacuum started/, qq{
	SET vacuum_cost_delay = '20ms';
	SET vacuum_cost_limit = 1;
	\\echo vacuum started
	VACUUM docs;
});
$primary->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_progress_vacuum WHERE phase = 'vacuuming indexes'")
  or die 'VACUUM did not get to the index';
# Let it mark and zero some elements, and repair some links.
sleep 2;
note 'VACUUM phase at the stop: '
  . $primary->safe_psql('postgres', 'SELECT phase FROM pg_stat_progress_vacuum');
crash_restart('during VACUUM of the index', $vac);
check_both('VACUUM interrupted', 'docs', 'docs_emb');
$primary->safe_psql('postgres', 'VACUUM docs');
check_both('VACUUM run again', 'docs', 'docs_emb');

# ---- 6. key rotations, uncommitted and committed ----
sub key_state
{
	return $primary->safe_psql('postgres',
		"SELECT t.kek_version || '/' || t.current_dek || '/' || count(k.*) FROM vecphi.tenants t "
		  . "JOIN vecphi.keyring k USING (tenant_id) WHERE t.tenant = 't_a' "
		  . 'GROUP BY t.kek_version, t.current_dek');
}
my $keys_before = key_state();
my $rot = $primary->background_psql('postgres', on_error_stop => 0);
$rot->query_until(qr/rotated/, qq{
	BEGIN;
	SELECT vecphi.rotate_kek('t_a');
	SELECT vecphi.rotate_dek('t_a');
	$claims{t_a}
	SELECT count(*) FROM docs WHERE tenant = 't_a' AND emb IS NOT NULL;
	\\echo rotated
});
crash_restart('after rotate_kek and rotate_dek, before commit', $rot);
is(key_state(), $keys_before, 'uncommitted rotations: the key state is as before');
copy_keys();
check_both('rotations interrupted', 'docs', 'docs_emb');

# Rows inserted under a data key that an uncommitted rotate_dek created:
# their transaction never commits (crash, or ROLLBACK), the key is not in
# vecphi.keyring, but their elements are in the index (index entries do
# not roll back).  Searches and inserts skip those elements, VACUUM
# removes them, and a later rotate_dek that commits gets a new version
# number, never the aborted one (issue #12; TAP 115 has more).  REINDEX,
# which does not index dead rows, is checked below as well.
$rot = $primary->background_psql('postgres', on_error_stop => 0);
$rot->query_until(qr/rotated/, qq{
	BEGIN;
	SELECT vecphi.rotate_dek('t_a');
	$claims{t_a}
	INSERT INTO docs SELECT g, 't_a', vec(g) FROM generate_series(200001, 200050) g;
	\\echo rotated
});
crash_restart('after rotate_dek and inserts under the new key, before commit', $rot);
is(key_state(), $keys_before, 'uncommitted rotation with inserts: the key state is as before');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM docs WHERE id > 200000'),
	'0', 'uncommitted rotation with inserts: the rows are not visible');

# The search as a string, or the first line of its error.
sub try_self_found
{
	my $found = eval { self_found($primary, 't_a', 'docs') } // "error: $@";
	$found =~ s/\n.*//s;
	return $found;
}
my $rows_a = $primary->safe_psql('postgres', "SELECT count(*) FROM docs WHERE tenant = 't_a'");
is(try_self_found(), "$rows_a of $rows_a",
	'uncommitted rotation with inserts: searches skip the elements of the aborted rows');
is(VecphiCheck::error_of($primary, 'postgres', 'VACUUM docs'),
	'no error', 'uncommitted rotation with inserts: VACUUM removes them');
$primary->safe_psql('postgres', 'REINDEX INDEX docs_emb');
is(try_self_found(), "$rows_a of $rows_a", 'after REINDEX, searches work again');

# The same after a plain ROLLBACK, without a crash; then a rotate_dek that
# commits, with the aborted key's version number.
$primary->safe_psql('postgres', qq{
	BEGIN;
	SELECT vecphi.rotate_dek('t_a');
	$claims{t_a}
	INSERT INTO docs SELECT g, 't_a', vec(g) FROM generate_series(200001, 200050) g;
	ROLLBACK;
});
is(try_self_found(), "$rows_a of $rows_a", 'after ROLLBACK: searches skip the aborted rows');
$primary->safe_psql('postgres', "SELECT vecphi.rotate_dek('t_a')");
is(try_self_found(), "$rows_a of $rows_a",
	'after ROLLBACK and a committed rotate_dek: searches skip the aborted rows');
is( VecphiCheck::error_of(
		$primary, 'postgres', qq{
	BEGIN;
	$claims{t_a}
	INSERT INTO docs SELECT g, 't_a', vec(g) FROM generate_series(300001, 300010) g;
	COMMIT;}),
	'no error',
	'after ROLLBACK and a committed rotate_dek: inserts work');
is(VecphiCheck::error_of($primary, 'postgres', 'VACUUM docs'),
	'no error', 'after ROLLBACK and a committed rotate_dek: VACUUM works');
$primary->safe_psql('postgres', 'REINDEX INDEX docs_emb');
is( VecphiCheck::error_of(
		$primary, 'postgres', qq{
	BEGIN;
	$claims{t_a}
	INSERT INTO docs SELECT g, 't_a', vec(g) FROM generate_series(300011, 300020) g WHERE g % 2 = 1;
	COMMIT;}),
	'no error',
	'after REINDEX, inserts work again');
is(VecphiCheck::error_of($primary, 'postgres', 'VACUUM docs'),
	'no error', 'after REINDEX, VACUUM works again');
copy_keys();
check_both('aborted rotations with inserts, after REINDEX', 'docs', 'docs_emb');
$keys_before = key_state();

$primary->safe_psql(
	'postgres', qq{
	BEGIN;
	SELECT vecphi.rotate_kek('t_a');
	SELECT vecphi.rotate_dek('t_a');
	$claims{t_a}
	INSERT INTO docs SELECT g, 't_a', vec(g) FROM generate_series(200001, 200050) g WHERE g % 2 = 1;
	COMMIT;
});
my $keys_after = key_state();
isnt($keys_after, $keys_before, 'the rotations committed');
crash_restart('right after the rotations committed');
is(key_state(), $keys_after, 'committed rotations: the new key state survives the crash');
copy_keys();
check_both('rotations committed, then crash', 'docs', 'docs_emb');
check_both('finally, the wide table', 'wide', 'wide_emb');

$standby->stop;
$primary->stop;
done_testing();
