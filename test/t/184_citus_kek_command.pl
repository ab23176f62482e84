# vecphi on Citus with the supported key provider (issue #16, "Keys across
# nodes"): every node gets its KEKs from one key service through
# vecphi.kek_command (examples/kek/vault_kek.py against the stand-in
# test/tools/fake_kms.py, KV engine), no node has a key directory.  Only
# the coordinator may create keys at the service (create_missing = true in
# its configuration); the workers only read them (create_missing = false)
# and never destroy them.
#
# Checked: create_tenant makes the KEKs at the service and the workers
# build and search ehnsw indexes on their shards with them; after
# rotate_kek the workers read the new version from the service; while the
# service is down a worker's search fails cleanly (58P01, naming no key) and
# works again when it is back; shred_tenant destroys the tenant's keys at
# the service once, from the coordinator: the tenant's shards are then
# unreadable on every worker, the other tenant's are not, and no worker
# asked the service to make a new key for the shredded tenant; no KEK is in
# any node's log.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use IPC::Run qw(start);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiCitus;
use VecphiTest;

VecphiCitus::skip_unless_citus();

my $src = VecphiTest::source_dir();
my $provider = "$src/examples/kek/vault_kek.py";
my $kms = PostgreSQL::Test::Utils::tempdir('c184_kms');
chmod 0700, $kms;
VecphiCheck::write_file("$kms/token", "s.test-token-citus\n");
chmod 0600, "$kms/token";
my $service = start([ '/usr/bin/python3', "$src/test/tools/fake_kms.py", "$kms/token",
	"$kms/port", "$kms/requests.log" ]);
for (1 .. 100)
{
	last if -f "$kms/port";
	select(undef, undef, undef, 0.1);
}
my $port = slurp_file("$kms/port");
my $switch = sub {
	my ($down) = @_;
	system('/usr/bin/python3', '-c',
		"import urllib.request,json; urllib.request.urlopen(urllib.request.Request("
		  . "'http://127.0.0.1:$port/v1/sys/fake/down', data=json.dumps({'down': $down}).encode(), method='POST'))") == 0
	  or die 'cannot switch the fake service';
};

# Each node reads vault.conf from its own data directory (a backend's
# working directory), so one kek_command serves nodes configured apart.
my $cmd = "/usr/bin/python3 $provider vault.conf";
my $c = VecphiCitus::new_cluster(
	'c184',
	workers => 2,
	conf => qq{vecphi.key_directory = ''
vecphi.kek_command = '$cmd get %k %t %v'
vecphi.kek_destroy_command = '$cmd destroy %k %t %v'
});
my $coord = $c->{coordinator};
my @workers = @{ $c->{workers} };
for my $node (@{ $c->{nodes} })
{
	my $create = $node == $coord ? 'true' : 'false';
	VecphiCheck::write_file($node->data_dir . '/vault.conf', <<"EOF");
[vault]
address = http://127.0.0.1:$port
token_file = $kms/token
engine = kv
create_missing = $create
timeout = 5
EOF
	chmod 0600, $node->data_dir . '/vault.conf';
}

my $claims_a = VecphiCheck::claims_do(tenant => 'hosp_a', role => 'clinician', sub => 'dr_a');
my $claims_b = VecphiCheck::claims_do(tenant => 'hosp_b', role => 'clinician', sub => 'dr_b');
$coord->safe_psql(
	'postgres', q{
	SELECT vecphi.create_tenant('hosp_a'), vecphi.create_tenant('hosp_b');
	CREATE TABLE notes (id int PRIMARY KEY, tenant text NOT NULL DEFAULT vecphi.tenant(),
						emb evector(4));
	SELECT create_distributed_table('notes', 'id');
});
my $keyring = $coord->safe_psql('postgres', 'SELECT vecphi.keyring_id()');
like(slurp_file("$kms/requests.log"), qr{^(POST|PUT) /v1/secret/data/vecphi/\Q$keyring\E/hosp_a/1}m,
	'create_tenant on the coordinator made the KEK at the service');

