# vecphi on Citus: bulk load into a protected distributed table by an
# application role with claims (issue #16, "bulk load").
#
# PostgreSQL refuses COPY FROM into a table whose row security applies to
# the current user; Citus loads shards with "COPY shard FROM STDIN" on the
# workers (for COPY and for INSERT ... SELECT through the coordinator), so
# the refusal came from the workers.  vecphi (src/protect/copyload.c) now
# loads such a COPY into a protected table as INSERTs, so the policies
# apply.  Checked here, through the coordinator:
#  - the refusal's place, on a distributed table with a row-security policy
#    of its own (not vecphi's, so vecphi leaves it alone): the worker;
#  - as app with tenant A's claims: COPY FROM STDIN in text, CSV and binary lands,
#    each row on the shard of its id, the search finds them; INSERT ...
#    SELECT from generate_series, a local table and VALUES works;
#  - a COPY with one row of tenant B is refused by the policy and leaves
#    nothing on any node; without claims refused; COPY from a file refused
#    as before; tenant B's envelopes labelled as A's rows are refused in
#    binary; the superuser's COPY works; tenant B sees none of A's rows;
#  - rows/s of the claimant's COPY against the superuser's (diag only).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use VecphiCheck;
use VecphiCitus;
use VecphiTest;

VecphiCitus::skip_unless_citus();

my $dims = 8;
my $c = VecphiCitus::new_cluster('c188', workers => 2);
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
	-- the same, for the superuser's reference load (an equally empty index)
	CREATE TABLE docs_su (id int PRIMARY KEY, tenant text NOT NULL, emb evector($dims));
	SELECT create_distributed_table('docs_su', 'id');
	SELECT vecphi.protect('docs_su', 'tenant');
	CREATE INDEX docs_su_emb ON docs_su USING ehnsw (emb);
	CREATE FUNCTION vec(g int) RETURNS text LANGUAGE sql IMMUTABLE AS
		\$\$ SELECT '[' || string_agg((((hashint4(g * 64 + j) & 65535) / 6553.6)::real)::text, ',' ORDER BY j) || ']'
			FROM generate_series(1, $dims) j \$\$;
	CREATE TABLE staging (id int, tenant text, v text);
	INSERT INTO staging SELECT g, 't_a', vec(g) FROM generate_series(22001, 22050) g;
	GRANT SELECT ON staging TO app;
	-- a distributed table with a row-security policy of its own
	CREATE TABLE plain_rls (id int PRIMARY KEY, v text);
	SELECT create_distributed_table('plain_rls', 'id');
	ALTER TABLE plain_rls ENABLE ROW LEVEL SECURITY;
	CREATE POLICY p ON plain_rls USING (true) WITH CHECK (true);
	GRANT SELECT, INSERT ON plain_rls TO app;
});
my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} qw(t_a t_b);

# Run $sql as app in one transaction with $claims_sql first; returns
# ($ret, $stdout, $stderr).
sub as_app
{
	my ($claims_sql, $sql) = @_;
	return as_app_on($coord, $claims_sql, $sql);
}

sub as_app_on
{
	my ($node, $claims_sql, $sql) = @_;
	my ($out, $err) = ('', '');
	my $ret = $node->psql(
		'postgres', qq{\\set ON_ERROR_STOP 1
BEGIN;
$claims_sql
$sql
COMMIT;
}, stdout => \$out, stderr => \$err, extra_params => [ '-U', 'app' ]);
	return ($ret, $out, $err);
}

# COPY data lines for ids $lo..$hi of $tenant, fields separated by $sep.
sub rows
{
	my ($lo, $hi, $tenant, $sep) = @_;
	my $fmt = $sep eq ',' ? q{%s,%s,"%s"} : "%s\t%s\t%s";
	return $coord->safe_psql('postgres',
		"SELECT string_agg(format(\$f\$$fmt\$f\$, g, '$tenant', vec(g)), E'\\n' ORDER BY g) FROM generate_series($lo, $hi) g"
	);
}

