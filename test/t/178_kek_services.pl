# vecphi: the example key provider for a Vault-like HTTP key service
# (examples/kek/vault_kek.py), against a local stand-in for the service
# (test/tools/fake_kms.py), with both ways of keeping KEKs:
#   transit  KEKs made by the service and kept on the host only wrapped by
#            a per-tenant key that never leaves the service (KMS/HSM style);
#   kv       KEKs kept as secrets in the service.
# For each: create_tenant and rotate_kek make their KEK versions at the
# service, data written under them decrypts in new sessions; no KEK ever
# reaches the server log; while the service is down a session without the
# data key cached gets 58P01 naming the tenant, and works again once it is
# back; shred_tenant destroys the tenant's keys at the service (and the
# wrapped copies), after which its data is unreadable and the other
# tenant's is not.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use IPC::Run qw(start);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $src = VecphiTest::source_dir();
my $provider = "$src/examples/kek/vault_kek.py";

my $claims_a = VecphiCheck::claims_do(tenant => 'hosp_a', role => 'clinician', sub => 'dr_a');
my $claims_b = VecphiCheck::claims_do(tenant => 'hosp_b', role => 'clinician', sub => 'dr_b');

sub read_a
{
	return qq{BEGIN; $claims_a SELECT string_agg(vecphi.decrypt(body), ',' ORDER BY id) FROM notes WHERE tenant = 'hosp_a'; COMMIT;};
}

