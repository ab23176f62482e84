#!/usr/bin/env python3
"""vecphi key provider for a Vault-like HTTP key service (HashiCorp Vault or
OpenBao), for vecphi.kek_command and vecphi.kek_destroy_command:

  vecphi.kek_command         = '/usr/local/bin/vault_kek.py /etc/vecphi/vault.conf get %k %t %v'
  vecphi.kek_destroy_command = '/usr/local/bin/vault_kek.py /etc/vecphi/vault.conf destroy %k %t %v'

"get" prints the KEK of keyring %k, tenant %t, version %v as 64 hex digits;
"destroy" makes it unrecoverable (run by vecphi.shred_tenant() at commit).
Exit status 0 on success; otherwise one line on stderr (never key bytes)
and a non-zero status, which vecphi reports as "key not available" (58P01)
or refuses the shred.

Two ways to keep KEKs, chosen by `engine` in the configuration file:

engine = transit   (KMS/HSM style; recommended)
    Each tenant has a named key in the service's Transit engine,
    <key_prefix>-<keyring>-<tenant>, that never leaves the service.  A KEK is
    a data key made by the service (datakey/wrapped) and stored on this host
    only wrapped, in wrapped_dir/<keyring>.<tenant>.<version>.wrapped (mode
    0600); "get" asks the service to unwrap it.  "destroy" deletes the
    tenant's named key at the service: every wrapped copy of every version,
    in every backup of wrapped_dir, is useless from then on (destroying an
    older version after rotate_kek removes only its wrapped copy).  AWS KMS
    (GenerateDataKeyWithoutPlaintext / Decrypt / ScheduleKeyDeletion) and
    Google Cloud KMS work the same way.

engine = kv
    The KEK itself is a secret at <mount>/data/<path_prefix>/<keyring>/<tenant>/<version>
    in the KV version 2 engine; "destroy" deletes all its versions and
    metadata.  Simpler, but the service's own backups then hold KEKs.

With create_missing = true, "get" of a version that does not exist yet
makes it (create_tenant asks for version 1, rotate_kek for n+1); keep it
false to have an administrator create keys at the service first.  A key
made this way is always a new random one: a typo or a "get" after a shred
gets a key that decrypts nothing.

Configuration file (mode 0600, owned by the server's user: it names the
token file):

  [vault]
  address = https://vault.example.org:8200
  token_file = /etc/vecphi/vault-token
  ca_file = /etc/vecphi/vault-ca.pem        ; optional
  engine = transit
  transit_mount = transit
  key_prefix = vecphi
  wrapped_dir = /var/lib/postgresql/vecphi-wrapped
  kv_mount = secret
  path_prefix = vecphi
  create_missing = true
  timeout = 10

Python standard library only.
"""
import base64
import configparser
import json
import os
import re
import secrets
import ssl
import sys
import urllib.error
import urllib.request

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")


class ProviderError(Exception):
    pass


