# vecphi: crashes at points nobody chose.  A workload of index and key
# operations runs in the background and the primary is stopped with
# pg_ctl -m immediate after a delay drawn from a seeded generator; after
# each restart everything that must hold is checked, on the primary and on
# a synchronous streaming standby; in the last round the standby is
# promoted after the primary's crash and checked as the new primary.
#
# The workload of a round (four psql sessions, ON_ERROR_STOP off):
#  - two writers: single-row inserts, one autocommit transaction each, for
#    tenants t_a, t_b and t_c in a seeded order (claims set by a function
#    in the same transaction), and now and then a DELETE of a range of
#    their own earlier rows.  Each prints "i <id>" once an insert has been
#    acknowledged, "ds <lo> <hi>" before and "do <lo> <hi>" after a delete;
#  - an index maintainer, ops in a seeded order: VACUUM, REINDEX, REINDEX
#    CONCURRENTLY, DROP INDEX + CREATE INDEX CONCURRENTLY of a second
#    ehnsw index, scrub, CHECKPOINT, short sleeps;
#  - a key administrator, back to back in a seeded order: rotate_dek and
#    rotate_kek of t_a..t_c; create_tenant, rotate_kek, rotate_dek and
#    shred_tenant of a scratch tenant.
#
# The stop comes after a delay spread over the workload: round r of N
# draws it from the r-th of N equal slices of [MIN, MAX] seconds, the
# slices in a seeded order (VECPHI_CRASH_SEED, printed, picks it; set it
# to replay a run).
#
# After each restart: the server comes up; an index PostgreSQL reports
# invalid (a CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY the stop
# hit) is repaired by REINDEX; vecphi.index_check() is true for every
# ehnsw index; every acknowledged insert is there unless a delete of it
# was started, no row of an acknowledged delete is; every row decrypts
# under its tenant's claims to its own vector; a sample of each tenant's
# rows is found through the index as its own nearest neighbour; every KEK
# version a wrapped data key names has its file in the key directory; the
# audit chain verifies; the standby catches up, passes index_check and
# returns the primary's results.
use strict;
use warnings;

use File::Copy qw(copy);
use FindBin;
use IPC::Run;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $seed = $ENV{VECPHI_CRASH_SEED} // 20261203;
my $rounds = $ENV{VECPHI_CRASH_ROUNDS} // 10;
my ($min_delay, $max_delay) = (0.3, 6.0);
note "crash seed $seed, $rounds rounds and a promotion";
diag "120_crash_random: VECPHI_CRASH_SEED=$seed";

# A small seeded generator (the same sequence on every platform, unlike
# Perl's srand/rand).
my $state = $seed;
sub rnd
{
	$state = ($state * 1103515245 + 12345) % 2147483648;
	return $state / 2147483648;
}
sub pick { my @a = @_; return $a[int(rnd() * @a)]; }

my $dims = 16;
my @tenants = qw(t_a t_b t_c);
my %claims = map {
	$_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_")
} @tenants;

my $primary = VecphiTest::new_node('primary', allows_streaming => 1);
$primary->append_conf('postgresql.conf', "autovacuum = off\nmax_wal_senders = 4\n");
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION vecphi');
$primary->safe_psql('postgres', "SELECT vecphi.create_tenant('$_')") for @tenants;
$primary->safe_psql(
	'postgres', qq{
	CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL, emb evector($dims));
	CREATE FUNCTION vec(g int) RETURNS real[] LANGUAGE sql IMMUTABLE AS
		\$\$ SELECT array_agg(((hashint4(g * 1024 + j) & 65535) / 6553.6)::real ORDER BY j)
			FROM generate_series(1, $dims) j \$\$;
	-- One autocommit transaction: the claims, then the row.
	CREATE FUNCTION w_ins(i int, t text, tok text) RETURNS void LANGUAGE plpgsql AS
		\$\$ BEGIN PERFORM vecphi.set_claims(tok);
			INSERT INTO docs VALUES (i, t, vec(i)); END \$\$;
	CREATE INDEX docs_emb ON docs USING ehnsw (emb);
});

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
VecphiTest::configure_node($standby);
$standby->append_conf('postgresql.conf', "wal_retrieve_retry_interval = '200ms'\n");

# The standby's key directory (and audit key directory) get copies of the
# primary's files, as docs/keys.md says a replica needs.
sub copy_keys
{
	for my $dir (\&VecphiTest::key_dir, \&VecphiTest::audit_key_dir)
	{
		my ($from, $to) = ($dir->($primary), $dir->($standby));
		for my $f (VecphiCheck::dir_files($from))
		{
			next if $f =~ /\.tmp/;
			copy("$from/$f", "$to/$f") or die "copy $f: $!";
			chmod 0600, "$to/$f" or die "chmod $f: $!";
		}
	}
	return;
}
copy_keys();
$standby->start;
# Synchronous: an acknowledged commit is on the standby too, so the
# promoted standby must have every acknowledged row.
$primary->append_conf('postgresql.conf', "synchronous_standby_names = 'standby'\n");
$primary->reload;
$primary->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE sync_state = 'sync'")
  or die 'the standby did not become synchronous';