sub count_of
{
	my ($where) = @_;
	return $coord->safe_psql('postgres', "SELECT count(*) FROM docs WHERE $where");
}

# --- Where PostgreSQL refuses: a table vecphi does not protect.
my ($ret, $out, $err) = as_app($claims{t_a}, "COPY plain_rls FROM STDIN;\n1\tx\n\\.");
isnt($ret, 0, 'COPY into a distributed table with row security of its own is refused');
like($err, qr/COPY FROM not supported with row-level security/, '... by PostgreSQL\'s check');
like($err, qr/while executing command on|localhost:\d+/,
	'... on a worker (the coordinator forwards COPY without checking row security)');

# --- The claimant's COPY, text format.
my $n_text = 2000;
my $text = rows(1, $n_text, 't_a', "\t");
my $t0 = time;
($ret, $out, $err) = as_app($claims{t_a}, "COPY docs (id, tenant, emb) FROM STDIN;\n$text\n\\.\n\\echo rows :ROW_COUNT");
my $app_secs = time - $t0;
is($ret, 0, 'app with tenant A\'s claims: COPY FROM STDIN (text) succeeds') or diag($err);
like($out, qr/^rows $n_text$/m, "the command reports $n_text rows (COPY $n_text)");
is(count_of("tenant = 't_a'"), $n_text, "$n_text rows in the distributed table");

# The superuser's plain COPY of the same rows into an identical table (it
# bypasses row security: PostgreSQL's and Citus's own COPY), for speed.
$t0 = time;
$coord->safe_psql('postgres', "BEGIN;\n$claims{t_a}\nCOPY docs_su (id, tenant, emb) FROM STDIN;\n$text\n\\.\nCOMMIT;");
my $su_secs = time - $t0;
is($coord->safe_psql('postgres', 'SELECT count(*) FROM docs_su'), $n_text, 'the superuser\'s COPY loads the same rows');
diag(sprintf('COPY of %d rows through the coordinator into an empty table with an ehnsw index: '
	  . 'claimant %.0f rows/s (%.2fs), superuser %.0f rows/s (%.2fs)',
	$n_text, $n_text / $app_secs, $app_secs, $n_text / $su_secs, $su_secs));

# Every row on the shard of its id.
my $misplaced = 0;
my $placed = 0;
for my $w (@{ $c->{workers} })
{
	my @shards = split /\n/, $w->safe_psql(
		'postgres', q{SET citus.override_table_visibility TO off;
		SELECT relname FROM pg_class WHERE relname ~ '^docs_[0-9]+$' AND relkind = 'r'});
	for my $s (@shards)
	{
		my ($id) = $s =~ /_(\d+)$/;
		my ($bad, $all) = split /\|/, $w->safe_psql(
			'postgres', qq{SELECT count(*) FILTER (WHERE get_shard_id_for_distribution_column('docs', id) <> $id),
			count(*) FROM public.$s});
		$misplaced += $bad;
		$placed += $all;
	}
}
is($placed, $n_text, 'the workers\' shards hold the rows');
is($misplaced, 0, 'every row is on the shard of its id');

# The search finds a loaded vector (encrypted under tenant A's key).
my $q7 = $coord->safe_psql('postgres', 'SELECT vec(7)');
($ret, $out, $err) = as_app($claims{t_a}, qq{SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL enable_seqscan = off;
SELECT id FROM docs ORDER BY emb <-> '$q7'::evector_query LIMIT 1;});
is($ret, 0, 'the claimant searches the loaded rows') or diag($err);
like($out, qr/^7$/m, 'the nearest row to vec(7) is row 7');

# CSV.
my $csv = rows(20501, 20600, 't_a', ',');
($ret, $out, $err) = as_app($claims{t_a}, "COPY docs FROM STDIN WITH (FORMAT csv);\n$csv\n\\.");
is($ret, 0, 'COPY FROM STDIN (csv) succeeds') or diag($err);
is(count_of("id BETWEEN 20501 AND 20600 AND tenant = 't_a'"), 100, 'its 100 rows are there');

