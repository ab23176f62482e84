# vecphi: ALTER EXTENSION vecphi UPDATE from every released version.
#
#  1. A database created at 0.1.0 (the first released version), filled with
#     tenants, a protected table with an ehnsw index, searches (so audit
#     records) and role grants, is updated to the default version.
#  2. After the update the data decrypts to the same values, the index is
#     still used and returns the same rows, new rows go into it, and the
#     audit chain verifies across the update and goes on growing.
#  3. The updated database holds exactly the objects of a fresh
#     CREATE EXTENSION vecphi, with the same definitions, privileges and
#     settings (so the update scripts and a new install cannot drift apart).
#  4. pg_available_extension_versions offers an update path from every
#     version to the default one.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $claims = VecphiCheck::claims_do(
	tenant => 'st_marys',
	role => 'clinician',
	sub => 'dr_a');
my $claims_b = VecphiCheck::claims_do(
	tenant => 'county',
	role => 'clinician',
	sub => 'dr_b');

my $node = VecphiTest::new_node('update');
$node->start;

my $default_version = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'vecphi'");
my @released = split /\n/,
  $node->safe_psql('postgres',
	"SELECT version FROM pg_available_extension_versions WHERE name = 'vecphi' "
	  . "AND version <> '$default_version' ORDER BY string_to_array(version, '.')::int[]");
ok(scalar(@released) >= 1, "released versions before $default_version: @released");

# ---- 4. an update path from every released version ----
for my $from (@released)
{
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM pg_extension_update_paths('vecphi') "
			  . "WHERE source = '$from' AND target = '$default_version' AND path IS NOT NULL"),
		'1',
		"an update path leads from $from to $default_version");
}

# What a claimant of each tenant reads back, and what the index finds.
my $readback = qq{
	BEGIN;
	$claims
	SELECT id, vecphi.decrypt(body), vecphi.decrypt(embedding), vecphi.key_id(embedding)
	FROM notes WHERE tenant = 'st_marys' ORDER BY id;
	COMMIT;
	BEGIN;
	$claims_b
	SELECT id, vecphi.decrypt(body) FROM notes WHERE tenant = 'county' ORDER BY id;
	COMMIT;
};
my $search = qq{
	BEGIN;
	$claims
	SET LOCAL enable_seqscan = off;
	SELECT string_agg(id::text, ',') FROM
		(SELECT id FROM notes ORDER BY embedding <-> '[3,1,4,1]' LIMIT 5) AS s;
	COMMIT;
};
my $explain = qq{
	BEGIN;
	$claims
	EXPLAIN (COSTS OFF) SELECT id FROM notes ORDER BY embedding <-> '[3,1,4,1]' LIMIT 5;
	COMMIT;
};

# A digest of every object the extension owns: its identity, and for
# functions, relations, types and operator families what defines them
# (source, settings, security, volatility, privileges, columns, members).
my $members = q{
	SELECT pg_describe_object(d.classid, d.objid, 0) AS object,
		CASE d.classid
		WHEN 'pg_proc'::regclass THEN
			(SELECT concat_ws(' | ', pg_get_function_arguments(p.oid),
				pg_get_function_result(p.oid), p.prosrc, p.probin IS NOT NULL,
				p.prosecdef, p.provolatile, p.proparallel, p.proisstrict,
				p.procost, p.proconfig::text, p.proacl::text, p.prokind)
			 FROM pg_proc p WHERE p.oid = d.objid)
		WHEN 'pg_class'::regclass THEN
			(SELECT concat_ws(' | ', c.relkind, c.relacl::text, c.relrowsecurity,
				c.relforcerowsecurity, c.reloptions::text,
				(SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
					|| CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
					|| coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
					', ' ORDER BY a.attnum)
				 FROM pg_attribute a
				 LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
				 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
				(SELECT string_agg(pg_get_constraintdef(k.oid), ', ' ORDER BY k.conname)
				 FROM pg_constraint k WHERE k.conrelid = c.oid),
				(SELECT string_agg(pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1)
				 FROM pg_index i WHERE i.indrelid = c.oid),
				(SELECT string_agg(t.tgname || ' ' || pg_get_triggerdef(t.oid), ', ' ORDER BY t.tgname)
				 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
				(SELECT string_agg(pol.polname || ' ' || pol.polcmd::text || ' ' || pol.polpermissive
					|| ' ' || coalesce(pg_get_expr(pol.polqual, pol.polrelid), '')
					|| ' ' || coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), ''),
					', ' ORDER BY pol.polname)
				 FROM pg_policy pol WHERE pol.polrelid = c.oid))
			 FROM pg_class c WHERE c.oid = d.objid)
		WHEN 'pg_type'::regclass THEN
			(SELECT concat_ws(' | ', t.typinput::text, t.typoutput::text, t.typreceive::text,
				t.typsend::text, t.typmodin::text, t.typstorage, t.typalign, t.typacl::text)
			 FROM pg_type t WHERE t.oid = d.objid)
		WHEN 'pg_opfamily'::regclass THEN
			(SELECT concat_ws(' | ',
				(SELECT string_agg(o.amopstrategy || ' ' || o.amopopr::regoperator::text
					|| ' ' || o.amoppurpose::text, ', ' ORDER BY 1)
				 FROM pg_amop o WHERE o.amopfamily = d.objid),
				(SELECT string_agg(pr.amprocnum || ' ' || pr.amproc::regprocedure::text, ', ' ORDER BY 1)
				 FROM pg_amproc pr WHERE pr.amprocfamily = d.objid))
			)
		WHEN 'pg_namespace'::regclass THEN
			(SELECT n.nspacl::text FROM pg_namespace n WHERE n.oid = d.objid)
		ELSE ''
		END AS definition
	FROM pg_depend d
	WHERE d.refclassid = 'pg_extension'::regclass
	  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'vecphi')
	  AND d.deptype = 'e'
	ORDER BY 1, 2;
};

