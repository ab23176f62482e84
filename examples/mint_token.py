#!/usr/bin/env python3
"""Mint a short-lived HS256 claims token for vecphi.set_claims(), for tests,
demos and local development.

In production your identity provider issues these tokens; it must sign them
with the secret (or private key) the server trusts and put in them:

  tenant       the tenant name, as given to vecphi.create_tenant()  (required)
  role         the application role the user acts in, as used in
               vecphi.role_categories                               (required)
  sub          who the user is (recorded in the audit log)          (required)
  exp          expiry, seconds since 1970; at most
               vecphi.jwt_max_lifetime (default 1 day) ahead         (required)
  iat          issue time (checked against jwt_max_lifetime when present)
  purpose      treatment | payment | operations                     (optional)
  break_glass  the reason for an emergency read of all categories   (optional)
  aud, iss     checked when vecphi.jwt_audience / jwt_issuer are set

Example:
  TOKEN=$(python3 examples/mint_token.py --secret-file /etc/postgresql/vecphi-jwt-secret \\
          --tenant st_marys --role clinician --sub dr.okafor --purpose treatment)

The token goes to the server as a bind parameter, never in the SQL text.
Only the Python standard library is used.
"""
import argparse
import base64
import hashlib
import hmac
import json
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint(secret: bytes, claims: dict) -> str:
    """Return an HS256 JWT over claims, signed with secret."""
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode())
                     + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="mint an HS256 claims token for vecphi")
    parser.add_argument("--secret-file", required=True,
                        help="the file vecphi.jwt_secret_file names (its content, surrounding white space trimmed, is the key)")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--role", required=True)
    parser.add_argument("--sub", required=True)
    parser.add_argument("--purpose", choices=["treatment", "payment", "operations"])
    parser.add_argument("--break-glass", metavar="REASON")
    parser.add_argument("--ttl", type=int, default=900,
                        help="seconds until the token expires (default 900)")
    args = parser.parse_args(argv)

    with open(args.secret_file, "rb") as f:
        secret = f.read().strip()
    if len(secret) < 32:
        print("mint_token.py: the secret must be at least 32 bytes", file=sys.stderr)
        return 2

    now = int(time.time())
    claims = {"tenant": args.tenant, "role": args.role, "sub": args.sub,
              "iat": now, "exp": now + args.ttl}
    if args.purpose:
        claims["purpose"] = args.purpose
    if args.break_glass:
        claims["break_glass"] = args.break_glass
    print(mint(secret, claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
