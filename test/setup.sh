#!/usr/bin/env bash
# vecphi: install the build and test prerequisites, then build and install
# the extension into the Debian PostgreSQL 15 installation.
#
# Run as root: sudo bash test/setup.sh
# Idempotent: apt is skipped entirely when every package is already present,
# and make only rebuilds what changed.  test/demo.sh and test/run_tests.sh
# call this first, so a brand-new Debian 12 machine needs nothing else.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# PG_CONFIG may point at another (e.g. relocated) PostgreSQL 15 installation.
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

die() { echo "setup.sh: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (apt-get and make install need it): sudo bash $0"

# What the build, the servers and the tests need:
#   postgresql-15             server binaries, the 'postgres' OS user, contrib (pgcrypto)
#   postgresql-server-dev-15  PGXS, server headers, pg_regress, the TAP perl modules
#   postgresql-contrib        contrib metapackage (contrib ships inside postgresql-15 on Debian)
#   libssl-dev                OpenSSL headers and libcrypto for src/crypto.c
#   libipc-run-perl           IPC::Run, required by PostgreSQL::Test::Cluster
#   make gcc perl             the build and prove(1)
#   pg-bsd-indent             the indenter behind pgindent (test/check_indent.sh)
#   openssl                   the CLI, to make ES256/RS256 test keys and tokens
#   dataset-fashion-mnist     real vectors for the ehnsw recall test and benchmark
#   python3-psycopg python3-numpy   the Python client helper's tests (psycopg 3)
#   nodejs                    the Node client helper's tests (node-postgres from npm)
PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	postgresql-contrib
	libssl-dev
	libipc-run-perl
	make
	gcc
	perl
	pg-bsd-indent
	openssl
	dataset-fashion-mnist
	python3-psycopg
	python3-numpy
	nodejs
)

# Ask dpkg rather than apt: it works offline and without package lists.
missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	[[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
	echo "setup.sh: installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	# Recommends are not needed for building or testing and cost minutes.
	apt-get install -y --no-install-recommends "${missing[@]}"
else
	echo "setup.sh: all packages present, skipping apt"
fi

# Debian's nodejs comes without npm; a nodejs that brings its own does not
# need Debian's (the two conflict).
if ! command -v npm >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update && apt-get install -y --no-install-recommends npm; } ||
		echo "setup.sh: npm could not be installed: the node-postgres client test will be skipped" >&2
fi

# node-postgres for test/clients/node, at the version package-lock.json pins.
# Without the npm registry the client test skips and says why.
if [[ ! -f $REPO/test/clients/node/node_modules/pg/package.json ]]; then
	(cd "$REPO/test/clients/node" && npm ci --no-audit --no-fund) ||
		echo "setup.sh: npm ci failed: the node-postgres client test will be skipped" >&2
fi

[[ -x $PG_CONFIG ]] || die "$PG_CONFIG not found after installing packages"
id postgres >/dev/null 2>&1 || die "OS user 'postgres' missing (it comes with postgresql-15)"

# Build in the repository itself (the Makefile adds -Werror), then install
# into the server's lib and extension directories.
cd "$REPO"
jobs=$(nproc 2>/dev/null || echo 2)
make -j"$jobs" PG_CONFIG="$PG_CONFIG"
make PG_CONFIG="$PG_CONFIG" install
echo "setup.sh: vecphi built and installed into $("$PG_CONFIG" --pkglibdir)"

# Citus (not packaged in Debian 12) for the scale-out tests (test/t/18*):
# built from ../shared/citus beside the repository into the same PostgreSQL
# (its build.sh skips when that version is already installed).  A failed
# build fails setup: the Citus tests must not silently skip.
# VECPHI_SHARED_DIR: where ../shared is when this runs from a copy of the
# source (the sanitizer and cassert modes of CI).
CITUS_DIR=${VECPHI_SHARED_DIR:-$REPO/../shared}/citus
if [[ -f $CITUS_DIR/build.sh ]]; then
	PG_CONFIG="$PG_CONFIG" bash "$CITUS_DIR/build.sh" ||
		die "building Citus from $CITUS_DIR failed (the Citus TAP tests need it)"
else
	echo "setup.sh: $CITUS_DIR/build.sh not found: Citus not built, the Citus TAP tests will skip unless Citus is installed"
fi
