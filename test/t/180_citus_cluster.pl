# vecphi on Citus: a coordinator and two workers start with
# shared_preload_libraries = 'citus,vecphi', every node has citus and vecphi
# at the same version, and a distributed table with an evector column and an
# ehnsw index gets shards (with the index) on both workers.  Skipped when
# Citus is not installed (test/setup.sh builds it from ../shared/citus).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiTest;
use VecphiCitus;

VecphiCitus::skip_unless_citus();

my $c = VecphiCitus::new_cluster('c180', workers => 2);
my $coord = $c->{coordinator};
is(scalar @{ $c->{nodes} }, 3, 'a coordinator and two workers');

# The preload order Citus needs, on every node.
my @preload = VecphiCitus::on_all($c, 'SHOW shared_preload_libraries');
is_deeply(\@preload, [ ('citus,vecphi') x 3 ],
	'every node preloads citus first, then vecphi');

# Both workers are registered and active.
is( $coord->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_dist_node
		  WHERE noderole = 'primary' AND isactive AND shouldhaveshards}),
	'2',
	'the coordinator knows two active workers');

# Every node has both extensions, at the coordinator's versions.
my $versions = q{SELECT string_agg(extname || ' ' || extversion, ', ' ORDER BY extname)
	FROM pg_extension WHERE extname IN ('citus', 'vecphi')};
my @v = VecphiCitus::on_all($c, $versions);
like($v[0], qr/^citus \S+, vecphi \S+$/, "the coordinator has citus and vecphi ($v[0])");
is_deeply(\@v, [ ($v[0]) x 3 ], 'every worker has the same citus and vecphi versions');

# The same KEK store and JWT secret file on every node, an audit key each.
my @kd = VecphiCitus::on_all($c, 'SHOW vecphi.key_directory');
is_deeply(\@kd, [ ($c->{key_dir}) x 3 ], 'every node uses the shared key directory');
my @sf = VecphiCitus::on_all($c, 'SHOW vecphi.jwt_secret_file');
is_deeply(\@sf, [ ($c->{secret_file}) x 3 ], 'every node uses the shared JWT secret file');
my @ak = VecphiCitus::on_all($c, 'SHOW vecphi.audit_key_file');
my %ak = map { $_ => 1 } @ak;
is(scalar keys %ak, 3, 'every node has an audit key of its own');

# A distributed table with an evector column and an ehnsw index.
$coord->safe_psql(
	'postgres', q{
	CREATE TABLE docs (tenant text NOT NULL, id int NOT NULL, emb evector(3),
		PRIMARY KEY (tenant, id));
	SELECT create_distributed_table('docs', 'tenant');
	CREATE INDEX docs_emb ON docs USING ehnsw (emb evector_l2_ops);
});
is( $coord->safe_psql(
		'postgres', q{SELECT count(DISTINCT nodeport)
		  FROM pg_dist_shard_placement p JOIN pg_dist_shard s USING (shardid)
		  WHERE s.logicalrelid = 'docs'::regclass}),
	'2',
	'the distributed table has shards on both workers');

for my $w (@{ $c->{workers} })
{
	my $name = $w->name;
	# Citus hides shards from the catalogs of a worker, except from the
	# application names given here.
	my ($shards, $indexes) = split /\|/, $w->safe_psql(
		'postgres', VecphiCitus::SHOW_SHARDS . q{
		SELECT (SELECT count(*) FROM pg_class
		         WHERE relname ~ '^docs_[0-9]+$' AND relkind = 'r'),
		       (SELECT count(*) FROM pg_index i
		         JOIN pg_class ic ON ic.oid = i.indexrelid
		         JOIN pg_am a ON a.oid = ic.relam
		         WHERE a.amname = 'ehnsw' AND ic.relname ~ '^docs_emb_[0-9]+$')});
	cmp_ok($shards, '>', 0, "$name holds shards of docs");
	is($indexes, $shards, "$name has an ehnsw index on each of its shards");
}

# A worker added later gets the extensions too.
my $w3 = VecphiCitus::add_worker($c, 'c180_w3');
is($w3->safe_psql('postgres', $versions), $v[0],
	'a worker added later has the same citus and vecphi versions');
is(scalar @{ $c->{nodes} }, 4, 'add_worker appends the node');

VecphiCitus::stop_cluster($c);
done_testing();
