#!/usr/bin/env bash
# vecphi CI, sanitizer mode: the regression and TAP suites with vecphi.so
# built with -fsanitize=address,undefined and loaded into the servers.
#
# Run as root: sudo bash test/ci/sanitize.sh   (.ci/run calls it)
#
#  1. The Debian PostgreSQL 15 trees (/usr/lib/postgresql/15,
#     /usr/share/postgresql/15, /usr/include/postgresql) are copied under a
#     temporary prefix; that copy's pg_config reports the relocated paths,
#     so the instrumented extension is installed there and the system
#     installation is never touched.
#  2. A copy of the source tree (no .git, no objects) is built with
#     COPT="-fsanitize=address,undefined -fno-omit-frame-pointer", which
#     PGXS adds to both CFLAGS and LDFLAGS.
#  3. That copy's test/run_tests.sh runs everything; the relocated
#     bin/postgres is a wrapper that starts the server with LD_PRELOAD of
#     Debian 12 gcc's ASan runtime (libasan.so.8; the UBSan runtime,
#     libubsan.so.1, comes in as a dependency of vecphi.so) and the
#     sanitizer options below.  PostgreSQL itself is not
#     instrumented, so the runtime must be loaded first: a library that
#     needs libasan and is dlopen()ed later aborts with "ASan runtime does
#     not come first in initial library list".
#  4. The mode fails on any sanitizer report: the ASan/UBSan log_path files
#     and every server and TAP log are scanned (test/ci/lib.sh).
#
# ASAN_OPTIONS: detect_leaks=0 (PostgreSQL's memory contexts free in bulk
# and its processes exit without freeing: leak reports would be noise),
# abort_on_error=1 (a report kills the backend; the test that caused it
# fails and the postmaster logs "terminated by signal 6").
# UBSAN_OPTIONS: print_stacktrace=1:halt_on_error=1.
# Set VECPHI_ONLY as for test/run_tests.sh to run a subset.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=test/ci/lib.sh
. "$REPO/test/ci/lib.sh"
die() { echo "sanitize.sh: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "must run as root"

SYS_PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
# test/setup.sh installs postgresql-15 and the headers if they are missing.
if [[ ! -x $SYS_PG_CONFIG ]]; then
	PG_CONFIG=$SYS_PG_CONFIG bash "$REPO/test/setup.sh"
fi

# gcc's own runtime, whatever its soname (libasan.so.8 with Debian 12's gcc 12).
LIBASAN=$(gcc -print-file-name=libasan.so)
LIBASAN=$(readlink -f "$LIBASAN")
[[ -f $LIBASAN ]] || die "gcc has no libasan.so (apt-get install libasan8 or gcc)"

SAN=$(mktemp -d /var/tmp/vecphi-sanitize.XXXXXX)
keep=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if ((keep)); then
		echo "sanitize.sh: files kept in $SAN"
	else
		rm -rf "$SAN"
	fi
}
trap cleanup EXIT

PGROOT=$SAN/pg
mkdir -p "$PGROOT/usr/lib/postgresql" "$PGROOT/usr/share/postgresql" "$PGROOT/usr/include"
cp -a /usr/lib/postgresql/15 "$PGROOT/usr/lib/postgresql/"
cp -a /usr/share/postgresql/15 "$PGROOT/usr/share/postgresql/"
cp -a /usr/include/postgresql "$PGROOT/usr/include/"
PG_CONFIG=$PGROOT/usr/lib/postgresql/15/bin/pg_config
[[ $("$PG_CONFIG" --pkglibdir) == "$PGROOT"/* ]] ||
	die "the copied pg_config does not report relocated paths"

CI_SRC=$SAN/src
ci_copy_source "$REPO" "$CI_SRC"
make -s -C "$CI_SRC" PG_CONFIG="$PG_CONFIG" clean >/dev/null

# Reports go to files named sanitizer/asan.PID and sanitizer/ubsan.PID.
install -d -o postgres -g postgres "$SAN/sanitizer"
chmod 0755 "$SAN"
ASAN_OPTS="detect_leaks=0:abort_on_error=1:halt_on_error=1:disable_coredump=1:log_path=$SAN/sanitizer/asan:quarantine_size_mb=32:malloc_context_size=20"
UBSAN_OPTS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$SAN/sanitizer/ubsan"

# Only the server gets the runtime: the copy's bin/postgres becomes a
# wrapper that preloads libasan and test/ci/asan_shim.c (see there: without
# it Debian's postgres hangs at start under a preloaded libasan) and execs
# the real binary under the same name, so that the server still finds its
# share and lib directories from its own path.  psql, pg_dump and perl stay
# uninstrumented; the servers' environment is otherwise the one
# test/run_tests.sh gives them.
gcc -O2 -shared -fPIC -o "$SAN/asan_shim.so" "$REPO/test/ci/asan_shim.c" -ldl
PGBIN=$("$PG_CONFIG" --bindir)
mv "$PGBIN/postgres" "$PGBIN/postgres.real"
cat >"$PGBIN/postgres" <<WRAP
#!/bin/bash
# Written by test/ci/sanitize.sh: postgres with libasan preloaded.
export ASAN_OPTIONS='$ASAN_OPTS'
export UBSAN_OPTIONS='$UBSAN_OPTS'
export LD_PRELOAD='$LIBASAN $SAN/asan_shim.so'
exec -a "\$0" "\$0.real" "\$@"
WRAP
chmod 0755 "$PGBIN/postgres"
"$PGBIN/postgres" -V >/dev/null || die "the wrapped postgres does not start"

echo "=== sanitizer mode: vecphi.so with -fsanitize=address,undefined, $LIBASAN preloaded into postgres"
start=$(date +%s)
ci_run_suite "$SAN/suite.log" \
	PG_CONFIG="$PG_CONFIG" VECPHI_SANITIZER=1 \
	COPT="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

# The build must really be instrumented, or the mode proves nothing.
so=$("$PG_CONFIG" --pkglibdir)/vecphi.so
# (nm's output is read whole: grep -q would close the pipe early, and with
# pipefail nm's SIGPIPE would make the check fail.)
symbols=$(nm -D "$so" 2>/dev/null || true)
if ! grep -q '__asan_report' <<<"$symbols" || ! grep -q '__ubsan_handle' <<<"$symbols"; then
	echo "=== sanitizer mode: $so is not instrumented"
	CI_SUITE_RC=1
	CI_SUITE_LINE=
fi

echo "=== scanning sanitizer logs and server logs for reports"
scan_dirs=("$SAN/sanitizer")
[[ -n $CI_SUITE_WORK ]] && scan_dirs+=("$CI_SUITE_WORK")
ci_scan "${scan_dirs[@]}"
echo "=== sanitizer mode: $(($(date +%s) - start)) s"
if ci_summary "sanitizer mode"; then
	[[ -n $CI_SUITE_WORK ]] && rm -rf "$CI_SUITE_WORK"
	exit 0
fi
keep=1
exit 1