class Service:
    def __init__(self, conf):
        self.address = conf["address"].rstrip("/")
        with open(conf["token_file"]) as f:
            self.token = f.read().strip()
        self.timeout = float(conf.get("timeout", "10"))
        self.context = None
        if conf.get("ca_file"):
            self.context = ssl.create_default_context(cafile=conf["ca_file"])

    def call(self, method, path, body=None, allow=()):
        """(status, JSON reply) of one request; raises ProviderError on
        failure unless the status is in allow."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.address + "/v1/" + path, data=data, method=method,
                                     headers={"X-Vault-Token": self.token,
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else {})
        except urllib.error.HTTPError as e:
            if e.code in allow:
                return e.code, {}
            raise ProviderError("%s /v1/%s: HTTP %d" % (method, path.split("/")[0], e.code))
        except (urllib.error.URLError, OSError) as e:
            raise ProviderError("key service unreachable: %s" % getattr(e, "reason", e))


def transit_get(svc, conf, keyring, tenant, version, create):
    mount = conf.get("transit_mount", "transit")
    name = "%s-%s-%s" % (conf.get("key_prefix", "vecphi"), keyring, tenant)
    wrapped_path = os.path.join(conf["wrapped_dir"], "%s.%s.%s.wrapped" % (keyring, tenant, version))
    if not os.path.exists(wrapped_path):
        if not create:
            raise ProviderError("no wrapped key for tenant %s version %s" % (tenant, version))
        svc.call("POST", "%s/keys/%s" % (mount, name), {})
        _, reply = svc.call("POST", "%s/datakey/wrapped/%s" % (mount, name), {})
        tmp = wrapped_path + ".tmp%d" % os.getpid()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(reply["data"]["ciphertext"] + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, wrapped_path)    # never replaces a version made meanwhile
        except FileExistsError:
            pass
        os.unlink(tmp)
    with open(wrapped_path) as f:
        wrapped = f.read().strip()
    _, reply = svc.call("POST", "%s/decrypt/%s" % (mount, name), {"ciphertext": wrapped})
    return base64.b64decode(reply["data"]["plaintext"])


def transit_destroy(svc, conf, keyring, tenant, version):
    """Destroy one KEK version: its wrapped copy here.  rotate_kek destroys
    the old version this way while the newer ones still need the tenant's
    named key; shred_tenant destroys every version, and the last one takes
    the named key at the service with it, so that no wrapped copy of any
    version, in any backup of wrapped_dir, can be unwrapped again."""
    mount = conf.get("transit_mount", "transit")
    name = "%s-%s-%s" % (conf.get("key_prefix", "vecphi"), keyring, tenant)
    prefix = "%s.%s." % (keyring, tenant)
    try:
        os.unlink(os.path.join(conf["wrapped_dir"], "%s%s.wrapped" % (prefix, version)))
    except FileNotFoundError:
        pass
    if any(e.startswith(prefix) and e.endswith(".wrapped") for e in os.listdir(conf["wrapped_dir"])):
        return
    status, _ = svc.call("POST", "%s/keys/%s/config" % (mount, name), {"deletion_allowed": True},
                         allow=(404,))
    if status != 404:
        svc.call("DELETE", "%s/keys/%s" % (mount, name))


def kv_path(conf, keyring, tenant, version):
    return "%s/%%s/%s/%s/%s/%s" % (conf.get("kv_mount", "secret"), conf.get("path_prefix", "vecphi"),
                                   keyring, tenant, version)


def kv_get(svc, conf, keyring, tenant, version, create):
    path = kv_path(conf, keyring, tenant, version)
    status, reply = svc.call("GET", path % "data", allow=(404,))
    if status == 404:
        if not create:
            raise ProviderError("no key for tenant %s version %s" % (tenant, version))
        # cas = 0: create only if absent, so two sessions never make two keys.
        status, _ = svc.call("POST", path % "data",
                             {"options": {"cas": 0}, "data": {"kek": secrets.token_hex(32)}},
                             allow=(400,))
        status, reply = svc.call("GET", path % "data")
    return bytes.fromhex(reply["data"]["data"]["kek"])


def kv_destroy(svc, conf, keyring, tenant, version):
    svc.call("DELETE", kv_path(conf, keyring, tenant, version) % "metadata")


def main(argv):
    if len(argv) != 6 or argv[2] not in ("get", "destroy"):
        print("usage: vault_kek.py CONFIG get|destroy KEYRING TENANT VERSION", file=sys.stderr)
        return 2
    config_file, action, keyring, tenant, version = argv[1:]
    if not (NAME.match(keyring) and NAME.match(tenant) and version.isdigit()):
        print("vault_kek.py: keyring, tenant or version is not a plain name", file=sys.stderr)
        return 2
    parser = configparser.ConfigParser()
    if not parser.read(config_file):
        print("vault_kek.py: cannot read %s" % config_file, file=sys.stderr)
        return 2
    conf = parser["vault"]
    engine = conf.get("engine", "transit")
    create = conf.getboolean("create_missing", False)
    try:
        svc = Service(conf)
        if engine == "transit":
            if action == "get":
                key = transit_get(svc, conf, keyring, tenant, version, create)
            else:
                transit_destroy(svc, conf, keyring, tenant, version)
        elif engine == "kv":
            if action == "get":
                key = kv_get(svc, conf, keyring, tenant, version, create)
            else:
                kv_destroy(svc, conf, keyring, tenant, version)
        else:
            raise ProviderError("unknown engine %r" % engine)
    except (ProviderError, KeyError, ValueError) as e:
        print("vault_kek.py: %s %s/%s/%s: %s" % (action, keyring, tenant, version, e), file=sys.stderr)
        return 1
    if action == "get":
        if len(key) != 32:
            print("vault_kek.py: the service returned a key of %d bytes, not 32" % len(key),
                  file=sys.stderr)
            return 1
        print(key.hex())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
