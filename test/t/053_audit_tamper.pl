# vecphi: verify_audit() finds tampering; purge_audit() keeps the chain
# verifiable.
#
# The append-only triggers stop everybody, but a superuser can disable them
# (or edit the files).  On a node of its own, with some 30 records: a
# superuser disables the trigger and, one at a time (the log is restored
# from a copy after each, and verifies again):
#
#  - edits a column of one row                  -> that row is named
#  - edits the first row                        -> row 1 is named
#  - deletes a row                              -> the gap is named
#  - swaps two rows' contents (reorders them)   -> the first of them
#  - rewrites a row's hash (and the next row's prev_hash to match)
#                                               -> that row
#  - re-inserts a copy of an old row at the end, linked to the head
#                                               -> the copy
#  - deletes the newest rows                    -> the head file tells (the
#    first missing seq), and so does the anchor exported before
#    (audit_head())
#
# Then retention: records older than vecphi.audit_retention (1 minute
# here) are removed by purge_audit(), which returns how many, and writes
# an audit_purge row naming the last purged seq and its hash; the chain
# verifies afterwards and goes on.  (This waits a little over a minute for
# the first records to age.)
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use VecphiCheck;
use VecphiTest;

my $claims = VecphiCheck::claims_do(tenant => 'aud_a', role => 'clinician', sub => 'dr_tamper');

my $node = VecphiTest::new_node('tamper');
$node->start;
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('aud_a');
	CREATE TABLE docs (id int PRIMARY KEY, emb evector(3));
	BEGIN;
	$claims
	INSERT INTO docs SELECT i, format('[%s,%s,0]', i, i % 3)::evector FROM generate_series(1, 50) i;
	COMMIT;
	CREATE INDEX docs_emb ON docs USING ehnsw (emb);
});

# $n searches, each its own statement and record.
sub searches
{
	my ($n, $from) = @_;
	my $sql = "BEGIN;\n$claims\nSET LOCAL enable_seqscan = off;\n";
	$sql .= "SELECT id FROM docs ORDER BY emb <-> '[$_,0,0]' LIMIT 2;\n" for ($from .. $from + $n - 1);
	$sql .= "COMMIT;\n";
	$node->safe_psql('postgres', $sql);
	return;
}
searches(30, 1);

# "ok first_bad_seq" of verify_audit(), with an anchor if given.
sub verify
{
	my ($anchor_seq, $anchor_hash) = @_;
	my $args = defined $anchor_seq ? "$anchor_seq, '$anchor_hash'" : '';
	my $out = $node->safe_psql('postgres',
		"SELECT CASE WHEN ok THEN 't' ELSE 'f' END || ' ' || coalesce(first_bad_seq::text, '-') || ' ' || coalesce(problem, '-') FROM vecphi.verify_audit($args)");
	my ($ok, $bad, $problem) = split / /, $out, 3;
	note "verify_audit($args): $out";
	return "$ok $bad";
}

# Run $sql as a superuser with the append-only trigger disabled.
sub tamper
{
	my ($sql) = @_;
	$node->safe_psql(
		'postgres', qq{
		BEGIN;
		ALTER TABLE vecphi.audit_log DISABLE TRIGGER audit_log_append_only;
		$sql;
		ALTER TABLE vecphi.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;
		COMMIT;
	});
	return;
}

# Put the log back as it was in the copy.
sub restore
{
	tamper(q{
		DELETE FROM vecphi.audit_log;
		INSERT INTO vecphi.audit_log SELECT * FROM audit_copy});
	return;
}

# The triggers hold, for a superuser too, while enabled; the refusal is a
# denial record (waited for, so that the copy below holds it: restoring a
# copy without it would itself delete the newest record).
like(VecphiCheck::error_of($node, 'postgres', 'UPDATE vecphi.audit_log SET detail = NULL WHERE seq = 5'),
	qr/^42501: /, 'UPDATE is refused to a superuser');
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM vecphi.audit_log WHERE action = 'denial' AND detail LIKE '%UPDATE is not allowed'")
  or die 'the refused UPDATE left no denial record';

my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM vecphi.audit_log');
cmp_ok($rows, '>=', 31, "$rows records");
is($node->safe_psql('postgres', 'SELECT min(seq) || \' \' || max(seq) FROM vecphi.audit_log'),
	"1 $rows", 'seq runs from 1');
