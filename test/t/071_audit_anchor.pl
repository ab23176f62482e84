# vecphi: deleting or truncating the newest audit records is found.
#
# A hash chain cannot know its own end, so the audit writer keeps an anchor
# outside the table: after every committed batch it writes the seq and hash
# of the newest record (and its transaction) to a head file next to the
# audit key, atomically.  verify_audit() checks the table against it, and a
# writer continues the chain after max(table head, head file), so rows
# deleted at the end leave a gap instead of being reused.
#
# On a node of its own, a superuser who disables the guard triggers:
#
#  - deletes the newest three rows      -> verify_audit() names them
#    ("newest records missing: seq N..M"), the next record gets seq M + 1,
#    not N, and the gap stays visible;
#  - truncates the table                -> verify_audit() names them all,
#    and the chain goes on after them;
#  - removes the head file while the server is down -> verify_audit() says
#    the anchor is missing (until the writer writes a new one);
#  - a malformed head file stops the writer (fail closed) until it is
#    repaired, and verify_audit() names it;
#  - a REPEATABLE READ snapshot older than the newest records sees no
#    false "missing" report.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('anchor');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION vecphi');
my $keys = VecphiTest::audit_key_dir($node);    # the audit key's directory

# $n denials (bad tokens), flushed: $n new records.
sub denials
{
	my ($n) = @_;
	# One session: audit_flush() waits for what this session queued.
	$node->safe_psql('postgres',
		qq{DO \$\$BEGIN FOR i IN 1..$n LOOP BEGIN PERFORM vecphi.set_claims('bad.' || i);
		EXCEPTION WHEN others THEN NULL; END; END LOOP; END\$\$;
		SELECT vecphi.audit_flush();});
	return;
}

# "ok first_bad_seq problem" of verify_audit().
sub verify
{
	return $node->safe_psql('postgres',
		"SELECT CASE WHEN ok THEN 't' ELSE 'f' END || ' ' || coalesce(first_bad_seq::text, '-') || ' ' || coalesce(problem, '-') FROM vecphi.verify_audit()"
	);
}

sub max_seq
{
	return $node->safe_psql('postgres', 'SELECT coalesce(max(seq), 0) FROM vecphi.audit_log');
}

# Run $sql as a superuser with every trigger of the log disabled.
sub tamper
{
	my ($sql) = @_;
	$node->safe_psql(
		'postgres', qq{
		BEGIN;
		ALTER TABLE vecphi.audit_log DISABLE TRIGGER ALL;
		$sql;
		ALTER TABLE vecphi.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;
		ALTER TABLE vecphi.audit_log ENABLE ALWAYS TRIGGER audit_log_no_truncate;
		COMMIT;
	});
	# A writer that stays running remembers the chain; a new one reads it.
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'vecphi audit writer'")
	  or die 'the audit writer did not exit';
	return;
}

denials(10);
my $head = max_seq();
is($head, 10, 'ten records');
is(verify(), 't - -', 'the log verifies');
my @head_files = grep { /head/ } VecphiCheck::dir_files($keys);
is(scalar(@head_files), 1, 'the writer keeps one head file beside the audit key')
  or diag join(' ', VecphiCheck::dir_files($keys));
is(VecphiCheck::file_mode("$keys/$head_files[0]"), 0600, 'mode 0600') if @head_files;
is(join(' ', grep { /\.tmp/ } VecphiCheck::dir_files($keys)), '', 'no temporary file is left');

# ---- the newest three rows deleted ----
tamper('DELETE FROM vecphi.audit_log WHERE seq > 7');
is(verify(), 'f 8 newest records missing: seq 8..10',
	'deleted newest rows: verify_audit() names them');
denials(1);
is(max_seq(), 11, 'the next record continues after the deleted ones (seq 11, not 8)');
like(verify(), qr/^f 11 /, 'and the gap stays visible');
is( $node->safe_psql('postgres', 'SELECT string_agg(seq::text, \',\' ORDER BY seq) FROM vecphi.audit_log WHERE seq > 5'),
	'6,7,11', 'seq 8 to 10 are missing for good');

# ---- everything truncated ----
tamper('TRUNCATE vecphi.audit_log');
is(verify(), 'f 1 newest records missing: seq 1..11', 'truncated: verify_audit() names every record');
denials(2);
is($node->safe_psql('postgres', 'SELECT min(seq) || \' \' || max(seq) FROM vecphi.audit_log'),
	'12 13', 'the chain goes on after the truncated records');
like(verify(), qr/^f 12 the first row is neither/, 'and the start of the table is not the start of the chain');

# ---- a fresh start, then the head file removed with the server down ----
tamper('DELETE FROM vecphi.audit_log');
$node->stop;
unlink "$keys/$_" for grep { /head/ } VecphiCheck::dir_files($keys);
$node->start;
# The table is empty, so without its anchor the chain starts again at 1.
denials(3);
is(verify(), 't - -', 'a new chain with a new head file verifies');
$node->stop;
unlink "$keys/$_" for grep { /head/ } VecphiCheck::dir_files($keys);
$node->start;
like(verify(), qr/^f \d+ .*head file .* is missing/, 'the head file removed: verify_audit() says so');
denials(1);
is(verify(), 't - -', 'the next batch writes it again');

# ---- a malformed head file stops the writer (fail closed) ----
my ($head_file) = grep { /head/ } VecphiCheck::dir_files($keys);
my $good_head = slurp_file("$keys/$head_file");
like($good_head, qr/^\d+ [0-9a-f]{64} \d+\n$/, 'the head file: seq, hash, transaction');
$node->stop;
VecphiCheck::write_file("$keys/$head_file", "garbage\n");
$node->start;
like(
	VecphiCheck::error_of(
		$node, 'postgres', q{
		SET vecphi.audit_timeout = '1s';
		DO $$BEGIN PERFORM vecphi.set_claims('bad.x');
		EXCEPTION WHEN others THEN NULL; END$$;
		SELECT vecphi.audit_flush();}),
	qr/^55000: /,
	'a malformed head file: nothing is written');
like(VecphiCheck::error_of($node, 'postgres', 'SELECT * FROM vecphi.verify_audit()'),
	qr/^XX001: audit head file ".*" is malformed/, 'and verify_audit() says why');
VecphiCheck::write_file("$keys/$head_file", $good_head);
my $before = max_seq();
denials(1);
is(max_seq() - $before, 2, 'with the head file back, the queued record is written with the next');
is(verify(), 't - -', 'and the chain verifies');

# ---- an old snapshot is not a deletion ----
my $rr = $node->background_psql('postgres');
$rr->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM vecphi.audit_log;');
denials(2);
my $old = $rr->query_safe("SELECT CASE WHEN ok THEN 't' ELSE 'f' END || ' ' || coalesce(problem, '-') FROM vecphi.verify_audit()");
is($old, 't -', 'a snapshot taken before the newest batch still verifies');
$rr->query_safe('COMMIT;');
$rr->quit;
is(verify(), 't - -', 'and a new one too');

$node->stop;
done_testing();