# Binary: psql's \copy sends the file as COPY FROM STDIN.  The envelopes in
# the file are the claimant's own ciphertext (evector_send), written by a
# \copy TO under the same claims.
my $bindir = PostgreSQL::Test::Utils::tempdir;
($ret, $out, $err) = as_app($claims{t_a},
	"\\copy (SELECT g + 30000, 't_a'::text, vec(g)::evector FROM generate_series(1, 40) g) TO '$bindir/a.bin' WITH (FORMAT binary)");
is($ret, 0, 'the claimant writes a binary COPY file of her own ciphertext') or diag($err);
($ret, $out, $err) = as_app($claims{t_a}, "\\copy docs FROM '$bindir/a.bin' WITH (FORMAT binary)");
is($ret, 0, 'COPY FROM STDIN (binary) succeeds') or diag($err);
is(count_of("id BETWEEN 30001 AND 30040 AND tenant = 't_a'"), 40, 'its 40 rows are there');
my $q3 = $coord->safe_psql('postgres', 'SELECT vec(3)');
($ret, $out, $err) = as_app($claims{t_a},
	"SELECT id, emb <-> '$q3'::evector_query FROM docs WHERE id > 30000 ORDER BY 2 LIMIT 1;");
like($out, qr/^30003\|0$/m, '... and decrypt to the vectors written (row 30003 is vec(3))') or diag($err);

# Tenant B's ciphertext (taken by the superuser) labelled as tenant A's rows,
# loaded in binary under tenant A's claims: the policy checks whose key the
# envelope is under, not only the tenant column.
$coord->safe_psql('postgres', qq{BEGIN;
$claims{t_b}
\\copy (SELECT g + 31000, 't_a'::text, vec(g)::evector FROM generate_series(1, 5) g) TO '$bindir/b.bin' WITH (FORMAT binary)
COMMIT;});
($ret, $out, $err) = as_app($claims{t_a}, "\\copy docs FROM '$bindir/b.bin' WITH (FORMAT binary)");
isnt($ret, 0, 'tenant B\'s envelopes labelled tenant A, in binary under A\'s claims: refused');
like($err, qr/row-level security policy/, "... by the policy (the envelopes are under tenant B's key)");
is(count_of('id BETWEEN 31001 AND 31005'), 0, '... and nothing of it stays');

# --- INSERT ... SELECT through the coordinator.
($ret, $out, $err) = as_app($claims{t_a},
	"INSERT INTO docs SELECT g, 't_a', vec(g)::evector FROM generate_series(21001, 21100) g;");
is($ret, 0, 'INSERT ... SELECT from generate_series succeeds') or diag($err);
($ret, $out, $err) = as_app($claims{t_a},
	"EXPLAIN (COSTS OFF) INSERT INTO docs SELECT g, 't_a', vec(g)::evector FROM generate_series(1, 2) g;");
like($out, qr/pull to coordinator/, '... which Citus runs through the coordinator (COPY into the shards)');
($ret, $out, $err) = as_app($claims{t_a}, "INSERT INTO docs SELECT id, tenant, v::evector FROM staging;");
is($ret, 0, 'INSERT ... SELECT from a local table succeeds') or diag($err);
($ret, $out, $err) = as_app($claims{t_a},
	"INSERT INTO docs SELECT * FROM (VALUES (23001, 't_a', vec(23001)::evector), (23002, 't_a', vec(23002)::evector)) v;");
is($ret, 0, 'INSERT ... SELECT from a VALUES list succeeds') or diag($err);
is(count_of("id BETWEEN 21001 AND 29999 AND tenant = 't_a'"), 152, 'the 152 rows of the INSERT ... SELECTs are there');

