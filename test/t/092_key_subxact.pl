# vecphi: key administration follows the transaction exactly, savepoints
# and PL/pgSQL EXCEPTION blocks included.
#
#  - Rotations rolled back to a savepoint or caught in an EXCEPTION block
#    leave neither rows nor files; the surviving rotation's superseded KEK
#    file is destroyed at commit; the key version in vecphi.tenants, the
#    versions the data keys are wrapped under and the files agree.
#  - A rotation that fails half-way (its error caught) destroys no KEK
#    version that a data key still needs.
#  - create_tenant() in an aborted subtransaction leaves no tenant and no
#    file; the name can be created again.
#  - The tenant cache does not grow with repeated reloads (lookups of an
#    unknown tenant reload it each time).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('key_subxact');
$node->start;
my $keys = VecphiTest::key_dir($node);

sub claims { return VecphiCheck::claims_do(tenant => $_[0], role => 'clinician', sub => 'dr'); }

sub add_note
{
	my ($t, $id) = @_;
	my $c = claims($t);
	$node->safe_psql('postgres',
		"BEGIN; $c INSERT INTO notes VALUES ($id, '$t', vecphi.encrypt('note $id of $t')); COMMIT;");
	return;
}

# Every note of the tenant, decrypted in a new session, or the error.
sub read_notes
{
	my ($t) = @_;
	my $c = claims($t);
	my $sql = "BEGIN; $c SELECT string_agg(vecphi.decrypt(body), ',' ORDER BY id) FROM notes WHERE t = '$t'; COMMIT;";
	my $err = VecphiCheck::error_of($node, 'postgres', $sql);
	return $err unless $err eq 'no error';
	return $node->safe_psql('postgres', $sql);
}

# KEK versions of a tenant that have files, e.g. "2" or "1 3".
sub kek_file_versions
{
	my ($t) = @_;
	return join(' ', sort { $a <=> $b } map { /(?:^|\.)\Q$t\E\.(\d+)\.kek$/ ? $1 : () }
		  VecphiCheck::dir_files($keys));
}

# The tenant's KEK version and the versions its data keys are wrapped under.
sub key_state
{
	my ($t) = @_;
	return $node->safe_psql('postgres',
		"SELECT t.kek_version || ':' || string_agg(DISTINCT k.kek_version::text, ',') "
		  . "FROM vecphi.tenants t JOIN vecphi.keyring k USING (tenant_id) "
		  . "WHERE t.tenant = '$t' GROUP BY t.kek_version");
}

$node->safe_psql('postgres', q{
	CREATE EXTENSION vecphi;
	CREATE TABLE notes (id int PRIMARY KEY, t text, body etext);
	SELECT vecphi.create_tenant('rot');
});
add_note('rot', 1);

# ---- rotations and savepoints ----
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT vecphi.rotate_kek('rot');
	SAVEPOINT a;
	SELECT vecphi.rotate_kek('rot');
	ROLLBACK TO a;
	COMMIT;
});
is(key_state('rot'), '2:2', 'rotate, savepoint, rotate, rollback to it: version 2');
is(kek_file_versions('rot'), '2', 'only the file of version 2 is left');
is(read_notes('rot'), 'note 1 of rot', 'the tenant reads');

$node->safe_psql('postgres', q{
	DO $$
	BEGIN
		PERFORM vecphi.rotate_kek('rot');
		BEGIN
			PERFORM vecphi.rotate_kek('rot');
			RAISE EXCEPTION 'undo the inner rotation';
		EXCEPTION WHEN raise_exception THEN NULL;
		END;
		BEGIN
			PERFORM vecphi.rotate_dek('rot');
		END;
	END $$;
});
is(key_state('rot'), '3:3', 'a rotation caught in an EXCEPTION block is undone, the outer one kept');
is(kek_file_versions('rot'), '3', 'only the file of version 3 is left');
add_note('rot', 2);
is(read_notes('rot'), 'note 1 of rot,note 2 of rot', 'the tenant reads');

$node->safe_psql('postgres', q{
	BEGIN;
	SAVEPOINT a;
	SELECT vecphi.rotate_kek('rot');
	RELEASE a;
	SAVEPOINT b;
	SELECT vecphi.rotate_kek('rot');
	SAVEPOINT c;
	SELECT vecphi.rotate_kek('rot');
	ROLLBACK TO b;
	COMMIT;
});
is(key_state('rot'), '4:4', 'released then rolled-back savepoints: version 4');
is(kek_file_versions('rot'), '4', 'only the file of version 4 is left');
is(read_notes('rot'), 'note 1 of rot,note 2 of rot', 'the tenant reads');

