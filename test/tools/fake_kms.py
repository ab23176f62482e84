#!/usr/bin/python3
"""A local stand-in for a Vault-like key service, for test/t/178_kek_services.pl.

It speaks just enough of HashiCorp Vault's HTTP API for the two example
providers in examples/kek/: the KV version 2 secrets engine (mount
"secret") and the Transit engine (mount "transit": named keys that wrap
and unwrap data keys and never leave the service).  Requests need the
header X-Vault-Token with the token in the file given as argument.

NOT CRYPTOGRAPHY: Transit "encryption" here is a keyed XOR stream, enough
to prove that a wrapped key is useless without the service's named key.

Usage: fake_kms.py TOKEN_FILE PORT_FILE LOG_FILE
Listens on 127.0.0.1, an unused port, which it writes to PORT_FILE.  Each
request is logged (method, path, status; never a key) to LOG_FILE.
"""
import base64
import hashlib
import json
import os
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = open(sys.argv[1]).read().strip()
PORT_FILE, LOG_FILE = sys.argv[2], sys.argv[3]

kv = {}            # path -> {"data": {...}, "version": n}
transit = {}       # key name -> {"secret": bytes, "deletion_allowed": bool}
down = {"flag": False}   # POST /sys/fake/down makes every other request a 503


def xor_stream(secret, nonce, data):
    stream = b""
    counter = 0
    while len(stream) < len(data):
        stream += hashlib.sha256(secret + nonce + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(a ^ b for a, b in zip(data, stream))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=None):
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        with open(LOG_FILE, "a") as log:
            log.write("%s %s %d\n" % (self.command, self.path, status))

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def handle_any(self):
        if self.path == "/v1/sys/fake/down" and self.command == "POST":
            down["flag"] = self.body().get("down", True)
            return self.reply(204)
        if down["flag"]:
            return self.reply(503, {"errors": ["service unavailable"]})
        if self.headers.get("X-Vault-Token") != TOKEN:
            return self.reply(403, {"errors": ["permission denied"]})
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:3] == ["v1", "secret", "data"]:
            return self.kv_data("/".join(parts[3:]))
        if parts[:3] == ["v1", "secret", "metadata"] and self.command == "DELETE":
            kv.pop("/".join(parts[3:]), None)
            return self.reply(204)
        if parts[:2] == ["v1", "transit"]:
            return self.transit(parts[2:])
        return self.reply(404, {"errors": []})

    def kv_data(self, path):
        if self.command == "GET":
            if path not in kv:
                return self.reply(404, {"errors": []})
            entry = kv[path]
            return self.reply(200, {"data": {"data": entry["data"],
                                             "metadata": {"version": entry["version"]}}})
        if self.command == "POST":
            req = self.body()
            cas = req.get("options", {}).get("cas")
            current = kv.get(path, {}).get("version", 0)
            if cas is not None and cas != current:
                return self.reply(400, {"errors": ["check-and-set parameter did not match the current version"]})
            kv[path] = {"data": req.get("data", {}), "version": current + 1}
            return self.reply(200, {"data": {"version": current + 1}})
        return self.reply(405, {"errors": []})

    def transit(self, parts):
        if parts[0] == "keys" and len(parts) == 2:
            name = parts[1]
            if self.command == "POST":
                transit.setdefault(name, {"secret": secrets.token_bytes(32), "deletion_allowed": False})
                return self.reply(204)
            if self.command == "DELETE":
                if name not in transit:
                    return self.reply(204)
                if not transit[name]["deletion_allowed"]:
                    return self.reply(400, {"errors": ["deletion is not allowed for this key"]})
                del transit[name]
                return self.reply(204)
        if parts[0] == "keys" and len(parts) == 3 and parts[2] == "config" and self.command == "POST":
            if parts[1] not in transit:
                return self.reply(404, {"errors": []})
            transit[parts[1]]["deletion_allowed"] = bool(self.body().get("deletion_allowed"))
            return self.reply(204)
        if parts[:2] == ["datakey", "wrapped"] and len(parts) == 3 and self.command == "POST":
            key = transit.get(parts[2])
            if key is None:
                return self.reply(400, {"errors": ["encryption key not found"]})
            nonce = secrets.token_bytes(12)
            wrapped = nonce + xor_stream(key["secret"], nonce, secrets.token_bytes(32))
            return self.reply(200, {"data": {"ciphertext": "vault:v1:" + base64.b64encode(wrapped).decode()}})
        if parts[0] == "decrypt" and len(parts) == 2 and self.command == "POST":
            key = transit.get(parts[1])
            if key is None:
                return self.reply(400, {"errors": ["encryption key not found"]})
            blob = self.body().get("ciphertext", "")
            if not blob.startswith("vault:v1:"):
                return self.reply(400, {"errors": ["invalid ciphertext"]})
            raw = base64.b64decode(blob[len("vault:v1:"):])
            plain = xor_stream(key["secret"], raw[:12], raw[12:])
            return self.reply(200, {"data": {"plaintext": base64.b64encode(plain).decode()}})
        return self.reply(404, {"errors": []})

    do_GET = do_POST = do_DELETE = do_PUT = handle_any


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
tmp = PORT_FILE + ".tmp"
with open(tmp, "w") as f:
    f.write(str(server.server_address[1]))
os.rename(tmp, PORT_FILE)
server.serve_forever()
