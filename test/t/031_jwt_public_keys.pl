# vecphi: ES256 and RS256 claim tokens, verified with the PEM public key
# in vecphi.jwt_public_key_file.
#
# Keys are made with the openssl command-line tool; tokens are signed with
# "openssl dgst -sha256 -sign" (for ES256 the DER signature is turned into
# the raw r || s that JWS uses).
#
#  - valid ES256 / RS256 tokens are accepted (also by parallel workers,
#    which verify the leader's token again);
#  - tampered payload or signature, a signature by another key, a DER
#    signature, an embedded "jwk" header: refused (28000);
#  - a token whose algorithm does not match the configured key (RS256 with
#    an EC key and vice versa, the wrong curve, a 1024-bit RSA key): refused;
#  - algorithm confusion: an HS256 token signed with the PEM public key
#    text as the HMAC secret is refused; a proper HS256 token is still
#    accepted with vecphi.jwt_secret_file;
#  - the public key file may not be writable by group or others, must hold
#    a PEM public key;
#  - every refusal is logged ("vecphi: rejected claims token"), without
#    the token.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use MIME::Base64 qw(decode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiJWT;
use VecphiTest;

my $node = VecphiTest::new_node('jwtkeys');
my $dir = $node->basedir . '/jwt';
mkdir $dir, 0700 or die "mkdir $dir: $!";

# ---------------------------------------------------------------------------
# Keys, with the openssl command-line tool.
# ---------------------------------------------------------------------------
sub openssl
{
	my (@args) = @_;
	my ($stdout, $stderr) = run_command([ 'openssl', @args ]);
	return $stdout;
}

for my $ec (qw(ec ec_other))
{
	openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', "$dir/$ec.key");
	openssl('pkey', '-in', "$dir/$ec.key", '-pubout', '-out', "$dir/$ec.pub");
}
openssl('ecparam', '-name', 'secp384r1', '-genkey', '-noout', '-out', "$dir/p384.key");
openssl('pkey', '-in', "$dir/p384.key", '-pubout', '-out', "$dir/p384.pub");
for my $rsa ([ 'rsa', 2048 ], [ 'rsa_other', 2048 ], [ 'rsa1024', 1024 ])
{
	my ($name, $bits) = @$rsa;
	openssl('genrsa', '-out', "$dir/$name.key", $bits);
	openssl('pkey', '-in', "$dir/$name.key", '-pubout', '-out', "$dir/$name.pub");
}
for my $f (glob("$dir/*.key"))
{
	chmod 0600, $f or die "chmod $f: $!";
}
for my $f (glob("$dir/*.pub"))
{
	chmod 0644, $f or die "chmod $f: $!";
}
ok(-s "$dir/ec.pub" && -s "$dir/rsa.pub", 'openssl made the keys');