$node->psql('postgres', "BEGIN; SELECT vecphi.rotate_kek('rot'); SAVEPOINT a; SELECT vecphi.rotate_kek('rot'); ROLLBACK;");
is(key_state('rot'), '4:4', 'a rolled-back transaction with nested rotations changes nothing');
is(kek_file_versions('rot'), '4', 'and leaves no file');

# ---- a rotation that fails half-way keeps every version still needed ----
# Tenant half: data key 1 under KEK version 1, data key 2 under version 2
# (the same key, as a half-done rotation by hand would leave it).
$node->safe_psql('postgres', "SELECT vecphi.create_tenant('half')");
add_note('half', 10);
$node->safe_psql('postgres', "SELECT vecphi.rotate_dek('half')");
add_note('half', 11);
my ($f1) = grep { /(?:^|\.)half\.1\.kek$/ } VecphiCheck::dir_files($keys);
(my $f2 = $f1) =~ s/half\.1\.kek$/half.2.kek/;
copy("$keys/$f1", "$keys/$f2") or die "copy: $!";
chmod 0600, "$keys/$f2";
$node->safe_psql('postgres', q{
	UPDATE vecphi.tenants SET kek_version = 2 WHERE tenant = 'half';
	UPDATE vecphi.keyring SET kek_version = 2
		WHERE tenant_id = (SELECT tenant_id FROM vecphi.tenants WHERE tenant = 'half') AND dek_version = 2;
});
is(read_notes('half'), 'note 10 of half,note 11 of half', 'half reads under both versions');
$node->safe_psql('postgres', q{
	DO $$
	BEGIN
		PERFORM vecphi.rotate_kek('half');
	EXCEPTION WHEN data_corrupted THEN RAISE NOTICE 'rotation failed';
	END $$;
});
is(kek_file_versions('half'), '1 2', 'the failed rotation destroyed no KEK version and left no new one');
is(read_notes('half'), 'note 10 of half,note 11 of half', 'every note still reads');

# ---- create_tenant in aborted subtransactions ----
$node->safe_psql('postgres', q{
	DO $$
	BEGIN
		PERFORM vecphi.create_tenant('gone');
		RAISE EXCEPTION 'undo';
	EXCEPTION WHEN raise_exception THEN NULL;
	END $$;
	BEGIN;
	SAVEPOINT a;
	SELECT vecphi.create_tenant('gone2');
	ROLLBACK TO a;
	COMMIT;
});
is($node->safe_psql('postgres', "SELECT count(*) FROM vecphi.tenants WHERE tenant IN ('gone', 'gone2')"),
	'0', 'tenants created in aborted subtransactions do not exist');
is(kek_file_versions('gone') . '|' . kek_file_versions('gone2'), '|', 'nor do their KEK files');
$node->safe_psql('postgres', "SELECT vecphi.create_tenant('gone')");
add_note('gone', 20);
is(read_notes('gone'), 'note 20 of gone', 'the name is created again and works');

# ---- the tenant cache does not grow as it reloads ----
my $unknown = VecphiTest::token(tenant => 'no_such_tenant', role => 'clinician', sub => 'x');
my $probe = q{SELECT count(*) || ':' || coalesce(sum(total_bytes), 0)
	FROM pg_backend_memory_contexts
	WHERE name = 'vecphi key cache' OR parent = 'vecphi key cache'};
(my $unknown_sql = $unknown) =~ s/'/''/g;
like(VecphiCheck::error_of($node, 'postgres',
		"BEGIN; SELECT vecphi.set_claims('$unknown_sql'); SELECT vecphi.encrypt('x'::text);"),
	qr/tenant "no_such_tenant" has no keys/, 'a lookup of an unknown tenant reloads the cache and fails');
# One session: each transaction sets claims for an unknown tenant and
# tries to encrypt, which reloads the tenant cache and fails.
my $attempt = "BEGIN; SELECT vecphi.set_claims('$unknown_sql'); SELECT vecphi.encrypt('x'::text); ROLLBACK;\n";
my ($out, $err) = ('', '');
$node->psql('postgres', ($attempt x 10) . "$probe;\n" . ($attempt x 500) . "$probe;\n",
	stdout => \$out, stderr => \$err, on_error_stop => 0);
my ($after10, $after510) = grep { /^\d+:\d+$/ } split /\n/, $out;
note "key cache after 10 reloads: $after10; after 510: $after510";
my ($n10, $b10) = split /:/, $after10;
my ($n510, $b510) = split /:/, $after510;
is($n510, $n10, 'the number of key cache memory contexts is the same after 500 more reloads');
cmp_ok($b510, '<=', $b10 + 16384, 'and the key cache memory has not grown');

$node->stop;
done_testing();