my $token_sql = sub {
	my ($t) = @_;
	my $tok = VecphiTest::token(tenant => $t, role => 'clinician', sub => "dr_$t");
	return $tok;
};
my %token = map { $_ => $token_sql->($_) } @tenants;

# What the sessions acknowledged, over all rounds.
my %acked;          # id => tenant
my @deletes_started;    # [lo, hi]
my @deletes_done;
my $scratch = 0;

# The scripts of one round.
sub writer_script
{
	my ($round, $w) = @_;
	my $base = $round * 100000 + $w * 10000;
	my $sql = '';
	my $last_del = $base;
	for my $k (1 .. 600)
	{
		my $id = $base + $k;
		my $t = pick(@tenants);
		$sql .= "SELECT w_ins($id, '$t', '$token{$t}');\n"
		  . "\\if :ERROR\n\\else\n\\echo i $id $t\n\\endif\n";
		if ($k % 25 == 0)
		{
			my $lo = $last_del + 1 + int(rnd() * 10);
			my $hi = $lo + int(rnd() * 6);
			$last_del = $hi;
			$sql .= "\\echo ds $lo $hi\nDELETE FROM docs WHERE id BETWEEN $lo AND $hi;\n"
			  . "\\if :ERROR\n\\else\n\\echo do $lo $hi\n\\endif\n";
		}
	}
	return $sql;
}

# The maintainer's ops: index builds, VACUUM, scrub, checkpoints.
my @index_ops = (
	[ vacuum => sub { "VACUUM docs;\n" } ],
	[ reindex => sub { "REINDEX INDEX docs_emb;\n" } ],
	[ reindex_concurrently => sub { "REINDEX INDEX CONCURRENTLY docs_emb;\n" } ],
	[
		create_index_concurrently => sub {
			"DROP INDEX IF EXISTS docs_cic;\n"
			  . "CREATE INDEX CONCURRENTLY docs_cic ON docs USING ehnsw (emb evector_cosine_ops);\n";
		}
	],
	[ scrub => sub { "SELECT complete FROM vecphi.scrub('docs');\n" } ],
	[ checkpoint => sub { "CHECKPOINT;\n" } ],
	[ sleep => sub { "SELECT pg_sleep(0.1);\n" } ],);

# The key administrator's ops: each quick, so they run back to back and a
# stop usually finds one under way.
my @key_ops = (
	[ rotate_dek => sub { "SELECT vecphi.rotate_dek('" . pick(@tenants) . "');\n" } ],
	[ rotate_kek => sub { "SELECT vecphi.rotate_kek('" . pick(@tenants) . "');\n" } ],
	[
		create_rotate_shred => sub {
			my $s = 's_' . (++$scratch);
			"SELECT vecphi.create_tenant('$s');\nSELECT vecphi.rotate_kek('$s');\n"
			  . "SELECT vecphi.rotate_dek('$s');\nSELECT vecphi.shred_tenant('$s');\n";
		}
	],);

sub ops_script
{
	my ($tag, $n, @ops) = @_;
	my $sql = '';
	for my $k (1 .. $n)
	{
		my $op = pick(@ops);
		$sql .= "\\echo $tag $k $op->[0]\n" . $op->[1]->();
	}
	return $sql;
}

# Start the round's sessions against $node; returns the harnesses.
sub start_workload
{
	my ($node, $round) = @_;
	my @runs;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my %scripts = (
		w1 => writer_script($round, 1),
		w2 => writer_script($round, 2),
		m => ops_script('m', 60, @index_ops),
		k => ops_script('k', 400, @key_ops));
	for my $name (sort keys %scripts)
	{
		my $file = "$dir/$name.sql";
		open my $fh, '>', $file or die $!;
		print $fh $scripts{$name};
		close $fh;
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start(
			[
				'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=0', '-d',
				$node->connstr('postgres'), '-f', $file
			],
			'<', \undef, '>', \$out, '2>', \$err);
		push @runs, { name => $name, h => $h, out => \$out, err => \$err };
	}
	return @runs;
}