# The key file the server reads; a copy of one of the public keys.
my $key_file = "$dir/jwt_public_key.pem";
sub use_key
{
	my ($name, $mode) = @_;
	VecphiCheck::write_file($key_file, slurp_file("$dir/$name"), $mode // 0644);
	return;
}
use_key('ec.pub');

$node->append_conf('postgresql.conf', "vecphi.jwt_public_key_file = '$key_file'\n");
$node->start;

# ---------------------------------------------------------------------------
# Tokens.
# ---------------------------------------------------------------------------
# Raw r || s (32 + 32 bytes for P-256) of a DER ECDSA-Sig-Value.
sub der_to_raw
{
	my ($der) = @_;
	my @b = unpack('C*', $der);
	my $i = 0;
	die 'not a DER SEQUENCE' unless $b[ $i++ ] == 0x30;
	my $len = $b[ $i++ ];
	$len = $b[ $i++ ] if $len == 0x81;
	my @ints;
	for (1 .. 2)
	{
		die 'not a DER INTEGER' unless $b[ $i++ ] == 0x02;
		my $n = $b[ $i++ ];
		my $int = pack('C*', @b[ $i .. $i + $n - 1 ]);
		$i += $n;
		$int =~ s/^\x00+//;
		push @ints, $int;
	}
	# 32 bytes each for P-256 (48 for the P-384 key used to sign a wrong one)
	my $size = (grep { length($_) > 32 } @ints) ? 48 : 32;
	@ints = map { ("\x00" x ($size - length($_))) . $_ } @ints;
	return join('', @ints);
}

# Sign $input with the private key file $key (SHA-256); DER for EC keys.
my $sign_count = 0;
sub openssl_sign
{
	my ($key, $input) = @_;
	my $in = "$dir/input." . ++$sign_count;
	my $out = "$in.sig";
	VecphiCheck::write_file($in, $input);
	openssl('dgst', '-sha256', '-sign', "$dir/$key", '-out', $out, $in);
	my $sig = slurp_file($out);
	unlink $in, $out;
	return $sig;
}

# A token for %claims signed by private key $key with $alg.  Options:
# header => {...} (merged into the header), der => 1 (keep the DER
# signature of an EC key), exp as for VecphiJWT::token.
sub pk_token
{
	my ($alg, $key, %claims) = @_;
	my $extra_header = delete $claims{header} // {};
	my $der = delete $claims{der};
	$claims{exp} = time() + 3600 unless exists $claims{exp};
	delete $claims{exp} unless defined $claims{exp};
	my $header = { alg => $alg, typ => 'JWT', %$extra_header };
	my $input = VecphiJWT::b64url(VecphiJWT::json($header)) . '.'
	  . VecphiJWT::b64url(VecphiJWT::json(\%claims));
	my $sig = openssl_sign($key, $input);
	$sig = der_to_raw($sig) if $alg eq 'ES256' && !$der;
	return $input . '.' . VecphiJWT::b64url($sig);
}

my %a_claims = (tenant => 'pk_a', role => 'clinician', sub => 'dr_pk');
my %b_claims = (tenant => 'pk_b', role => 'clinician', sub => 'dr_pk_b');

# Replace the payload of $token with that of %claims, keeping its header
# and signature.
sub swap_payload
{
	my ($token, %claims) = @_;
	$claims{exp} = time() + 3600 unless exists $claims{exp};
	my ($h, undef, $s) = split /\./, $token;
	return join('.', $h, VecphiJWT::b64url(VecphiJWT::json(\%claims)), $s);
}

# The signature with its last byte changed (and still valid base64url).
sub flip_signature
{
	my ($token) = @_;
	my ($h, $p, $s) = split /\./, $token;
	(my $std = $s) =~ tr{-_}{+/};
	my $raw = decode_base64($std . '=' x ((4 - length($std) % 4) % 4));
	substr($raw, -1, 1) = chr(ord(substr($raw, -1, 1)) ^ 0x01);
	return join('.', $h, $p, VecphiJWT::b64url($raw));
}

# An HS256 token signed with $secret (bytes), as VecphiJWT makes them.
sub hs_token
{
	my ($secret, %claims) = @_;
	return VecphiJWT::token(secret => $secret, %claims);
}

sub q_lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

# Try a token: 'no error' and the tenant it set, or the error.
sub try_token
{
	my ($token) = @_;
	my $sql = "BEGIN;\nSELECT vecphi.set_claims(" . q_lit($token) . ");\nSELECT vecphi.tenant();\nCOMMIT;";
	my $err = VecphiCheck::error_of($node, 'postgres', $sql);
	return $err unless $err eq 'no error';
	my $tenant = $node->safe_psql('postgres',
		"BEGIN;\nSELECT vecphi.set_claims(" . q_lit($token) . ");\nSELECT vecphi.tenant();\nCOMMIT;");
	$tenant =~ s/^\s+//;
	return "accepted: $tenant";
}

# The DETAIL of the error a token gets.
sub token_detail
{
	my ($token) = @_;
	my ($ret, $stdout, $stderr) =
	  $node->psql('postgres', 'SELECT vecphi.set_claims(' . q_lit($token) . ')');
	return $stderr =~ /DETAIL:\s+([^\n]*)/ ? $1 : "(no detail: $stderr)";
}

# Point the server at another key file content (same path) or setting.
sub set_key_file
{
	my ($path) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET vecphi.jwt_public_key_file = " . q_lit($path) . "; SELECT pg_reload_conf();");
	$node->poll_query_until('postgres',
		"SELECT current_setting('vecphi.jwt_public_key_file') = " . q_lit($path))
	  or die "vecphi.jwt_public_key_file did not change";
	return;
}

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('pk_a');
	SELECT vecphi.create_tenant('pk_b');
});
my $log_offset = -s $node->logfile;

