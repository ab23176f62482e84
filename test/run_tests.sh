#!/usr/bin/env bash
# vecphi: the whole test suite.  .ci/run calls exactly this.
#
# Run as root from anywhere: sudo bash test/run_tests.sh
#
#  1. test/setup.sh installs the packages and builds/installs the extension.
#  2. The source tree is copied to a fresh temporary directory owned by the
#     'postgres' OS user, because PostgreSQL refuses to run as root and the
#     repository may live in a directory that user cannot read.
#  3. As 'postgres':
#     a. pg_regress runs the REGRESS suites of the Makefile (sql/NAME.sql
#        against expected/NAME.out) on a temporary instance started with
#        shared_preload_libraries = 'vecphi', a key directory and a JWT secret.
#     b. prove runs every TAP test in test/t/*.pl, one file at a time.
#  4. One summary line "N passed, M failed" counts regression tests plus TAP
#     files; the exit status is non-zero when anything failed or nothing ran.
#
# Environment seen by the tests (pg_regress's psql and the TAP scripts):
#   VECPHI_TEST_SECRET       the HS256 secret the regression server trusts
#   VECPHI_TEST_SECRET_FILE  the file holding it (vecphi.jwt_secret_file)
#   VECPHI_TEST_KEYDIR       the regression server's vecphi.key_directory
#   VECPHI_SOURCE_DIR        the copy of the source tree the tests run from
#   VECPHI_CRASH_SEED, VECPHI_CRASH_ROUNDS  passed on to TAP 120 when set
#   VECPHI_SANITIZER         passed on when set (test/ci/sanitize.sh; TAP 097)
# Set VECPHI_KEEP_TMP=1 to keep the temporary directory even on success
# (it is always kept, and its path printed, when something failed).
# Set VECPHI_ONLY="name ..." to run only the regression suites and TAP
# files with those names (e.g. VECPHI_ONLY="setup claims 050_audit_durability");
# a developer's shortcut: CI always runs everything.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "run_tests.sh: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (it installs packages and switches to the postgres user): sudo bash $0"

# PG_CONFIG may point at another (e.g. relocated) PostgreSQL 15 installation;
# everything else is derived from it.
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
bash "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
PGBIN=$("$PG_CONFIG" --bindir)
PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/../..
PGXS_DIR=$(cd "$PGXS_DIR" && pwd)
PG_REGRESS=$PGXS_DIR/src/test/regress/pg_regress
TAP_PERL_LIB=$PGXS_DIR/src/test/perl
# The secret is public on purpose: it only ever protects throwaway test
# servers.  test/lib/VecphiTest.pm uses the same value.
TEST_SECRET='vecphi-regression-secret-0123456789abcdef'


# ---------------------------------------------------------------------------
# Test list: the REGRESS and REGRESS_OPTS variables of the Makefile, read by
# make itself so that line continuations, += and PGXS additions all count.
# ---------------------------------------------------------------------------
printer=$(mktemp)
# shellcheck disable=SC2016 # $(...) here is make syntax, for make
printf 'print-%%:\n\t@:$(info $($*))\n' >"$printer"
make_var() {
	make -s --no-print-directory -C "$REPO" -f Makefile -f "$printer" \
		PG_CONFIG="$PG_CONFIG" "print-$1"
}
# (Assignments first, so that set -e sees a failing make.)
regress_list=$(make_var REGRESS)
regress_opts_list=$(make_var REGRESS_OPTS)
rm -f "$printer"
read -r -a REGRESS_TESTS <<<"$regress_list"
if [[ -n ${VECPHI_ONLY:-} ]]; then
	only=" $VECPHI_ONLY "
	selected=()
	for t in "${REGRESS_TESTS[@]}"; do
		[[ $only == *" $t "* ]] && selected+=("$t")
	done
	REGRESS_TESTS=("${selected[@]}")
fi
read -r -a makefile_opts <<<"$regress_opts_list"