# --- Attacks.
my $before = count_of('true');
my $mixed = rows(4001, 4050, 't_a', "\t") . "\n" . rows(4051, 4051, 't_b', "\t");
($ret, $out, $err) = as_app($claims{t_a}, "COPY docs FROM STDIN;\n$mixed\n\\.");
isnt($ret, 0, 'a COPY with a row of tenant B under tenant A\'s claims is refused');
like($err, qr/row-level security policy|another tenant|not allowed|denied/i, '... by the policy') or diag($err);
unlike($err, qr/4051\tt_b|\[[0-9.]+,/, '... and the error shows no row value');
is(count_of('true'), $before, 'the whole COPY rolled back: no row of it on any node');
is(count_of('id BETWEEN 4001 AND 4051'), 0, 'none of its ids');

($ret, $out, $err) = as_app($claims{t_a},
	"INSERT INTO docs SELECT g, 't_b', vec(g)::evector FROM generate_series(4101, 4110) g;");
isnt($ret, 0, 'INSERT ... SELECT of tenant B rows under tenant A\'s claims is refused');
like($err, qr/row-level security policy/, '... by the policy on the shards') or diag($err);
is(count_of('id BETWEEN 4101 AND 4110'), 0, '... and leaves nothing');

my $nob = rows(4201, 4210, 't_a', "\t");
($ret, $out, $err) = as_app('', "COPY docs FROM STDIN;\n$nob\n\\.");
isnt($ret, 0, 'COPY without claims is refused');
is(count_of('id BETWEEN 4201 AND 4210'), 0, '... and leaves nothing');

my $file = $coord->basedir . '/rows.txt';
open my $fh, '>', $file or die $!;
print $fh rows(4301, 4310, 't_a', "\t") . "\n";
close $fh;
chmod 0644, $file;
($ret, $out, $err) = as_app($claims{t_a}, "COPY docs FROM '$file';");
isnt($ret, 0, 'COPY from a server file by app is still refused');
like($err, qr/permission denied|pg_read_server_files|must be superuser/i, '... for lack of the privilege') or diag($err);

# --- COPY through a worker, which holds some of the shards itself: Citus
# would load those with CopyFrom directly (local execution), checking no
# row security; vecphi turns local execution off for the COPY, so they are
# loaded under the policies too.
my $w1 = $c->{workers}[0];
my $w1_shards = join ',', map { /_(\d+)$/ } split /\n/, $w1->safe_psql(
	'postgres', q{SET citus.override_table_visibility TO off;
	SELECT relname FROM pg_class WHERE relname ~ '^docs_[0-9]+$' AND relkind = 'r'});
# Rows of tenant B whose ids all fall in the worker's own shards.
my $wb = $coord->safe_psql(
	'postgres', qq{SELECT string_agg(format(E'%s\\tt_b\\t%s', g, vec(g)), E'\\n' ORDER BY g)
	FROM (SELECT g FROM generate_series(5001, 6000) g
		  WHERE get_shard_id_for_distribution_column('docs', g) IN ($w1_shards) ORDER BY g LIMIT 20) x});
is(scalar(split /\n/, $wb), 20, '20 rows for the worker\'s own shards');
($ret, $out, $err) = as_app_on($w1, $claims{t_a}, "COPY docs FROM STDIN;\n$wb\n\\.");
isnt($ret, 0, 'through a worker: a COPY of tenant B rows, all for its own shards, under tenant A\'s claims is refused');
like($err, qr/row-level security policy/, '... by the policy') or diag($err);
is(count_of('id BETWEEN 5001 AND 6000'), 0, '... and leaves nothing');
# INSERT ... SELECT through the worker (Citus pulls the rows to that node
# and loads its own shards with local copy).
($ret, $out, $err) = as_app_on($w1, $claims{t_a},
	"INSERT INTO docs SELECT g, 't_b', vec(g)::evector FROM generate_series(5001, 6000) g
	 WHERE get_shard_id_for_distribution_column('docs', g) IN ($w1_shards);");
isnt($ret, 0, 'through a worker: INSERT ... SELECT of tenant B rows for its own shards is refused');
is(count_of('id BETWEEN 5001 AND 6000'), 0, '... and leaves nothing');
# MERGE from a distributed table not colocated with docs: Citus refuses
# MERGE into a protected table (its policies call STABLE functions), so
# its copy into the target's shards is never reached.
$coord->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims{t_a}
	CREATE TABLE merge_src (id int, tenant text, emb evector($dims));
	SELECT create_distributed_table('merge_src', 'tenant', colocate_with => 'none');
	INSERT INTO merge_src SELECT g, 't_b', vec(g)::evector FROM generate_series(5001, 6000) g
	 WHERE get_shard_id_for_distribution_column('docs', g) IN ($w1_shards);
	GRANT SELECT ON merge_src TO app;
	COMMIT;});