for my $from (@released)
{
	my $db = "from_" . ($from =~ s/\./_/gr);

	# ---- 1. a database at the released version, with data ----
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION vecphi VERSION '$from'");
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'vecphi'"),
		$from, "$db: installed at $from");
	$node->safe_psql(
		$db, qq{
		SELECT vecphi.create_tenant('st_marys');
		SELECT vecphi.create_tenant('county');
		CREATE TABLE notes (id int PRIMARY KEY, tenant text NOT NULL DEFAULT vecphi.tenant(),
			category text NOT NULL DEFAULT 'clinical', body etext, embedding evector(4));
		SELECT vecphi.protect('notes', 'tenant', 'category');
		DO \$\$BEGIN
			IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN
				CREATE ROLE app NOLOGIN;
			END IF;
		END\$\$;
		GRANT SELECT, INSERT ON notes TO app;
		CREATE INDEX notes_embedding ON notes USING ehnsw (embedding evector_l2_ops)
			WITH (m = 8, ef_construction = 32);
		SET ROLE vecphi_security_officer;
		INSERT INTO vecphi.role_categories VALUES ('clinician', 'clinical');
		RESET ROLE;
		BEGIN;
		$claims
		INSERT INTO notes (id, body, embedding)
			SELECT g, ('note ' || g)::etext, ARRAY[g % 7, g % 5, g % 3, g % 11]::real[]
			FROM generate_series(1, 60) AS g;
		COMMIT;
		BEGIN;
		$claims_b
		INSERT INTO notes (id, body, embedding) VALUES (1001, 'county note', '[3,1,4,1]');
		COMMIT;
	});
	$node->safe_psql($db, "SELECT vecphi.rotate_dek('st_marys')");
	$node->safe_psql(
		$db, qq{
		BEGIN;
		$claims
		INSERT INTO notes (id, body, embedding) VALUES (61, 'after rotation', '[3,1,4,2]');
		COMMIT;
	});
	my $before = $node->safe_psql($db, $readback);
	my $found_before = $node->safe_psql($db, $search);
	like($found_before, qr/^61,/, "$db: the index finds the nearest row before the update");
	my $audit_before = $node->safe_psql($db, 'SELECT count(*) FROM vecphi.audit_log');
	ok($audit_before > 0, "$db: $audit_before audit records before the update");

	# ---- 2. update, then everything still holds ----
	$node->safe_psql($db, 'ALTER EXTENSION vecphi UPDATE');
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'vecphi'"),
		$default_version, "$db: updated from $from to $default_version");
	is($node->safe_psql($db, $readback), $before, "$db: the same claims decrypt the same values");
	is($node->safe_psql($db, $search), $found_before, "$db: the index returns the same rows");
	like($node->safe_psql($db, $explain), qr/Index Scan using notes_embedding/,
		"$db: the search still uses the ehnsw index");
	is($node->safe_psql($db, "SELECT vecphi.index_check('notes_embedding')"),
		't', "$db: the index checks out");
	$node->safe_psql(
		$db, qq{
		BEGIN;
		$claims
		INSERT INTO notes (id, body, embedding) VALUES (62, 'after update', '[3,1,4,1]');
		COMMIT;
	});
	like($node->safe_psql($db, $search), qr/^62,61,/,
		"$db: a row written after the update is found through the index");
	is($node->safe_psql($db, 'SELECT vecphi.index_check(\'notes_embedding\')'),
		't', "$db: the index checks out after the insert");
	is( VecphiCheck::error_of(
			$node, $db, qq{
		BEGIN;
		$claims_b
		SELECT vecphi.decrypt(body) FROM notes WHERE id = 1001;
		COMMIT;
	}),
		'no error',
		"$db: the other tenant's claimant still reads its own row");
	is( $node->safe_psql(
			$db, qq{
		BEGIN;
		$claims_b
		SET LOCAL ROLE app;
		SELECT count(*) FROM notes;
		COMMIT;
	}),
		'1',
		"$db: and still sees only its own row (as an application role: the superuser running the test bypasses row-level security)");
	my $verify = $node->safe_psql($db,
		"SELECT ok || ' ' || coalesce(problem, '-') || ' ' || records_lost FROM vecphi.verify_audit()");
	is($verify, 'true - 0', "$db: the audit chain verifies across the update");
	cmp_ok($node->safe_psql($db, 'SELECT count(*) FROM vecphi.audit_log'),
		'>', $audit_before, "$db: the audit goes on recording after the update");
}

# ---- 3. the same objects as a fresh install ----
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION vecphi');
my $fresh = $node->safe_psql('fresh', $members);
my $nfresh = () = $fresh =~ /\n/g;
cmp_ok($nfresh, '>', 100, "a fresh install owns " . ($nfresh + 1) . " objects");
for my $from (@released)
{
	my $db = "from_" . ($from =~ s/\./_/gr);
	my $updated = $node->safe_psql($db, $members);
	if ($updated eq $fresh)
	{
		pass("$db: the updated extension owns exactly a fresh install's objects");
	}
	else
	{
		# Name the differences, not the whole digest.
		my %f = map { $_ => 1 } split /\n/, $fresh;
		my %u = map { $_ => 1 } split /\n/, $updated;
		diag("only after the update: $_") for grep { !$f{$_} } sort keys %u;
		diag("only in a fresh install: $_") for grep { !$u{$_} } sort keys %f;
		fail("$db: the updated extension owns exactly a fresh install's objects");
	}
}

$node->stop;
done_testing();