is( $node->safe_psql(
		'postgres', 'SELECT ok::int || \' \' || rows_checked FROM vecphi.verify_audit()'),
	"1 $rows",
	'the untouched log verifies, every row checked');
my ($head_seq, $head_hash) = split /\|/,
  $node->safe_psql('postgres', 'SELECT seq, row_hash FROM vecphi.audit_head()');
is($head_seq, $rows, 'audit_head() is the newest row');
is(verify($head_seq, $head_hash), 't -', 'and verifies as an anchor');
$node->safe_psql('postgres', 'CREATE TABLE audit_copy AS SELECT * FROM vecphi.audit_log');


# ---- one tampering at a time ----
my @cases = (
	[ 'an edited column (rows_returned)', 'UPDATE vecphi.audit_log SET rows_returned = 1 WHERE seq = 5', [5] ],
	[ 'an edited row id', q{UPDATE vecphi.audit_log SET row_ids = ARRAY['1', '2'] WHERE seq = 12 AND row_ids IS NOT NULL}, [12] ],
	[ 'an edited subject', q{UPDATE vecphi.audit_log SET subject = 'someone_else' WHERE seq = 20}, [20] ],
	[ 'an edited first row', q{UPDATE vecphi.audit_log SET detail = coalesce(detail, '') || '.' WHERE seq = 1}, [1] ],
	[ 'a deleted row', 'DELETE FROM vecphi.audit_log WHERE seq = 7', [ 7, 8 ] ],
	[ 'the first row deleted', 'DELETE FROM vecphi.audit_log WHERE seq = 1', [ 1, 2 ] ],
	[
		'two rows swapped',
		q{UPDATE vecphi.audit_log SET seq = -1 WHERE seq = 9;
		  UPDATE vecphi.audit_log SET seq = 9 WHERE seq = 10;
		  UPDATE vecphi.audit_log SET seq = 10 WHERE seq = -1},
		[9]
	],
	[
		'a rewritten hash, the next row relinked',
		q{UPDATE vecphi.audit_log SET row_hash = sha256(row_hash) WHERE seq = 15;
		  UPDATE vecphi.audit_log SET prev_hash = (SELECT row_hash FROM vecphi.audit_log WHERE seq = 15) WHERE seq = 16},
		[15]
	],
	[
		'a copy of an old row appended, linked to the head',
		qq{INSERT INTO vecphi.audit_log
		   SELECT $rows + 1, at, db_user, backend_pid, statement_id, subject, tenant, app_role, purpose,
			break_glass, break_glass_reason, action, relation, index_name, rows_returned, row_ids,
			query_fingerprint, outcome, detail,
			(SELECT row_hash FROM vecphi.audit_log WHERE seq = $rows), row_hash
		   FROM vecphi.audit_log WHERE seq = 3},
		[ $rows + 1 ]
	],);
for my $case (@cases)
{
	my ($label, $sql, $expect) = @$case;
	tamper($sql);
	my ($ok, $bad) = split / /, verify();
	is($ok, 'f', "$label: verify_audit() fails");
	ok((grep { $_ eq $bad } @$expect),
		"$label: names seq $bad (" . join(' or ', @$expect) . ')');
	restore();
	is(verify(), 't -', "$label: restored, the log verifies again");
}

# The newest rows deleted: a chain cannot know its own end, but the head
# file the writer keeps beside the audit key can (071_audit_anchor.pl), and
# so can an anchor exported before.
tamper("DELETE FROM vecphi.audit_log WHERE seq > $rows - 3");
is(verify(), 'f ' . ($rows - 2), 'newest rows deleted: the head file shows it');
my ($ok, $bad) = split / /, verify($head_seq, $head_hash);
is($ok, 'f', 'newest rows deleted: verify_audit() with the anchor fails');
is($bad, $head_seq, 'and names the anchor');
restore();
is(verify($head_seq, $head_hash), 't -', 'restored, the anchor verifies again');
# A wrong anchor hash.
($ok, $bad) = split / /, verify($head_seq, '00' x 32);
is("$ok $bad", "f $head_seq", 'an anchor with another hash fails');

# ---- retention ----
# The first records must age past one minute; the database's clock decides.
my $last_old = $node->safe_psql('postgres', 'SELECT max(seq) FROM vecphi.audit_log');
my $last_old_hash = $node->safe_psql('postgres',
	"SELECT encode(row_hash, 'hex') FROM vecphi.audit_log WHERE seq = $last_old");