for my $engine (qw(transit kv))
{
	my $node = VecphiTest::new_node("kek_$engine");
	my $dir = $node->basedir . '/kms';
	mkdir $dir, 0700 or die "mkdir $dir: $!";
	mkdir "$dir/wrapped", 0700 or die "mkdir: $!";
	VecphiCheck::write_file("$dir/token", "s.test-token-$engine\n");
	chmod 0600, "$dir/token";
	my $service = start([ '/usr/bin/python3', "$src/test/tools/fake_kms.py", "$dir/token",
		"$dir/port", "$dir/requests.log" ]);
	for (1 .. 100)
	{
		last if -f "$dir/port";
		select(undef, undef, undef, 0.1);
	}
	my $port = slurp_file("$dir/port");
	VecphiCheck::write_file("$dir/vault.conf", <<"EOF");
[vault]
address = http://127.0.0.1:$port
token_file = $dir/token
engine = $engine
wrapped_dir = $dir/wrapped
create_missing = true
timeout = 5
EOF
	chmod 0600, "$dir/vault.conf";
	my $cmd = "/usr/bin/python3 $provider $dir/vault.conf";
	$node->append_conf('postgresql.conf', qq{
vecphi.key_directory = ''
vecphi.kek_command = '$cmd get %k %t %v'
vecphi.kek_destroy_command = '$cmd destroy %k %t %v'
});
	$node->start;

	$node->safe_psql('postgres', q{
		CREATE EXTENSION vecphi;
		CREATE TABLE notes (id int PRIMARY KEY, tenant text NOT NULL DEFAULT vecphi.tenant(), body etext);
	});
	is($node->safe_psql('postgres',
		"SELECT vecphi.create_tenant('hosp_a') > 0 AND vecphi.create_tenant('hosp_b') > 0"),
		't', "$engine: create_tenant makes KEK version 1 at the service");
	my $keyring = $node->safe_psql('postgres', 'SELECT vecphi.keyring_id()');
	if ($engine eq 'transit')
	{
		is(join(' ', sort(VecphiCheck::dir_files("$dir/wrapped"))),
			"$keyring.hosp_a.1.wrapped $keyring.hosp_b.1.wrapped",
			'transit: the host keeps only wrapped KEKs');
	}
	$node->safe_psql('postgres', qq{
		BEGIN; $claims_a INSERT INTO notes (id, body) VALUES (1, 'a-one'); COMMIT;
		BEGIN; $claims_b INSERT INTO notes (id, body) VALUES (2, 'b-two'); COMMIT;
	});
	is($node->safe_psql('postgres', read_a()), 'a-one', "$engine: a new session decrypts");

	is($node->safe_psql('postgres', "SELECT vecphi.rotate_kek('hosp_a') IS NOT NULL"), 't',
		"$engine: rotate_kek makes version 2 at the service");
	$node->safe_psql('postgres', qq{BEGIN; $claims_a INSERT INTO notes (id, body) VALUES (3, 'a-three'); COMMIT;});
	is($node->safe_psql('postgres', read_a()), 'a-one,a-three',
		"$engine: data from before and after the rotation decrypts");
	is($node->safe_psql('postgres', "SELECT kek_version FROM vecphi.tenants WHERE tenant = 'hosp_a'"),
		'2', "$engine: the keyring is at KEK version 2");
	if ($engine eq 'transit')
	{
		is(join(' ', sort(VecphiCheck::dir_files("$dir/wrapped"))),
			"$keyring.hosp_a.1.wrapped $keyring.hosp_a.2.wrapped $keyring.hosp_b.1.wrapped",
			'transit: the rotation made version 2 and left version 1 to the service (vecphi destroys a KEK at a command provider only when shredding)');
	}

	# The KEKs the service holds never reach the server's log.
	my @keks;
	for my $t (qw(hosp_a.1 hosp_a.2 hosp_b.1))
	{
		my ($tenant, $v) = split /\./, $t;
		my $hex = `$cmd get $keyring $tenant $v`;
		chomp $hex;
		push @keks, $hex if $hex =~ /^[0-9a-f]{64}$/;
	}
	is(scalar(@keks), 3, "$engine: the provider prints each KEK as 64 hex digits");

	# The service goes down: a session without the data key cached fails
	# cleanly, naming the tenant; then it comes back.
	my $switch = sub {
		my ($down) = @_;
		system('/usr/bin/python3', '-c',
			"import urllib.request,json; urllib.request.urlopen(urllib.request.Request("
			  . "'http://127.0.0.1:$port/v1/sys/fake/down', data=json.dumps({'down': $down}).encode(), method='POST'))") == 0
		  or die 'cannot switch the fake service';
	};
	$switch->('True');
	like(VecphiCheck::error_of($node, 'postgres', read_a()),
		qr/^58P01: .*hosp_a/, "$engine: service down: 58P01 naming the tenant");
	$switch->('False');
	is($node->safe_psql('postgres', read_a()), 'a-one,a-three', "$engine: service back: decrypts again");

	# Crypto-shredding at the service.
	$node->safe_psql('postgres', "SELECT vecphi.shred_tenant('hosp_a')");
	like(VecphiCheck::error_of($node, 'postgres', read_a()),
		qr/^58P01: .*hosp_a/, "$engine: after shred_tenant hosp_a's data is unreadable");
	if ($engine eq 'transit')
	{
		is(join(' ', sort(VecphiCheck::dir_files("$dir/wrapped"))),
			"$keyring.hosp_b.1.wrapped", 'transit: hosp_a\'s wrapped KEKs are gone from the host');
	}
	# (With create_missing the provider would now make a new, unrelated key.)
	my $after = `$cmd get $keyring hosp_a 2 2>/dev/null`;
	chomp $after;
	ok(!grep({ $_ eq $after } @keks), "$engine: the service no longer gives out any of hosp_a's KEKs");
	is( $node->safe_psql(
			'postgres',
			"BEGIN; $claims_b SELECT vecphi.decrypt(body) FROM notes WHERE tenant = 'hosp_b'; COMMIT;"),
		'b-two',
		"$engine: hosp_b's data still decrypts");

	my $log = slurp_file($node->logfile);
	is(scalar(grep { index($log, $_) >= 0 } @keks), 0, "$engine: no KEK in the server log");
	my $requests = slurp_file("$dir/requests.log");
	like($requests, $engine eq 'transit' ? qr{^POST /v1/transit/decrypt/}m : qr{^GET /v1/secret/data/}m,
		"$engine: the keys came from the service");

	$node->stop;
	$service->kill_kill;
}

done_testing();