# Keep the Makefile's options (--load-extension=..., --dbname=...) but not
# its directories: ours point into the temporary copy.
REGRESS_OPTS=()
for opt in "${makefile_opts[@]}"; do
	case $opt in
	--inputdir=* | --outputdir=*) ;;
	*) REGRESS_OPTS+=("$opt") ;;
	esac
done

# ---------------------------------------------------------------------------
# Scratch area: /tmp rather than $TMPDIR, whose directory 'postgres' may not
# be able to enter.  Short paths also keep Unix socket names under 107 bytes.
# ---------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/vecphi-test.XXXXXX)
COPY=$WORK/src
KEYDIR=$WORK/keys
SECRET_FILE=$WORK/jwt_secret
TEMP_CONF=$WORK/regress.conf
TAPDIR=$WORK/tap
status=1

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [[ $status -eq 0 && ${VECPHI_KEEP_TMP:-0} != 1 ]]; then
		rm -rf "$WORK"
	else
		echo "run_tests.sh: test files kept in $WORK"
	fi
}
trap cleanup EXIT

mkdir -p "$COPY" "$TAPDIR"
# The working tree without .git; build products come along but are unused
# (the extension is already installed).
tar -C "$REPO" --exclude=./.git -cf - . | tar -C "$COPY" -xf -

# Key directory outside any data directory, as in production.
install -d -m 0700 "$KEYDIR"
(umask 077 && printf '%s' "$TEST_SECRET" >"$SECRET_FILE")
chmod 0600 "$SECRET_FILE"

cat >"$TEMP_CONF" <<EOF
# Generated by test/run_tests.sh for the pg_regress temporary instance.
shared_preload_libraries = 'vecphi'
# Results that depend on what VACUUM can remove (space reuse, erasure) must
# not depend on whether an autovacuum worker holds a snapshot at that moment.
autovacuum = off
vecphi.key_directory = '$KEYDIR'
vecphi.jwt_secret_file = '$SECRET_FILE'
EOF

chown -R postgres:postgres "$WORK"

# Everything below runs as 'postgres' with a clean, explicit environment so
# that nothing from the caller's shell (PG* variables, locale, CI settings)
# changes the results.
PG_ENV=(
	HOME="$WORK"
	PATH="$PGBIN:/usr/local/bin:/usr/bin:/bin"
	LANG=C.UTF-8
	VECPHI_TEST_SECRET="$TEST_SECRET"
	VECPHI_TEST_SECRET_FILE="$SECRET_FILE"
	VECPHI_TEST_KEYDIR="$KEYDIR"
	VECPHI_SOURCE_DIR="$COPY"
)
as_postgres() {
	(cd "$WORK" && runuser -u postgres -- env -i "${PG_ENV[@]}" "$@")
}

passed=0
failed=0

