#!/usr/bin/env python3
"""layers.py: vecphi's source layers, and the dependencies between them.

Lists, for every pair of layers, the #includes of vecphi headers and the
calls of functions those headers declare, and fails (exit 1) on any that
points upward - from a layer to one above it - unless it is on the allow
list below, each entry with the reason it is there.  Also fails on any
circle between source files (a.c uses what b.c defines and b.c, perhaps
through others, what a.c defines), inside a layer as across layers, and
on any source file over MAX_LINES lines.  Also fails when a
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
          "protect", "erasure", "migrate", "entry"]

# Files still at the top of src/ (issue #13: moved after the branches that
# change them have merged).  Everything else: its folder names its layer.
TOP_LEVEL = {
    "vecphi.c": "entry",
}

# Upward dependencies allowed, as (file, header or function): why each is
# acceptable for now.  Keep this list short; each entry is a debt.
ALLOW = {
}

# Longest a source file may grow (issue #13: "no file over about 1,000
# lines"): past it, a file holds more than one concern.
MAX_LINES = 1000

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


def file_circles(files, declared):
    """Circles between .c files: a file that uses a function or variable
    another defines depends on it, inside a layer as across layers."""
    defined_in = {}
    for rel, text in files.items():
        if not rel.endswith(".c"):
            continue
        code = strip_comments(text)
        for name in declared:
            if re.search(r"^%s\(" % re.escape(name), code, flags=re.M) or \
               re.search(r"^(?!static|extern)[A-Za-z_][\w \t\*]*\b%s\s*(=|;|\[)" % re.escape(name),
                         code, flags=re.M):
                defined_in[name] = rel
    uses = {}
    for rel, text in files.items():
        if not rel.endswith(".c"):
            continue
        code = strip_comments(text)
        uses[rel] = {}
        for name, where in defined_in.items():
            if where != rel and re.search(r"\b%s\b" % re.escape(name), code):
                uses[rel].setdefault(where, []).append(name)

    # Tarjan's strongly connected components, iteratively.
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = [0]

    def visit(root):
        work = [(root, iter(sorted(uses[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(uses[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                if len(members) > 1:
                    circles.append(sorted(members))

    for rel in sorted(uses):
        if rel not in index:
            visit(rel)
    problems = []
    for members in circles:
        detail = "; ".join("%s uses %s of %s" % (a, ", ".join(sorted(uses[a][b])[:3]), b)
                           for a in members for b in members if b in uses[a])
        problems.append("files call each other in a circle: %s (%s)" % (", ".join(members), detail))
    print("circles between source files: %d" % len(circles))
    return problems


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

    problems.extend(file_circles(files, declared))
    for rel, text in sorted(files.items()):
        if text.count("\n") > MAX_LINES:
            problems.append("src/%s has %d lines: split it (at most %d)"
                            % (rel, text.count("\n"), MAX_LINES))

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