# ---------------------------------------------------------------------------
# ES256 with the EC key configured.
# ---------------------------------------------------------------------------
my $es = pk_token('ES256', 'ec.key', %a_claims);
is(try_token($es), 'accepted: pk_a', 'ES256: a valid token is accepted');
is( $node->safe_psql(
		'postgres',
		"BEGIN;\nSELECT vecphi.set_claims(" . q_lit($es) . ");\n"
		  . "SELECT vecphi.tenant() || ' ' || vecphi.app_role() || ' ' || vecphi.subject() || ' ' || array_to_string(vecphi.decrypt('[1,2,3]'::evector), ',');\nCOMMIT;"
	),
	"\npk_a clinician dr_pk 1,2,3",
	'ES256: its claims are set and work');

my %refused = (
	'ES256: payload changed to another tenant' => swap_payload($es, %b_claims),
	'ES256: payload given break_glass' => swap_payload($es, %a_claims, break_glass => 'x'),
	'ES256: signature changed' => flip_signature($es),
	'ES256: DER signature instead of r || s' => pk_token('ES256', 'ec.key', %a_claims, der => 1),
	'ES256: signed by another P-256 key' => pk_token('ES256', 'ec_other.key', %b_claims),
	'ES256: another key, offered in a jwk header' => pk_token(
		'ES256', 'ec_other.key', %b_claims,
		header => { jwk => slurp_file("$dir/ec_other.pub") }),
	'ES256: signed by a P-384 key' => pk_token('ES256', 'p384.key', %b_claims),
	'ES256: expired' => pk_token('ES256', 'ec.key', %b_claims, exp => time() - 3600),
	'ES256: not valid yet' => pk_token('ES256', 'ec.key', %b_claims, nbf => time() + 3600),
	'ES256 header, signature empty' => join('.', (split /\./, $es)[ 0, 1 ], ''),
	'RS256 token, EC key configured' => pk_token('RS256', 'rsa.key', %b_claims),
	'HS256 signed with the EC public key PEM' => hs_token(slurp_file("$dir/ec.pub"), %b_claims),
	'HS256 signed with the EC public key PEM, trimmed' => hs_token(slurp_file("$dir/ec.pub") =~ s/^\s+|\s+$//gr, %b_claims),
	'alg none' => join('.', VecphiJWT::b64url('{"alg":"none","typ":"JWT"}'), (split /\./, $es)[1], ''),
	'alg ES384' => pk_token('ES256', 'ec.key', %b_claims, header => { alg => 'ES384' }),
	'alg PS256' => pk_token('RS256', 'rsa.key', %b_claims, header => { alg => 'PS256' }),
);
for my $what (sort keys %refused)
{
	like(try_token($refused{$what}), qr/^28000: /, "$what: refused (28000)");
}
# Algorithm confusion fails on the HMAC itself: the secret is the secret
# file's, never the public key.
for my $what (grep { /^HS256 signed with/ } sort keys %refused)
{
	is(token_detail($refused{$what}), 'The token signature does not verify.',
		"$what: the HMAC does not verify");
}
like(
	try_token(pk_token('RS256', 'rsa.key', %b_claims)),
	qr/^28000: invalid claims token$/,
	'RS256 token, EC key configured: invalid claims token');
# (The DETAIL says which key is needed.)
{
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		'SELECT vecphi.set_claims(' . q_lit(pk_token('RS256', 'rsa.key', %b_claims)) . ')');
	like($stderr, qr/DETAIL:\s+The configured public key is not a 2048-bit or larger RSA key\./,
		'and its detail names the key it would need');
}
# HS256 still works with the secret file, beside the public key.
is(try_token(VecphiTest::token(%b_claims)), 'accepted: pk_b',
	'HS256 with vecphi.jwt_secret_file: still accepted');

