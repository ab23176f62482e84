#!/usr/bin/env bash
# vecphi CI, cassert mode: the regression and TAP suites against a
# PostgreSQL 15 built with --enable-cassert --enable-debug, so that Assert()s,
# memory-context checks (MEMORY_CONTEXT_CHECKING) and CLOBBER_FREED_MEMORY
# (freed memory overwritten with 0x7F) see vecphi's code.
#
# Run as root: sudo bash test/ci/cassert.sh   (.ci/run calls it)
#
#  1. test/ci/build_cassert_pg.sh builds that server once from Debian's
#     source package and caches it under /var/cache/vecphi (reused while
#     the version and recipe stay the same: ~3.5 min the first time on 2
#     cores, nothing afterwards).
#  2. A copy of the source tree (no .git, no objects: they were built
#     against other headers) is built and installed into a per-run copy of
#     the cached server (the cache itself is never written after the build), and its test/run_tests.sh runs the suites; the
#     servers are that build, since run_tests.sh puts its bindir first on
#     PATH and the TAP modules and pg_regress come from its PGXS directory.
#  3. The mode fails if a suite fails or any log shows an assertion failure
#     ("TRAP:") or a backend killed by SIGABRT/SIGSEGV (test/ci/lib.sh).
# Set VECPHI_ONLY as for test/run_tests.sh to run a subset.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=test/ci/lib.sh
. "$REPO/test/ci/lib.sh"
die() { echo "cassert.sh: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "must run as root"

start=$(date +%s)
PG_CONFIG=$(bash "$REPO/test/ci/build_cassert_pg.sh" | tail -n 1)
[[ -x $PG_CONFIG ]] || die "no cassert PostgreSQL (build_cassert_pg.sh failed)"
echo "=== cassert mode: server $("$PG_CONFIG" --version), $PG_CONFIG ($(($(date +%s) - start)) s to get it)"

CM=$(mktemp -d /var/tmp/vecphi-cassert.XXXXXX)
chmod 0755 "$CM" # the servers run as postgres, from the copy below
keep=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if ((keep)); then
		echo "cassert.sh: files kept in $CM"
	else
		rm -rf "$CM"
	fi
}
trap cleanup EXIT

CI_SRC=$CM/src
ci_copy_source "$REPO" "$CI_SRC"
make -s -C "$CI_SRC" PG_CONFIG="$PG_CONFIG" clean >/dev/null

# The extension goes into a copy of the cached installation (relocatable:
# its pg_config and server find their directories from their own path), so
# the cache stays as built and two runs never share an installed vecphi.so.
cp -a "$(dirname "$(dirname "$PG_CONFIG")")" "$CM/pg"
PG_CONFIG=$CM/pg/bin/pg_config
[[ $("$PG_CONFIG" --pkglibdir) == "$CM"/pg/* ]] ||
	die "the copied pg_config does not report relocated paths"
ci_run_suite "$CM/suite.log" PG_CONFIG="$PG_CONFIG"

echo "=== scanning server logs for assertion failures and crashes"
scan_dirs=()
[[ -n $CI_SUITE_WORK ]] && scan_dirs+=("$CI_SUITE_WORK")
CI_REPORTS=0
((${#scan_dirs[@]} == 0)) || ci_scan "${scan_dirs[@]}"
echo "=== cassert mode: $(($(date +%s) - start)) s"
if ci_summary "cassert mode"; then
	[[ -n $CI_SUITE_WORK ]] && rm -rf "$CI_SUITE_WORK"
	exit 0
fi
keep=1
exit 1
