# vecphi: logical replication of a protected table and of the key
# administration (docs/operations.md, "Logical replication").
#
# Publisher and subscriber share one key provider (a vecphi.kek_command "KMS"
# both reach, as every host of a deployment would). The publisher publishes
# the protected table and vecphi's key tables; the subscriber is made from
# the publisher's dump with those tables emptied, then subscribes.
#  1. The initial copy: the claimant reads on the subscriber what it reads on
#     the publisher, through the subscriber's own ehnsw index.
#  2. Key administration on the publisher reaches the subscriber by
#     replication alone: a tenant created after the subscription, its rows,
#     a data key rotation and a KEK rotation; rows written under the new keys
#     decrypt there.
#  3. shred_tenant on the publisher: on the subscriber the tenant's data is
#     unreadable, in a new session and in a session that had its data key
#     cached before the shred arrived; the other tenant's data still reads.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my %claims = map { $_ => VecphiCheck::claims_do(tenant => $_, role => 'clinician', sub => "dr_$_") }
  qw(north south late);

sub readback
{
	my ($tenant) = @_;
	return qq{
		SET ROLE app;
		BEGIN;
		$claims{$tenant}
		SET LOCAL enable_seqscan = off;
		SELECT string_agg(id || ':' || vecphi.decrypt(body), ',' ORDER BY id) FROM
			(SELECT id, body FROM notes ORDER BY embedding <-> '[5,5,5]' LIMIT 50) AS s;
		COMMIT;
	};
}

# The shared "KMS": one hex file per keyring, tenant and version.
my $kms = PostgreSQL::Test::Utils::tempdir('kms');
chmod 0700, $kms;
my $n = 0;
sub kms_create
{
	my ($keyring, $tenant, $version) = @_;
	$n++;
	VecphiCheck::write_file("$kms/$keyring.$tenant.$version.hex", sprintf('%064x', 1000 + $n) . "\n");
}

sub new_kms_node
{
	my ($name) = @_;
	my $node = VecphiTest::new_node($name, allows_streaming => 'logical');
	$node->append_conf('postgresql.conf', qq{
vecphi.key_directory = ''
vecphi.kek_command = 'cat $kms/%k.%t.%v.hex'
vecphi.kek_destroy_command = 'rm $kms/%k.%t.%v.hex'
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE ROLE app; CREATE DATABASE clinic');
	return $node;
}

my $pub = new_kms_node('publisher');
$pub->safe_psql('clinic', 'CREATE EXTENSION vecphi');
my $keyring = $pub->safe_psql('clinic', 'SELECT vecphi.keyring_id()');
kms_create($keyring, $_, 1) for qw(north south);
$pub->safe_psql('clinic', qq{
	SELECT vecphi.create_tenant('north');
	SELECT vecphi.create_tenant('south');
	CREATE TABLE notes (id int PRIMARY KEY, tenant text NOT NULL DEFAULT vecphi.tenant(),
		category text NOT NULL DEFAULT 'clinical', body etext, embedding evector(3));
	SELECT vecphi.protect('notes', 'tenant', 'category');
	CREATE INDEX notes_embedding ON notes USING ehnsw (embedding evector_l2_ops);
	GRANT SELECT, INSERT, UPDATE ON notes TO app;
	SET ROLE vecphi_security_officer;
	INSERT INTO vecphi.role_categories VALUES ('clinician', 'clinical');
	RESET ROLE;
	SET ROLE app;
	BEGIN; $claims{north}
	INSERT INTO notes (id, body, embedding) SELECT g, ('north ' || g)::etext, ARRAY[g, g, g]::real[]
		FROM generate_series(1, 10) AS g;
	COMMIT;
	BEGIN; $claims{south}
	INSERT INTO notes (id, body, embedding) SELECT g, ('south ' || g)::etext, ARRAY[g, 1, g]::real[]
		FROM generate_series(101, 110) AS g;
	COMMIT;
});

# What to publish: the table, and the key administration.
my @key_tables = map { "vecphi.$_" } qw(keyring_identity tenants keyring role_categories shredded_tenants);
$pub->safe_psql('clinic', 'CREATE PUBLICATION notes_pub FOR TABLE notes');
$pub->safe_psql('clinic', 'CREATE PUBLICATION vecphi_keys FOR TABLE ' . join(', ', @key_tables));

# The subscriber: the publisher's schema and configuration from its dump,
# then the published tables emptied so the initial copy fills them.
my $sub = new_kms_node('subscriber');
my $dump = $pub->basedir . '/clinic.sql';
$pub->command_ok([ 'pg_dump', '-h', $pub->host, '-p', $pub->port, '-f', $dump, 'clinic' ], 'pg_dump of the publisher');
$sub->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $sub->host, '-p', $sub->port,
	'-f', $dump, '-d', 'clinic' ], 'the subscriber is made from the dump');
