#!/usr/bin/env python3
"""layers.py: vecphi's source layers, and the dependencies between them.

Lists, for every pair of layers, the #includes of vecphi headers and the
calls of functions those headers declare, and fails (exit 1) on any that
points upward - from a layer to one above it - unless it is on the allow
list below, each entry with the reason it is there.  Also fails when a
file outside src/crypto/ includes OpenSSL.  Cheap: reads the sources only
(no build, no server); test/run_tests.sh runs it.

  python3 test/tools/layers.py [-v]     (-v: list every edge, not only counts)

The layers, bottom up (docs/architecture.md says what each owns):
"""
import os
import re
import sys

# Bottom up; a file may include and call its own layer and those below.
LAYERS = ["common", "crypto", "keys", "claims", "types", "ehnsw", "audit",
          "protect", "erasure", "entry"]

# Files still at the top of src/ (issue #13: moved after the branches that
# change them have merged).  Everything else: its folder names its layer.
TOP_LEVEL = {
    "vecphi.c": "entry",
}

# Upward dependencies allowed, as (file, header or function): why each is
# acceptable for now.  Keep this list short; each entry is a debt.
ALLOW = {
}

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")


def layer_of(rel):
    """Layer of a file, by its path under src/."""
    if "/" in rel:
        return rel.split("/", 1)[0]
    base = os.path.basename(rel)
    if base in TOP_LEVEL:
        return TOP_LEVEL[base]
    raise SystemExit("layers.py: no layer for src/%s (add it to TOP_LEVEL)" % rel)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(\\.|[^"\\\n])*"', '""', text)


def main():
    verbose = "-v" in sys.argv[1:]
    files = {}
    for root, _dirs, names in os.walk(SRC):
        for name in names:
            if name.endswith((".c", ".h")):
                path = os.path.join(root, name)
                files[os.path.relpath(path, SRC)] = open(path, encoding="utf-8").read()

    problems = []
    headers = {}
    for rel in files:
        if rel.endswith(".h"):
            base = os.path.basename(rel)
            if base in headers:
                problems.append("two headers named %s: src/%s, src/%s (the -I flags need unique names)"
                                % (base, headers[base], rel))
            headers[base] = rel

    # Functions and variables each header declares, by name.
    declared = {}
    for base, rel in headers.items():
        text = strip_comments(files[rel])
        for m in re.finditer(r"^extern\s[^;(]*?\b([A-Za-z_]\w*)\s*(\(|;|\[)", text, flags=re.M):
            declared.setdefault(m.group(1), rel)
        for m in re.finditer(r"^#define\s+([a-z_]\w*)\(", text, flags=re.M):
            declared.setdefault(m.group(1), rel)

    edges = {}          # (from layer, to layer) -> list of "file: what"
    upward = []
    for rel, text in sorted(files.items()):
        src_layer = layer_of(rel)
        base = os.path.basename(rel)
        code = strip_comments(text)
        seen = set()
        for m in re.finditer(r'^#include\s+"([^"]+)"', text, flags=re.M):
            inc = os.path.basename(m.group(1))
            if inc in headers:
                seen.add((inc, headers[inc]))
        if rel.endswith(".c"):
            for name, hdr in declared.items():
                if re.search(r"\b%s\b" % re.escape(name), code):
                    seen.add((name, hdr))
        for what, target in sorted(seen):
            dst_layer = layer_of(target)
            if dst_layer == src_layer:
                continue
            edges.setdefault((src_layer, dst_layer), []).append("%s: %s" % (rel, what))
            if LAYERS.index(dst_layer) > LAYERS.index(src_layer):
                key = (rel if "/" in rel else base, what)
                upward.append((key in ALLOW, rel, what, dst_layer))
        if not rel.startswith("crypto/") and re.search(r"#include\s+<openssl/", text):
            problems.append("src/%s includes OpenSSL: only src/crypto/ may" % rel)

    print("layers, bottom up: %s" % " < ".join(LAYERS))
    for (a, b), items in sorted(edges.items(), key=lambda e: (LAYERS.index(e[0][0]), LAYERS.index(e[0][1]))):
        arrow = "UP" if LAYERS.index(b) > LAYERS.index(a) else "  "
        print("%s %-8s -> %-8s %3d" % (arrow, a, b, len(items)))
        if verbose:
            for item in items:
                print("      %s" % item)
    allowed = [u for u in upward if u[0]]
    for ok, rel, what, dst in upward:
        if not ok:
            problems.append("upward dependency: src/%s uses %s (layer %s)" % (rel, what, dst))
    unused = [a for a in ALLOW if not any(u[0] and ((u[1] if "/" in u[1] else os.path.basename(u[1])), u[2]) == a
                                          for u in upward)]
    for a in sorted(unused):
        problems.append("allow-list entry no longer needed: %s -> %s (remove it)" % a)
    print("upward dependencies: %d allowed (listed in test/tools/layers.py), %d not"
          % (len(allowed), len(upward) - len(allowed)))
    for p in problems:
        print("layers.py: %s" % p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