my (@rows_a, @rows_b);
for my $i (1 .. 40)
{
	push @{ $i % 2 ? \@rows_a : \@rows_b }, "($i, '[$i,0,0,0]')";
}
$coord->safe_psql('postgres',
	    "BEGIN; $claims_a INSERT INTO notes (id, emb) VALUES " . join(',', @rows_a) . '; COMMIT; '
	  . "BEGIN; $claims_b INSERT INTO notes (id, emb) VALUES " . join(',', @rows_b) . '; COMMIT;');
$coord->safe_psql('postgres', 'CREATE INDEX ON notes USING ehnsw (emb evector_l2_ops)');

# A search runs an ehnsw scan on every shard: the workers, which have no
# key directory, decrypt with data keys they unwrapped with KEKs from the
# service.
sub search_sql
{
	my ($claims, $tenant) = @_;
	return qq{BEGIN; $claims SET LOCAL enable_seqscan = off;
	  SELECT string_agg(id::text, ',' ORDER BY id) FROM (SELECT id FROM notes
	  WHERE tenant = '$tenant' ORDER BY emb <-> '[0,0,0,0]' LIMIT 5) s; COMMIT;};
}
sub search
{
	my ($claims, $tenant) = @_;
	return $coord->safe_psql('postgres', search_sql($claims, $tenant));
}
is(search($claims_a, 'hosp_a'), '1,3,5,7,9', 'hosp_a: the workers search their shards with keys from the service');
is(search($claims_b, 'hosp_b'), '2,4,6,8,10', 'hosp_b: likewise');

# rotate_kek: version 2 at the service, the workers read it.
$coord->safe_psql('postgres', "SELECT vecphi.rotate_kek('hosp_a')");
is( join(',', map { $_->safe_psql('postgres', q{SELECT kek_version FROM vecphi.tenants WHERE tenant = 'hosp_a'}) }
		@workers),
	'2,2', 'rotate_kek on the coordinator: every worker\'s keyring is at KEK version 2');
$_->restart for @workers;    # no data key cached
is(search($claims_a, 'hosp_a'), '1,3,5,7,9', 'after rotate_kek and a restart the workers unwrap with version 2 from the service');

# The service goes down: a worker without the key cached fails cleanly.
$_->restart for @workers;
$switch->('True');
like(
	VecphiCheck::error_of($coord, 'postgres',
		search_sql($claims_b, 'hosp_b')),
	qr/^58P01: .*hosp_b/,
	'service down: the search fails with 58P01 naming the tenant');
$switch->('False');
is(search($claims_b, 'hosp_b'), '2,4,6,8,10', 'service back: the search works again');

# Shredding: destroyed at the service once, from the coordinator.
my $requests_before = slurp_file("$kms/requests.log");
$coord->safe_psql('postgres', "SELECT vecphi.shred_tenant('hosp_a')");
my $new_requests = substr(slurp_file("$kms/requests.log"), length($requests_before));
like($new_requests, qr{^DELETE /v1/secret/metadata/vecphi/\Q$keyring\E/hosp_a/}m,
	'shred_tenant destroyed hosp_a\'s KEKs at the service');
$_->restart for @workers;
like(
	VecphiCheck::error_of($coord, 'postgres',
		search_sql($claims_a, 'hosp_a')),
	qr/^58P01: /,
	'after shred_tenant: hosp_a\'s shards are unreadable on the workers');
is(search($claims_b, 'hosp_b'), '2,4,6,8,10', 'hosp_b still searches');
$new_requests = substr(slurp_file("$kms/requests.log"), length($requests_before));
unlike($new_requests, qr{^(POST|PUT) /v1/secret/data/vecphi/\Q$keyring\E/hosp_a/}m,
	'no node asked the service to make a new key for the shredded tenant');

# No KEK in any node's log (hosp_b's is still at the service; every
# worker held it).
my $kek = `cd '${\ $coord->data_dir}' && $cmd get $keyring hosp_b 1`;
chomp $kek;
like($kek, qr/^[0-9a-f]{64}$/, 'the service gives hosp_b\'s KEK as 64 hex digits');
is( join(',', map { index(slurp_file($_->logfile), $kek) >= 0 ? $_->name : () } @{ $c->{nodes} }),
	'', 'no KEK in any node\'s log');

VecphiCitus::stop_cluster($c);
$service->kill_kill;
done_testing();