$sub->safe_psql('clinic', 'TRUNCATE notes, ' . join(', ', @key_tables));
my $connstr = $pub->connstr . ' dbname=clinic';
$sub->safe_psql('clinic', "CREATE SUBSCRIPTION vecphi_keys_sub CONNECTION '$connstr' PUBLICATION vecphi_keys");
$sub->wait_for_subscription_sync($pub, 'vecphi_keys_sub');
$sub->safe_psql('clinic', "CREATE SUBSCRIPTION notes_sub CONNECTION '$connstr' PUBLICATION notes_pub");
$sub->wait_for_subscription_sync($pub, 'notes_sub');

# ---- 1. the initial copy ----
for my $t (qw(north south))
{
	my $expected = $pub->safe_psql('clinic', readback($t));
	like($expected, qr/^\d+:$t \d+(,\d+:$t \d+){9}$/, "publisher: $t reads its 10 rows");
	is($sub->safe_psql('clinic', readback($t)), $expected, "subscriber: $t reads the same rows");
}
like($sub->safe_psql('clinic', "BEGIN; $claims{north} EXPLAIN (COSTS OFF) SELECT id FROM notes ORDER BY embedding <-> '[5,5,5]' LIMIT 5; COMMIT;"),
	qr/Index Scan using notes_embedding/, 'subscriber: through its own ehnsw index');

# ---- 2. key administration after the subscription ----
kms_create($keyring, 'late', 1);
$pub->safe_psql('clinic', "SELECT vecphi.create_tenant('late')");
$pub->safe_psql('clinic', "SELECT vecphi.rotate_dek('north')");
kms_create($keyring, 'south', 2);
$pub->safe_psql('clinic', "SELECT vecphi.rotate_kek('south')");
$pub->safe_psql('clinic', qq{
	SET ROLE app;
	BEGIN; $claims{late} INSERT INTO notes (id, body, embedding) VALUES (201, 'late 201', '[5,5,5]'); COMMIT;
	BEGIN; $claims{north} INSERT INTO notes (id, body, embedding) VALUES (11, 'north 11', '[5,5,6]'); COMMIT;
	BEGIN; $claims{south} INSERT INTO notes (id, body, embedding) VALUES (111, 'south 111', '[5,1,5]'); COMMIT;
});
$pub->wait_for_catchup('notes_sub');
$pub->wait_for_catchup('vecphi_keys_sub');
is($sub->safe_psql('clinic', 'SELECT tenant, kek_version, current_dek FROM vecphi.tenants ORDER BY 1'),
	$pub->safe_psql('clinic', 'SELECT tenant, kek_version, current_dek FROM vecphi.tenants ORDER BY 1'),
	'subscriber: the tenants, KEK versions and current data keys match the publisher');
is($sub->safe_psql('clinic', readback('late')), '201:late 201',
	'subscriber: a tenant created after the subscription reads its row');
like($sub->safe_psql('clinic', readback('north')), qr/(^|,)11:north 11(,|$)/,
	'subscriber: a row under north\'s rotated data key decrypts');
like($sub->safe_psql('clinic', readback('south')), qr/(^|,)111:south 111(,|$)/,
	'subscriber: after south\'s KEK rotation old and new rows decrypt');
like($sub->safe_psql('clinic', readback('south')), qr/^\d+:south \d+(,\d+:south \d+){10}$/,
	'subscriber: all 11 of south\'s rows');

# ---- 3. shred on the publisher ----
# A subscriber session that has north's data key cached.
my $cached = $sub->background_psql('clinic', on_error_stop => 0);
$cached->query_safe("SET ROLE app");
like($cached->query_safe(qq{BEGIN; $claims{north} SELECT vecphi.decrypt(body) FROM notes WHERE id = 1; COMMIT;}),
	qr/north 1/, 'subscriber: a session reads north before the shred');

$pub->safe_psql('clinic', "SELECT vecphi.shred_tenant('north')");
$pub->wait_for_catchup('vecphi_keys_sub');
is($sub->safe_psql('clinic', "SELECT count(*) FROM vecphi.shredded_tenants WHERE tenant = 'north'"),
	'1', 'subscriber: the shred record arrived');
like(VecphiCheck::error_of($sub, 'clinic', readback('north')), qr/^58P01: .*north/,
	'subscriber: a new session cannot decrypt north\'s data');
my $after = $cached->query(qq{BEGIN; $claims{north} SELECT vecphi.decrypt(body) FROM notes WHERE id = 1; COMMIT;});
unlike($after, qr/north 1/, 'subscriber: nor can the session that had north\'s key cached');
like($cached->{stderr}, qr/ERROR:  .*north/, 'subscriber: that session gets an error naming the tenant');
like($sub->safe_psql('clinic', readback('south')), qr/^\d+:south \d+(,\d+:south \d+){10}$/,
	'subscriber: south still reads');
$cached->quit;

$sub->safe_psql('clinic', 'DROP SUBSCRIPTION notes_sub; DROP SUBSCRIPTION vecphi_keys_sub');
$sub->stop;
$pub->stop;
done_testing();