# ---------------------------------------------------------------------------
# a. pg_regress
# ---------------------------------------------------------------------------
if ((${#REGRESS_TESTS[@]} > 0)); then
	echo "=== pg_regress: ${REGRESS_TESTS[*]}"
	# --no-locale and UTF8 make the output independent of the machine's
	# locale settings.
	set +e
	as_postgres "$PG_REGRESS" \
		"${REGRESS_OPTS[@]}" \
		--temp-instance="$WORK/regress_instance" \
		--temp-config="$TEMP_CONF" \
		--bindir="$PGBIN" \
		--inputdir="$COPY" \
		--outputdir="$WORK/regress_out" \
		--no-locale --encoding=UTF8 \
		"${REGRESS_TESTS[@]}" 2>&1 | tee "$WORK/regress_stdout.txt"
	regress_rc=${PIPESTATUS[0]}
	set -e

	# A test passed only if pg_regress printed "ok" for it; any test without
	# that line failed, including tests that never ran because the instance
	# did not start.  (PG 15 prints "test NAME ... ok"; later versions use
	# TAP-style "ok N - NAME".)
	regress_ok=$(grep -cE '^(test .* \.\.\. ok( |$)|ok [0-9]+ )' "$WORK/regress_stdout.txt" || true)
	regress_failed=$((${#REGRESS_TESTS[@]} - regress_ok))
	if ((regress_failed < 0)); then regress_failed=0; fi
	passed=$((passed + regress_ok))
	failed=$((failed + regress_failed))

	if ((regress_rc != 0 || regress_failed > 0)); then
		echo "=== pg_regress failed (exit $regress_rc)"
		if [[ -s $WORK/regress_out/regression.diffs ]]; then
			echo "--- regression.diffs (first 20000 bytes)"
			head -c 20000 "$WORK/regress_out/regression.diffs"
			echo
		fi
		# pg_regress stops at a test without an expected file; show what
		# that test printed, which is what its expected file would hold.
		for t in "${REGRESS_TESTS[@]}"; do
			if [[ ! -f $COPY/expected/$t.out && -f $WORK/regress_out/results/$t.out ]]; then
				echo "--- expected/$t.out is missing; the test printed (first 20000 bytes):"
				head -c 20000 "$WORK/regress_out/results/$t.out"
				echo
			fi
		done
		if [[ -f $WORK/regress_out/log/postmaster.log ]]; then
			echo "--- tail of the temporary instance's server log"
			tail -n 60 "$WORK/regress_out/log/postmaster.log"
		fi
	fi
else
	echo "=== pg_regress: REGRESS is empty in the Makefile, nothing to run"
fi

# ---------------------------------------------------------------------------
# a2. Isolation specs (the ISOLATION variable of the Makefile: specs/NAME.spec
#     against expected/NAME.out) on a temporary instance configured as the
#     pg_regress one.  Each spec counts as one test.
# ---------------------------------------------------------------------------
iso_printer=$(mktemp)
# shellcheck disable=SC2016 # $(...) here is make syntax, for make
printf 'print-%%:\n\t@:$(info $($*))\n' >"$iso_printer"
iso_list=$(make -s --no-print-directory -C "$REPO" -f Makefile -f "$iso_printer" \
	PG_CONFIG="$PG_CONFIG" print-ISOLATION)
iso_opts_list=$(make -s --no-print-directory -C "$REPO" -f Makefile -f "$iso_printer" \
	PG_CONFIG="$PG_CONFIG" print-ISOLATION_OPTS)
rm -f "$iso_printer"
read -r -a ISOLATION_TESTS <<<"$iso_list"
if [[ -n ${VECPHI_ONLY:-} ]]; then
	iso_selected=()
	for t in "${ISOLATION_TESTS[@]}"; do
		[[ " $VECPHI_ONLY " == *" $t "* ]] && iso_selected+=("$t")
	done
	ISOLATION_TESTS=("${iso_selected[@]}")
fi
read -r -a iso_makefile_opts <<<"$iso_opts_list"
ISOLATION_OPTS=()
for opt in "${iso_makefile_opts[@]}"; do
	case $opt in
	--inputdir=* | --outputdir=*) ;;
	*) ISOLATION_OPTS+=("$opt") ;;
	esac
done
PG_ISOLATION_REGRESS=$PGXS_DIR/src/test/isolation/pg_isolation_regress
if ((${#ISOLATION_TESTS[@]} > 0)); then
	echo "=== pg_isolation_regress: ${ISOLATION_TESTS[*]}"
	set +e
	as_postgres "$PG_ISOLATION_REGRESS" \
		"${ISOLATION_OPTS[@]}" \
		--temp-instance="$WORK/isolation_instance" \
		--temp-config="$TEMP_CONF" \
		--bindir="$PGBIN" \
		--inputdir="$COPY" \
		--outputdir="$WORK/isolation_out" \
		--no-locale --encoding=UTF8 \
		"${ISOLATION_TESTS[@]}" 2>&1 | tee "$WORK/isolation_stdout.txt"
	iso_rc=${PIPESTATUS[0]}
	set -e
	iso_ok=$(grep -cE '^(test .* \.\.\. ok( |$)|ok [0-9]+ )' "$WORK/isolation_stdout.txt" || true)
	iso_failed=$((${#ISOLATION_TESTS[@]} - iso_ok))
	if ((iso_failed < 0)); then iso_failed=0; fi
	passed=$((passed + iso_ok))
	failed=$((failed + iso_failed))
	if ((iso_rc != 0 || iso_failed > 0)); then
		echo "=== pg_isolation_regress failed (exit $iso_rc)"
		if [[ -s $WORK/isolation_out/regression.diffs ]]; then
			echo "--- regression.diffs (first 20000 bytes)"
			head -c 20000 "$WORK/isolation_out/regression.diffs"
			echo
		fi
		for t in "${ISOLATION_TESTS[@]}"; do
			if [[ ! -f $COPY/expected/$t.out && -f $WORK/isolation_out/results/$t.out ]]; then
				echo "--- expected/$t.out is missing; the spec printed (first 20000 bytes):"
				head -c 20000 "$WORK/isolation_out/results/$t.out"
				echo
			fi
		done
		if [[ -f $WORK/isolation_out/log/postmaster.log ]]; then
			echo "--- tail of the temporary instance's server log"
			tail -n 60 "$WORK/isolation_out/log/postmaster.log"
		fi
	fi
fi

# ---------------------------------------------------------------------------
# b. TAP tests, one prove run per file so that each file's result and logs
#    are reported on their own.
# ---------------------------------------------------------------------------
# PostgreSQL::Test::Utils writes tmp_check/ under $TESTDIR; the Cluster
# module runs pg_regress --config-auth and finds initdb/pg_ctl on PATH.
PG_ENV+=(
	PERL5LIB="$TAP_PERL_LIB:$COPY/test/lib"
	PG_REGRESS="$PG_REGRESS"
	TESTDIR="$TAPDIR"
)
# TAP 120's seed and round count, to replay a run (see docs/testing.md),
# and the sanitizer mode's marker (TAP 097 skips its absolute memory bound).
for var in VECPHI_CRASH_SEED VECPHI_CRASH_ROUNDS VECPHI_SANITIZER; do
	if [[ -n ${!var:-} ]]; then
		PG_ENV+=("$var=${!var}")
	fi
done
shopt -s nullglob
tap_files=("$COPY"/test/t/*.pl)
shopt -u nullglob
if [[ -n ${VECPHI_ONLY:-} ]]; then
	selected=()
	for tap in "${tap_files[@]}"; do
		[[ " $VECPHI_ONLY " == *" $(basename "$tap" .pl) "* ]] && selected+=("$tap")
	done
	tap_files=("${selected[@]}")
fi
if ((${#tap_files[@]} > 0)); then
	echo "=== TAP tests: ${#tap_files[@]} file(s)"
fi
# The migration tests (15x) need pgvector in this PostgreSQL: installed, or
# built here (as root) from ../shared/bench/; without it they skip.
if [[ " ${tap_files[*]##*/} " == *" 15"[0-9]_* ]]; then
	PG_CONFIG="$PG_CONFIG" bash "$REPO/test/tools/pgvector.sh" || true
fi
for tap in "${tap_files[@]}"; do
	name=$(basename "$tap" .pl)
	# Run from the copy's root so "test/t/NAME.pl" names the log files.
	if (cd "$COPY" && runuser -u postgres -- env -i "${PG_ENV[@]}" \
		prove -v "test/t/$name.pl"); then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "=== TAP test $name failed; tails of its logs:"
		for log in "$TAPDIR/tmp_check/log/regress_log_$name" \
			"$TAPDIR"/tmp_check/log/"${name}"_*.log; do
			[[ -f $log ]] || continue
			echo "--- $log"
			tail -n 80 "$log"
		done
	fi
done

# ---------------------------------------------------------------------------
# c. Formatting: src/ must be as pgindent leaves it.
# ---------------------------------------------------------------------------
echo "=== pgindent formatting check"
if bash "$COPY/test/check_indent.sh"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi

# ---------------------------------------------------------------------------
# d. Layers: no dependency of src/ points upward unless allow-listed.
# ---------------------------------------------------------------------------
echo "=== source layers check"
if python3 "$COPY/test/tools/layers.py"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi

# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------
echo
echo "$passed passed, $failed failed"
if ((failed == 0 && passed > 0)); then
	status=0
fi
exit "$status"