ok( $node->poll_query_until(
		'postgres',
		"SELECT max(at) < now() - interval '70 seconds' FROM vecphi.audit_log"),
	'the records so far are older than 70 seconds');
searches(4, 40);
my $new_rows = $node->safe_psql('postgres', "SELECT count(*) FROM vecphi.audit_log WHERE seq > $last_old");
is($new_rows, 4, 'four new records');

my $purged = $node->safe_psql(
	'postgres', q{
	SET vecphi.audit_retention = '1min';
	SELECT vecphi.purge_audit();
	SELECT vecphi.audit_flush();
});
is((split /\n/, $purged)[0], $last_old, 'purge_audit() removed the records older than a minute, and says how many');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM vecphi.audit_log WHERE seq <= $last_old"),
	'0',
	'they are gone');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM vecphi.audit_log WHERE seq > $last_old AND action = 'index_scan'"),
	'4',
	'the newer records are kept');
my $purge_row = $node->safe_psql('postgres',
	"SELECT outcome || ' ' || detail FROM vecphi.audit_log WHERE action = 'audit_purge'");
like($purge_row, qr/^ok purged through seq=$last_old hash=\\?x?$last_old_hash\b/,
	'an audit_purge row names the last purged seq and its hash');
is(verify(), 't -', 'the chain verifies after the purge');

# The chain goes on, and a purge with nothing old removes nothing.
searches(2, 45);
is(verify(), 't -', 'and after new records');
is( $node->safe_psql(
		'postgres', q{
	SET vecphi.audit_retention = '1min';
	SELECT vecphi.purge_audit();}),
	'0',
	'a second purge removes nothing');
$node->safe_psql('postgres', 'SELECT vecphi.audit_flush()');
is(verify(), 't -', 'and the chain still verifies');
is( $node->safe_psql(
		'postgres', 'SELECT count(*) = max(seq) - min(seq) + 1 FROM vecphi.audit_log'),
	't',
	'no gap after the purge');

# Tampering after a purge is still found (and undone, for the last test).
sub restore_after_purge
{
	my ($seq) = @_;
	tamper("UPDATE vecphi.audit_log SET rows_returned = (SELECT c.rows_returned FROM audit_copy2 c WHERE c.seq = $seq) WHERE seq = $seq");
	is(verify(), 't -', 'the edit undone, the chain verifies');
	return;
}
$node->safe_psql('postgres', 'CREATE TABLE audit_copy2 AS SELECT * FROM vecphi.audit_log');
my $mid = $node->safe_psql('postgres', "SELECT min(seq) + 2 FROM vecphi.audit_log");
tamper("UPDATE vecphi.audit_log SET rows_returned = 0 WHERE seq = $mid");
is(verify(), "f $mid", 'an edit after the purge is found');
restore_after_purge($mid);

# The writer releases the searches waiting for a batch before it rewrites
# the head file, and while records keep coming it rewrites it only every
# 200 ms (or 10 ms after the queue empties): verify_audit() asks it for the
# head file and waits.  Three searches in a row (the head file is written
# after the first, deferred after the next two), then at once, in one
# transaction that is rolled back, the newest record deleted and
# verify_audit(): without that wait it would compare with a head file that
# names the record before.
my @lines = split /\n/, $node->safe_psql(
	'postgres', qq{
	BEGIN;
	$claims
	SET LOCAL enable_seqscan = off;
	SELECT id FROM docs ORDER BY emb <-> '[7,0,0]' LIMIT 2;
	SELECT id FROM docs ORDER BY emb <-> '[8,0,0]' LIMIT 2;
	SELECT id FROM docs ORDER BY emb <-> '[9,0,0]' LIMIT 2;
	COMMIT;
	BEGIN;
	ALTER TABLE vecphi.audit_log DISABLE TRIGGER audit_log_append_only;
	DELETE FROM vecphi.audit_log WHERE seq = (SELECT max(seq) FROM vecphi.audit_log);
	SELECT CASE WHEN ok THEN 't' ELSE 'f' END || ' ' || coalesce(problem, '-') FROM vecphi.verify_audit();
	ROLLBACK;
});
like($lines[-1], qr/^f newest records missing/,
	'the newest record deleted at once after its search: verify_audit() sees it');
is(verify(), 't -', 'rolled back, the chain verifies');

$node->stop;
done_testing();
