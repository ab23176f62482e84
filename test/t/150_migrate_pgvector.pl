# vecphi: migrating a pgvector table with vecphi.migrate_column().
#
# docs (300 rows, three tenants) has emb vector(16) with an HNSW index
# (vector_cosine_ops, m 8, ef_construction 32) and emb_l2 vector(8) with
# an L2 one.  The one-key ALTER TABLE .. TYPE evector USING emb::text::evector
# refuses; an app role with a token, and an owner who is not a key
# administrator, cannot migrate; the migration of emb is killed part way
# (pg_terminate_backend) and resumed.  Then: every row under its own
# tenant's key and decrypting to its original floats, each index rebuilt
# as ehnsw with the matching opclass and its m and ef_construction, a
# search through it, and no plaintext float of any row in the table's
# files (heap, TOAST, indexes, and the pgvector index files it had).
#
# Needs pgvector in the PostgreSQL under test (test/run_tests.sh builds it
# from ../shared/bench/ with test/tools/pgvector.sh); skips without it.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiMigrate;
use VecphiTest;

my $node = VecphiTest::new_node('migrate_pgvector');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION vecphi');
my ($rc, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION vector');
if ($rc != 0)
{
	$node->stop;
	plan skip_all => 'no pgvector in this PostgreSQL (test/tools/pgvector.sh builds it from ../shared/bench/)';
}

my $m = VecphiMigrate->new($node,
	columns => [ [ emb => 'vector(16)', 16 ], [ emb_l2 => 'vector(8)', 8 ] ]);
$m->load(rows => 300);
$node->safe_psql('postgres', q{
	CREATE INDEX docs_emb_idx ON docs USING hnsw (emb vector_cosine_ops)
		WITH (m = 8, ef_construction = 32);
	CREATE INDEX docs_emb_l2_idx ON docs USING hnsw (emb_l2 vector_l2_ops);
	CHECKPOINT;
});
push @{ $m->{old_files} }, VecphiTest::relation_files($node, 'postgres', 'docs');

ok($m->plaintext_found('emb') >= 600, 'before: the plaintext floats are found in the files');

$m->check_refusals('emb', 'ALTER TABLE docs ALTER COLUMN emb TYPE evector USING emb::text::evector');
like(VecphiCheck::error_of($node, 'postgres', 'ALTER TABLE docs ALTER COLUMN emb TYPE evector(16) USING emb::real[]'),
	qr/^0A000: /, 'the assignment cast real[] -> evector refuses too');
is($node->safe_psql('postgres', "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'docs'::regclass AND attname = 'emb'"),
	'vector(16)', 'emb unchanged by the refusals');

$m->migrate_killed('emb', batch => 10, kill_after => 30);
# Under a search_path without pgvector's and vecphi's schema: the types,
# the cast and the opclasses are found by OID and qualified names.
$m->migrate('emb_l2', batch => 100, search_path => 'pg_catalog');

is( $node->safe_psql('postgres', q{
		SELECT string_agg(format('%s %s', attname, format_type(atttypid, atttypmod)), ', ' ORDER BY attname)
		  FROM pg_attribute WHERE attrelid = 'docs'::regclass AND attnum > 0 AND NOT attisdropped
		   AND attname LIKE 'emb%'}),
	'emb evector(16), emb_l2 evector(8)', 'columns swapped in under their names with their dimensions');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(format('%s %s %s %s', c.relname, am.amname, opc.opcname, c.reloptions), '; ' ORDER BY c.relname)
		  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
		  JOIN pg_opclass opc ON opc.oid = i.indclass[0]
		 WHERE i.indrelid = 'docs'::regclass AND NOT i.indisprimary}),
	'docs_emb_idx ehnsw evector_cosine_ops {m=8,ef_construction=32}; docs_emb_l2_idx ehnsw evector_l2_ops ',
	'indexes rebuilt as ehnsw: opclass, m and ef_construction kept');

# A search through the rebuilt index: tenant mt_b's (row 1's) nearest rows.
my $claims_b = VecphiCheck::claims_do(tenant => 'mt_b', role => 'clinician', sub => 'migrate_test');
my $q = '[' . join(',', @{ $m->{rows}{1}{emb} }) . ']';
my $plan = $node->safe_psql('postgres', qq{
	BEGIN; $claims_b SET LOCAL enable_seqscan = off;
	EXPLAIN (COSTS OFF) SELECT id FROM docs ORDER BY emb <=> '$q'::evector LIMIT 5;
	COMMIT;});
like($plan, qr/docs_emb_idx/, 'the search uses the ehnsw index');
is( $node->safe_psql('postgres', qq{
		BEGIN; $claims_b SET LOCAL enable_seqscan = off;
		SELECT id FROM docs ORDER BY emb <=> '$q'::evector LIMIT 1;
		COMMIT;}),
	'1', 'mt_b: the nearest row to row 1\'s vector is row 1');

$m->check_values('emb');
$m->check_values('emb_l2');
$m->check_audit;

$node->stop;
done_testing();