# Collect what the (now dead) sessions acknowledged.
sub collect
{
	my (@runs) = @_;
	my %errors;
	my %last_op = (m => 'none', k => 'none');
	for my $r (@runs)
	{
		eval { $r->{h}->finish; };
		eval { $r->{h}->kill_kill; } if $@;
		for my $line (split /\n/, ${ $r->{out} })
		{
			if ($line =~ /^i (\d+) (\w+)$/) { $acked{$1} = $2; }
			elsif ($line =~ /^ds (\d+) (\d+)$/) { push @deletes_started, [ $1, $2 ]; }
			elsif ($line =~ /^do (\d+) (\d+)$/) { push @deletes_done, [ $1, $2 ]; }
			elsif ($line =~ /^([mk]) (\d+) (\w+)$/) { $last_op{$1} = "$3 (op $2)"; }
		}
		for my $line (split /\n/, ${ $r->{err} })
		{
			next unless $line =~ /ERROR:\s+(.*)/;
			my $e = $1;
			$e =~ s/\d+/N/g;
			$errors{"$r->{name}: $e"}++;
		}
	}
	note "errors the sessions saw: $_ (x$errors{$_})" for sort keys %errors;
	note "the stop came during or after: index maintainer $last_op{m}, key administrator $last_op{k}";
	return %errors;
}

sub in_ranges
{
	my ($id, @ranges) = @_;
	for my $r (@ranges)
	{
		return 1 if $id >= $r->[0] && $id <= $r->[1];
	}
	return 0;
}

# The ehnsw indexes of docs: name => valid.
sub ehnsw_indexes
{
	my ($node) = @_;
	my %idx = map { split /\|/ } grep { length } split /\n/,
	  $node->safe_psql(
		'postgres', q{
		SELECT c.relname || '|' || i.indisvalid FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
		WHERE i.indrelid = 'docs'::regclass AND a.amname = 'ehnsw'});
	return %idx;
}

# A psql script's output, or its first error line.
sub try_sql
{
	my ($node, $sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err, on_error_stop => 1);
	if ($err =~ /ERROR:\s+([^\n]*)/) { return "error: $1"; }
	return $out;
}

# Every check after a restart, on $node (the primary, or the promoted
# standby); $label names the round.
sub check_node
{
	my ($node, $label, $keydir) = @_;

	my %idx = ehnsw_indexes($node);
	for my $name (sort keys %idx)
	{
		next if $idx{$name} eq 'true';
		note "$label: $name is invalid after the crash; REINDEX";
		is(VecphiCheck::error_of($node, 'postgres', "REINDEX INDEX $name"),
			'no error', "$label: REINDEX repairs the invalid index $name");
		# Left by an interrupted REINDEX CONCURRENTLY: a duplicate.
		$node->safe_psql('postgres', "DROP INDEX $name") if $name =~ /_ccnew|_ccold/;
	}
	%idx = ehnsw_indexes($node);
	is(join(',', grep { $idx{$_} ne 'true' } sort keys %idx), '', "$label: every ehnsw index is valid");
	for my $name (sort keys %idx)
	{
		is(try_sql($node, "SELECT vecphi.index_check('$name')"), 't',
			"$label: index_check($name)");
	}

	my @must = grep { !in_ranges($_, @deletes_started) } sort { $a <=> $b } keys %acked;
	my $must = '{' . join(',', @must) . '}';
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM unnest('$must'::int[]) i WHERE NOT EXISTS (SELECT FROM docs WHERE id = i)"
		),
		'0',
		"$label: every acknowledged insert (" . scalar(@must) . ') is there');
	my $gone = join(' OR ', map { "id BETWEEN $_->[0] AND $_->[1]" } @deletes_done) || 'false';
	is($node->safe_psql('postgres', "SELECT count(*) FROM docs WHERE $gone"),
		'0', "$label: no row of an acknowledged delete is");

	for my $t (@tenants)
	{
		my $n = $node->safe_psql('postgres', "SELECT count(*) FROM docs WHERE tenant = '$t'");
		my $dec = try_sql($node,
			"BEGIN;\n$claims{$t}\nSELECT count(*) FROM docs WHERE tenant = '$t' "
			  . "AND vecphi.decrypt(emb) = vec(id);\nCOMMIT;");
		my $todo = $dec =~ /data key \d+ .*is missing/ ? 'rob2-dek: rows under the data key of an aborted rotate_dek' : undef;
		TODO:
		{
			local $TODO = $todo;
			is($dec, $n, "$label: all $n $t rows decrypt to their vectors");
		}
		my $found = try_sql(
			$node, qq{
			BEGIN;
			$claims{$t}
			SET LOCAL enable_seqscan = off;
			SET LOCAL vecphi.ef_search = 100;
			SELECT count(*) FILTER (WHERE n.d = 0) || ' of ' || count(*)
			FROM (SELECT * FROM docs WHERE tenant = '$t' ORDER BY hashint4(id) LIMIT 15) r
			CROSS JOIN LATERAL
				(SELECT d.emb <-> r.emb AS d FROM docs d ORDER BY d.emb <-> r.emb LIMIT 1) n;
			COMMIT;});
		my $sample = $n < 15 ? $n : 15;
		$todo = $found =~ /data key \d+ .*is missing/ ? 'rob2-dek: rows under the data key of an aborted rotate_dek' : undef;
		TODO:
		{
			local $TODO = $todo;
			is($found, "$sample of $sample", "$label: sampled $t rows are their own nearest neighbours");
		}
	}

	# Every wrapped data key's KEK version has its file.
	my $missing = '';
	for my $row (split /\n/,
		$node->safe_psql(
			'postgres', q{
		SELECT DISTINCT i.keyring_id || '.' || t.tenant || '.' || k.kek_version || '.kek'
		FROM vecphi.keyring k JOIN vecphi.tenants t USING (tenant_id), vecphi.keyring_identity i}))
	{
		$missing .= " $row" unless -f "$keydir/$row";
	}
	is($missing, '', "$label: every KEK version a wrapped data key needs has its file");
	is($node->safe_psql('postgres', 'SELECT ok::text || coalesce(problem, \'\') FROM vecphi.verify_audit()'),
		'true', "$label: the audit chain verifies");
	return;
}