($ret, $out, $err) = as_app_on($w1, $claims{t_a},
	"MERGE INTO docs d USING merge_src s ON d.id = s.id
	 WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.tenant, s.emb);");
isnt($ret, 0, 'through a worker: MERGE inserting tenant B rows into its own shards is refused');
like($err, qr/non-IMMUTABLE functions are not yet supported in MERGE/, '... by Citus, for the policies\' functions')
  or diag($err);
is(count_of('id BETWEEN 5001 AND 6000'), 0, '... and leaves nothing');
($ret, $out, $err) = as_app_on($w1, $claims{t_a},
	"INSERT INTO docs SELECT g, 't_a', vec(g)::evector FROM generate_series(6001, 7000) g
	 WHERE get_shard_id_for_distribution_column('docs', g) IN ($w1_shards);");
is($ret, 0, 'through a worker: INSERT ... SELECT of tenant A rows for its own shards loads') or diag($err);
my $local_a = count_of("id BETWEEN 6001 AND 7000 AND tenant = 't_a'");
cmp_ok($local_a, '>', 0, "... $local_a rows");
# After a local read in the same transaction Citus must keep executing
# locally: vecphi refuses the COPY rather than let Citus copy locally.
my ($local_id) = split /\n/, $coord->safe_psql('postgres',
	"SELECT g FROM generate_series(6001, 7000) g WHERE get_shard_id_for_distribution_column('docs', g) IN ($w1_shards) LIMIT 1");
my $one = rows(7001, 7001, 't_a', "\t");
($ret, $out, $err) = as_app_on($w1, $claims{t_a},
	"SELECT count(*) FROM docs WHERE id = $local_id;\nCOPY docs FROM STDIN;\n$one\n\\.");
isnt($ret, 0, 'through a worker: COPY after a local read in the transaction is refused');
like($err, qr/after local execution in this transaction is not supported/, '... with vecphi\'s error') or diag($err);
my $wa = rows(5101, 5140, 't_a', "\t");
($ret, $out, $err) = as_app_on($w1, $claims{t_a}, "COPY docs FROM STDIN;\n$wa\n\\.");
is($ret, 0, 'through a worker: tenant A\'s COPY loads') or diag($err);
is(count_of("id BETWEEN 5101 AND 5140 AND tenant = 't_a'"), 40, '... all 40 rows');
my $local = $w1->safe_psql(
	'postgres', q{SET citus.override_table_visibility TO off;
	SELECT count(*) FROM pg_class WHERE relname ~ '^docs_[0-9]+$' AND relkind = 'r'});
cmp_ok($local, '>', 0, 'the worker holds shards of the table');

# --- The superuser's plain COPY still works into the protected table.
my $su = rows(10001, 10100, 't_b', "\t");
$coord->safe_psql('postgres', "BEGIN;\n$claims{t_b}\nCOPY docs (id, tenant, emb) FROM STDIN;\n$su\n\\.\nCOMMIT;");
is(count_of("id BETWEEN 10001 AND 19999"), 100, 'the superuser\'s COPY loads its rows');

# --- Tenant B sees none of A's rows.
($ret, $out, $err) = as_app($claims{t_b}, "SELECT count(*) FILTER (WHERE tenant = 't_a'), count(*) FROM docs;");
is($ret, 0, 'tenant B queries the table') or diag($err);
like($out, qr/^0\|/m, 'tenant B sees none of tenant A\'s rows');

VecphiCitus::stop_cluster($c);
done_testing();
