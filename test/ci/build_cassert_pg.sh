#!/usr/bin/env bash
# vecphi CI: build (once) a PostgreSQL 15 with --enable-cassert --enable-debug
# from Debian's source package and install it into a cache directory outside
# the checkout, so that later CI runs on the same machine reuse it.
#
# Run as root: sudo bash test/ci/build_cassert_pg.sh
# Prints nothing but progress on stderr and, on its last stdout line, the
# path of the cached installation's pg_config.
#
# Environment:
#   VECPHI_CACHE_DIR    cache root (default /var/cache/vecphi)
#   VECPHI_PG_VERSION   Debian source version (default 15.18-0+deb12u1, the
#                       version bookworm's main suite serves; see
#                       ../shared/notes/postgresql-source.md)
#
# The cache key is the upstream version plus a "recipe" number below: bump
# RECIPE when the configure flags or the contrib list change, so that a stale
# build is never reused.  A finished build is marked by a .complete file;
# a half-built directory (interrupted run) is removed and built again.
set -euo pipefail

die() { echo "build_cassert_pg.sh: $*" >&2; exit 1; }
say() { echo "build_cassert_pg.sh: $*" >&2; }
[[ $EUID -eq 0 ]] || die "must run as root (apt-get, /var/cache)"

CACHE=${VECPHI_CACHE_DIR:-/var/cache/vecphi}
DEBVER=${VECPHI_PG_VERSION:-15.18-0+deb12u1}
UPVER=${DEBVER%%-*}
RECIPE=2
PREFIX=$CACHE/pg15-cassert-$UPVER-r$RECIPE
SRCDIR=$CACHE/src

mkdir -p "$CACHE"
# One builder at a time (two CI runs on one machine); the second waits and
# then finds the finished build.
exec 9>"$CACHE/.cassert.lock"
flock 9

if [[ -f $PREFIX/.complete && -x $PREFIX/bin/pg_config ]]; then
	say "reusing $PREFIX"
	echo "$PREFIX/bin/pg_config"
	exit 0
fi
rm -rf "$PREFIX"

# Build prerequisites beyond those test/setup.sh installs.
PACKAGES=(bison flex libreadline-dev zlib1g-dev libssl-dev libipc-run-perl gcc make perl dpkg-dev bzip2 xz-utils)
missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	[[ $status == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
	say "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Debian's source package.  apt serves sources only with a deb-src entry;
# add one mirroring the main suite's deb entry (same URIs and Signed-By).
orig=$SRCDIR/postgresql-15_$UPVER.orig.tar.bz2
if [[ ! -f $orig ]]; then
	if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ &&
		! grep -qs '^deb-src' /etc/apt/sources.list; then
		say "adding a deb-src entry for bookworm main"
		cat >/etc/apt/sources.list.d/vecphi-debsrc.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
		apt-get update
	fi
	mkdir -p "$SRCDIR"
	chown _apt "$SRCDIR" 2>/dev/null || true
	(cd "$SRCDIR" && apt-get source --download-only "postgresql-15=$DEBVER")
fi
[[ -f $orig ]] || die "no $orig after apt-get source"

BUILD=$(mktemp -d /var/tmp/vecphi-cassert-build.XXXXXX)
trap 'rm -rf "$BUILD"' EXIT
say "building PostgreSQL $UPVER (cassert, debug) in $BUILD, installing into $PREFIX"
tar -C "$BUILD" -xjf "$orig"
cd "$BUILD/postgresql-$UPVER"

# Small and quick: no ICU, LLVM, Kerberos, LDAP, PAM, Python, Perl or Tcl.
# OpenSSL for contrib/pgcrypto (the regression suites load it); TAP tests
# for the PostgreSQL::Test perl modules that test/t/*.pl use.
./configure --prefix="$PREFIX" \
	--enable-cassert --enable-debug --enable-tap-tests \
	--with-openssl --without-icu --without-llvm \
	CFLAGS="-O1 -g -fno-omit-frame-pointer" >"$BUILD/configure.log" 2>&1 ||
	{ tail -n 40 "$BUILD/configure.log" >&2; die "configure failed"; }

jobs=${VECPHI_BUILD_JOBS:-2}
nice -n 10 make -s -j"$jobs" >"$BUILD/make.log" 2>&1 ||
	{ tail -n 60 "$BUILD/make.log" >&2; die "make failed"; }
make -s install >>"$BUILD/make.log" 2>&1 ||
	{ tail -n 60 "$BUILD/make.log" >&2; die "make install failed"; }
# The contrib modules the suites use.
for c in pgcrypto pageinspect amcheck auto_explain; do
	nice -n 10 make -s -C "contrib/$c" -j"$jobs" install >>"$BUILD/make.log" 2>&1 ||
		{ tail -n 60 "$BUILD/make.log" >&2; die "contrib/$c failed"; }
done

grep -q '#define USE_ASSERT_CHECKING 1' "$("$PREFIX/bin/pg_config" --includedir-server)/pg_config.h" ||
	die "the installed server is not an assert-enabled build"
touch "$PREFIX/.complete"
say "done"
echo "$PREFIX/bin/pg_config"
