# vecphi: migrating real[], float8[] and text columns with
# vecphi.migrate_column(), no pgvector needed.
#
# docs (120 rows, three tenants) has emb real[] of 600 values (so its rows
# go to TOAST), emb8 float8[] of 8 and body text.  The one-key ALTER TABLE
# (the assignment cast real[] -> evector, text -> etext) refuses; an app
# role with a token, and an owner who is not a key administrator, cannot
# migrate; the migration of emb is killed part way and resumed.  Then
# every row of each column is under its own tenant's key and decrypts to
# its original value, and no plaintext of any row is left in the table's
# heap, TOAST or index files.
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

my $node = VecphiTest::new_node('migrate_arrays');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION vecphi');

my $m = VecphiMigrate->new($node,
	columns => [ [ emb => 'real[]', 600 ], [ emb8 => 'float8[]', 8 ], [ body => 'text', 0 ] ]);
$m->load(rows => 120);
ok($node->safe_psql('postgres', q{
		SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE oid = 'docs'::regclass}) eq 't',
	'the 600-value arrays are in TOAST');
ok($m->plaintext_found('emb') >= 200, 'before: real[] floats found in the files');
ok($m->plaintext_found('emb8') >= 200, 'before: float8[] values found in the files');
ok($m->plaintext_found('body') >= 100, 'before: texts found in the files');

$m->check_refusals('emb', 'ALTER TABLE docs ALTER COLUMN emb TYPE evector');
like(VecphiCheck::error_of($node, 'postgres', 'ALTER TABLE docs ALTER COLUMN body TYPE etext'),
	qr/^0A000: cannot encrypt column "body"/, 'text -> etext refuses');
like(VecphiCheck::error_of($node, 'postgres', 'ALTER TABLE docs ALTER COLUMN emb8 TYPE evector USING emb8::real[]'),
	qr/^0A000: cannot encrypt column "emb8"/, 'float8[] -> evector refuses');

$m->migrate_killed('emb', batch => 5, kill_after => 15);
$m->migrate('emb8', batch => 50);
$m->migrate('body');

$m->check_values('emb');
$m->check_values('emb8');
$m->check_values('body');
$m->check_audit;

$node->stop;
done_testing();
