# vecphi: mint HS256 JSON Web Tokens for tests and the demo.
#
# Core perl only (Digest::SHA, MIME::Base64, JSON::PP) and, unlike
# VecphiTest.pm, no PostgreSQL::Test modules: those redirect STDOUT into a
# test log as soon as they load, which a shell script must not suffer.
#
#   perl -Itest/lib -MVecphiJWT -e 'print VecphiJWT::token(secret => $s,
#       tenant => "st_marys", role => "clinician", sub => "dr.a")'

package VecphiJWT;

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256);
use JSON::PP;
use MIME::Base64 qw(encode_base64);

# Claims that RFC 7519 defines as NumericDate: always encoded as numbers,
# even when the caller passes a string such as '1700000000'.
my %numeric_claim = map { $_ => 1 } qw(exp nbf iat);

# Base64url without padding (RFC 7515, section 2).
sub b64url
{
	my ($bytes) = @_;
	my $s = encode_base64($bytes, '');
	$s =~ tr{+/}{-_};
	$s =~ s/=+$//;
	return $s;
}

# Canonical (sorted-key) JSON of a flat hash, so tokens are reproducible.
sub json
{
	my ($hash) = @_;
	my %copy = %$hash;
	for my $k (keys %copy)
	{
		$copy{$k} = 0 + $copy{$k}
		  if $numeric_claim{$k} && defined $copy{$k};
	}
	return JSON::PP->new->canonical(1)->encode(\%copy);
}

# Return a signed token for %claims.  Options, removed from the claims:
#   secret => '...'   HMAC key (required here; VecphiTest supplies the test one)
#   header => {...}   replaces the header {"alg":"HS256","typ":"JWT"}
#   signature => '..' replaces the base64url signature ('' for an unsigned token)
# exp defaults to one hour from now; pass exp => undef to leave it out.
sub token
{
	my (%claims) = @_;
	my $secret = delete $claims{secret};
	my $header = delete $claims{header} // { alg => 'HS256', typ => 'JWT' };
	my $has_sig = exists $claims{signature};
	my $sig = delete $claims{signature};

	if (!exists $claims{exp})
	{
		$claims{exp} = time() + 3600;
	}
	elsif (!defined $claims{exp})
	{
		delete $claims{exp};
	}

	my $signing_input = b64url(json($header)) . '.' . b64url(json(\%claims));
	if (!$has_sig)
	{
		die "VecphiJWT::token: secret => ... is required\n"
		  unless defined $secret;
		$sig = b64url(hmac_sha256($signing_input, $secret));
	}
	return $signing_input . '.' . ($sig // '');
}

1;