# A few index searches, for comparing primary and standby.
sub results
{
	my ($node) = @_;
	my $sql = "BEGIN;\n$claims{t_a}\nSET LOCAL enable_seqscan = off;\n";
	for my $g (3, 500, 1001)
	{
		$sql .= "SELECT string_agg(id::text, ',') FROM (SELECT id FROM docs "
		  . "ORDER BY emb <-> (SELECT vec($g)::evector) LIMIT 10) s;\n";
	}
	return try_sql($node, $sql . "COMMIT;\n");
}

# Round order: each round its own slice of the delay range.
my @slices = (0 .. $rounds - 1);
for my $i (reverse 1 .. $#slices)
{
	my $j = int(rnd() * ($i + 1));
	@slices[ $i, $j ] = @slices[ $j, $i ];
}

for my $round (1 .. $rounds + 1)
{
	my $promote = $round == $rounds + 1;
	my $slice = $promote ? int(rnd() * $rounds) : $slices[ $round - 1 ];
	my $width = ($max_delay - $min_delay) / $rounds;
	my $delay = $min_delay + ($slice + rnd()) * $width;
	my $label = sprintf('round %d%s (stop after %.2fs)', $round, $promote ? ', promotion' : '', $delay);
	note "$label";

	my $log_offset = -s $primary->logfile;
	my $standby_offset = -s $standby->logfile;
	my @runs = start_workload($primary, $round);
	select(undef, undef, undef, $delay);
	$primary->stop('immediate');
	collect(@runs);
	# Before the stop, no backend died (an immediate stop ends them with
	# SIGQUIT, which the postmaster does not report this way).
	my @died = grep { /terminated by signal|TRAP:|PANIC:|was terminated by exception/ }
	  split /\n/, slurp_file($primary->logfile, $log_offset);
	is(join("\n", @died), '', "$label: no server process crashed before the stop");

	if (!$promote)
	{
		$primary->start;
		copy_keys();
		check_node($primary, "$label, primary", VecphiTest::key_dir($primary));
		$primary->wait_for_catchup($standby);
		my %idx = ehnsw_indexes($standby);
		for my $name (sort keys %idx)
		{
			is(try_sql($standby, "SELECT vecphi.index_check('$name')"), 't',
				"$label, standby: index_check($name)");
		}
		is(results($standby), results($primary), "$label: the standby returns the primary's results");
		is( join("\n",
				grep { /terminated by signal|TRAP:|PANIC:/ }
				  split /\n/, slurp_file($standby->logfile, $standby_offset)),
			'',
			"$label: no standby process crashed while it replayed");
		next;
	}

	# The primary is gone: the standby takes over, with copies of its key
	# files as the operator keeps them.
	copy_keys();
	$standby->promote;
	$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
	  or die 'the standby did not finish its promotion';
	check_node($standby, "$label, promoted standby", VecphiTest::key_dir($standby));
	# It works as a primary: inserts, VACUUM and key rotation.
	is( VecphiCheck::error_of(
			$standby, 'postgres', qq{
		SELECT w_ins(900001, 't_a', '$token{t_a}');
		SELECT vecphi.rotate_kek('t_b');
		DELETE FROM docs WHERE id % 7 = 0;
		VACUUM docs;}),
		'no error',
		"$label: the promoted standby takes inserts, a rotation and VACUUM");
	$acked{900001} = 't_a';
	push @deletes_started, map { [ $_, $_ ] } grep { $_ % 7 == 0 } keys %acked;
	check_node($standby, "$label, promoted standby after work", VecphiTest::key_dir($standby));
}

$standby->stop;
done_testing();