# Parallel workers verify the ES256 token again, with the public key.
$node->safe_psql(
	'postgres', "CREATE TABLE pk_notes (id int, body etext);
	BEGIN;\nSELECT vecphi.set_claims(" . q_lit($es) . ");
	INSERT INTO pk_notes SELECT i, vecphi.encrypt('note ' || i) FROM generate_series(1, 3000) i;
	COMMIT;
	ANALYZE pk_notes;");
my $parallel = join("\n",
	'SET max_parallel_workers_per_gather = 2;',
	'SET parallel_setup_cost = 0;',
	'SET parallel_tuple_cost = 0;',
	'SET min_parallel_table_scan_size = 0;',
	'SET parallel_leader_participation = off;');
my $par_query = "BEGIN;\nSELECT vecphi.set_claims(" . q_lit($es) . ");\n"
  . "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(vecphi.decrypt(body)) FROM pk_notes;\n"
  . "SELECT count(vecphi.decrypt(body)) FROM pk_notes;\nCOMMIT;";
my $par_out = $node->safe_psql('postgres', "$parallel\n$par_query");
like($par_out, qr/Workers Launched: [12]/, 'ES256 claims, parallel: workers launched');
like($par_out, qr/\n3000$/, 'and they decrypted every row with the ES256 claims');

# ---------------------------------------------------------------------------
# RS256 with the RSA key configured.
# ---------------------------------------------------------------------------
use_key('rsa.pub');
my $rs = pk_token('RS256', 'rsa.key', %a_claims);
is(try_token($rs), 'accepted: pk_a', 'RS256: a valid token is accepted');
my %refused_rsa = (
	'RS256: payload changed' => swap_payload($rs, %b_claims),
	'RS256: signature changed' => flip_signature($rs),
	'RS256: signed by another RSA key' => pk_token('RS256', 'rsa_other.key', %b_claims),
	'RS256: expired' => pk_token('RS256', 'rsa.key', %b_claims, exp => time() - 3600),
	'ES256 token, RSA key configured' => pk_token('ES256', 'ec.key', %b_claims),
	'HS256 signed with the RSA public key PEM' => hs_token(slurp_file("$dir/rsa.pub"), %b_claims),
	'HS256 signed with the RSA public key PEM, trimmed' => hs_token(slurp_file("$dir/rsa.pub") =~ s/^\s+|\s+$//gr, %b_claims),
);
for my $what (sort keys %refused_rsa)
{
	like(try_token($refused_rsa{$what}), qr/^28000: /, "$what: refused (28000)");
}
for my $what (grep { /^HS256 signed with/ } sort keys %refused_rsa)
{
	is(token_detail($refused_rsa{$what}), 'The token signature does not verify.',
		"$what: the HMAC does not verify");
}
{
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		'SELECT vecphi.set_claims(' . q_lit(pk_token('ES256', 'ec.key', %b_claims)) . ')');
	like($stderr, qr/DETAIL:\s+The configured public key is not a P-256 ECDSA key\./,
		'ES256 token, RSA key configured: the detail names the key it would need');
}
is(try_token(VecphiTest::token(%b_claims)), 'accepted: pk_b',
	'HS256 with vecphi.jwt_secret_file: still accepted beside an RSA key');

# Keys the server must not use.
use_key('rsa1024.pub');
like(try_token(pk_token('RS256', 'rsa1024.key', %b_claims)), qr/^28000: /,
	'a 1024-bit RSA key: its RS256 tokens are refused');
use_key('p384.pub');
like(try_token(pk_token('ES256', 'p384.key', %b_claims)), qr/^28000: /,
	'a P-384 key: ES256 tokens are refused');
use_key('ec.key', 0600);
like(try_token($es), qr/^F0000: vecphi\.jwt_public_key_file does not hold a PEM public key$/,
	'a private key file instead of a public key: refused');
VecphiCheck::write_file($key_file, "not a key\n", 0644);
like(try_token($es), qr/^F0000: vecphi\.jwt_public_key_file does not hold a PEM public key$/,
	'a file without a PEM key: refused');

# ---------------------------------------------------------------------------
# The public key file's permissions: whoever can replace it can sign tokens.
# ---------------------------------------------------------------------------
use_key('ec.pub', 0644);
is(try_token($es), 'accepted: pk_a', 'mode 0644: accepted');
chmod 0664, $key_file or die "chmod: $!";
like(try_token($es), qr/^F0000: token public key file ".*" has unsafe ownership or permissions$/,
	'mode 0664 (group-writable): refused');
chmod 0646, $key_file or die "chmod: $!";
like(try_token($es), qr/^F0000: token public key file ".*" has unsafe ownership or permissions$/,
	'mode 0646 (world-writable): refused');
chmod 0666, $key_file or die "chmod: $!";
like(try_token($es), qr/^F0000: .*unsafe ownership or permissions$/, 'mode 0666: refused');
chmod 0600, $key_file or die "chmod: $!";
is(try_token($es), 'accepted: pk_a', 'mode 0600: accepted');
chmod 0444, $key_file or die "chmod: $!";
is(try_token($es), 'accepted: pk_a', 'mode 0444: accepted');
chmod 0644, $key_file or die "chmod: $!";

# No public key configured: ES256 and RS256 are refused, HS256 works.
set_key_file('');
like(try_token($es), qr/^28000: /, 'no vecphi.jwt_public_key_file: ES256 refused');
like(try_token($rs), qr/^28000: /, 'no vecphi.jwt_public_key_file: RS256 refused');
is(try_token(VecphiTest::token(%a_claims)), 'accepted: pk_a', 'no public key file: HS256 accepted');
set_key_file("$dir/no_such_file.pem");
like(try_token($es), qr/^58P01: could not open token public key file/, 'a missing public key file: refused');
set_key_file($key_file);
is(try_token($es), 'accepted: pk_a', 'the key file again: accepted');
# Not something a client may change.
like(VecphiCheck::error_of($node, 'postgres',
		"CREATE ROLE regress_pk_app; SET ROLE regress_pk_app; SET vecphi.jwt_public_key_file = '$dir/ec_other.pub';"),
	qr/^55P02: /, 'vecphi.jwt_public_key_file cannot be SET in a session');

# Break-glass claims are flagged in the log.
is(try_token(VecphiTest::token(tenant => 'pk_a', role => 'billing', sub => 'er_doc',
			break_glass => 'cardiac arrest in ward 3')),
	'accepted: pk_a', 'a break-glass token is accepted');

# ---------------------------------------------------------------------------
# The log: every refusal, never the token; every break-glass use.
# ---------------------------------------------------------------------------
my $log = slurp_file($node->logfile, $log_offset);
like($log,
	qr/LOG:\s+vecphi: break-glass claims for tenant "pk_a", role "billing", subject "er_doc": cardiac arrest in ward 3/,
	'break-glass claims are flagged in the server log');
my @rejections = $log =~ /LOG:\s+vecphi: rejected claims token for database user "[^"]+": [^\n]+/g;
cmp_ok(scalar(@rejections), '>=', scalar(keys %refused) + scalar(keys %refused_rsa),
	'a LOG line "vecphi: rejected claims token" for every refused token (' . scalar(@rejections) . ')');
like($log, qr/vecphi: rejected claims token for database user "[^"]+": The token signature does not verify\./,
	'the log names the reason');
like($log, qr/vecphi: rejected claims token for database user "[^"]+": The configured public key is not a P-256 ECDSA key\./,
	'including a key of the wrong type');
is(scalar(grep { /eyJ|[A-Za-z0-9_-]{40,}/ } @rejections), 0,
	'the rejection lines carry no token (nor any part of one)');

$node->stop;
done_testing();
