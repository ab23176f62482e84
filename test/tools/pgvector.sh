#!/usr/bin/env bash
# Make pgvector available in the PostgreSQL that PG_CONFIG names: nothing
# to do when its vector.control is installed there; otherwise build
# $PGVECTOR_TARBALL (default ../shared/bench/pgvector-0.8.6.tar.gz beside
# the repository, or under $VECPHI_SHARED_DIR) in a temporary directory and install it with the same
# PG_CONFIG (needs write access to that installation: run as its owner or
# root).  Used by test/bench/side_by_side.sh and the migration TAP tests.
#
#   PG_CONFIG=/path/to/pg_config bash test/tools/pgvector.sh
#
# Exit 0: pgvector is installed (prints nothing, or "built pgvector ...").
# Exit 1: it is not, and cannot be; prints one line saying why (callers
# skip with it).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
# VECPHI_SHARED_DIR: where ../shared is when this runs from a copy of the
# source (test/ci/lib.sh sets it for the sanitizer and cassert modes).
PGVECTOR_TARBALL=${PGVECTOR_TARBALL:-${VECPHI_SHARED_DIR:-$REPO/../shared}/bench/pgvector-0.8.6.tar.gz}

sharedir=$("$PG_CONFIG" --sharedir 2>/dev/null) || {
	echo "no pgvector: $PG_CONFIG does not run"
	exit 1
}
[[ -f $sharedir/extension/vector.control ]] && exit 0
if [[ ! -f $PGVECTOR_TARBALL ]]; then
	echo "no pgvector: neither installed in $sharedir nor $PGVECTOR_TARBALL"
	exit 1
fi
build=$(mktemp -d /tmp/vecphi-pgvector-build.XXXXXX)
trap 'rm -rf "$build"' EXIT
if tar -xzf "$PGVECTOR_TARBALL" -C "$build" &&
	src=$(find "$build" -mindepth 1 -maxdepth 1 -type d | head -n 1) &&
	nice -n 10 make -C "$src" -j2 PG_CONFIG="$PG_CONFIG" >"$build/build.log" 2>&1 &&
	make -C "$src" PG_CONFIG="$PG_CONFIG" install >>"$build/build.log" 2>&1 &&
	[[ -f $sharedir/extension/vector.control ]]; then
	echo "built pgvector from $(basename "$PGVECTOR_TARBALL") (PG_CONFIG=$PG_CONFIG)"
	exit 0
fi
tail -n 20 "$build/build.log" >&2 2>/dev/null || true
echo "no pgvector: building $(basename "$PGVECTOR_TARBALL") failed"
exit 1
