# shellcheck shell=bash
# vecphi CI: helpers shared by test/ci/sanitize.sh and test/ci/cassert.sh.
# Sourced, not run.

# ci_copy_source REPO DEST: a copy of the working tree without .git and
# without build products, so that a mode builds its own objects (with its
# own flags, against its own headers) and never leaves them in the checkout.
ci_copy_source() {
	local repo=$1 dest=$2
	mkdir -p "$dest"
	tar -C "$repo" --exclude=./.git --exclude='*.o' --exclude='*.so' \
		--exclude='*.bc' -cf - . | tar -C "$dest" -xf -
}

# ci_run_suite LOGFILE ENV...: run the copy's test/run_tests.sh with the
# given extra environment (NAME=VALUE words), output to the terminal and to
# LOGFILE; sets CI_SUITE_RC, CI_SUITE_LINE (its "N passed, M failed" line)
# and CI_SUITE_WORK (its kept temporary directory, logs included).
ci_run_suite() {
	local log=$1
	shift
	set +e
	# The copy in CI_SRC has no ../shared beside it: point setup.sh (Citus)
	# and test/tools/pgvector.sh at the repository's.
	env "$@" VECPHI_KEEP_TMP=1 VECPHI_SHARED_DIR="$REPO/../shared" \
		bash "$CI_SRC/test/run_tests.sh" 2>&1 | tee "$log"
	CI_SUITE_RC=${PIPESTATUS[0]}
	set -e
	CI_SUITE_LINE=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
	# shellcheck disable=SC2034 # read by the scripts that source this file
	CI_SUITE_WORK=$(sed -n 's/^run_tests\.sh: test files kept in //p' "$log" | tail -n 1)
}

# The reports a mode fails on, wherever they are written:
#   AddressSanitizer / UndefinedBehaviorSanitizer reports (runtime error:),
#   assertion failures of a cassert server (TRAP:), and backends that died
#   of SIGILL, SIGABRT, SIGBUS, SIGFPE or SIGSEGV (tests kill with SIGKILL
#   on purpose, never with these).
CI_REPORT_RE='ERROR: (Address|Leak)Sanitizer|SUMMARY: [A-Za-z]*Sanitizer|: runtime error: |^TRAP: |TRAP: [A-Za-z]+\(|terminated by signal (4|6|7|8|11)[^0-9]'

# ci_scan DIR...: print every report line found in the files under DIRs,
# prefixed with the file name; sets CI_REPORTS to the number of files that
# hold at least one.
ci_scan() {
	local f
	CI_REPORTS=0
	while IFS= read -r -d '' f; do
		if grep -qaE "$CI_REPORT_RE" "$f"; then
			CI_REPORTS=$((CI_REPORTS + 1))
			echo "--- report in $f (first 60 lines that match, then the file's head):"
			grep -naE "$CI_REPORT_RE" "$f" | head -n 60
			case $f in
			*/sanitizer/*) head -n 80 "$f" ;;
			esac
		fi
	done < <(find "$@" -type f \( -name '*.log' -o -name 'asan.*' -o -name 'ubsan.*' \
		-o -name 'regress_log_*' -o -name 'postmaster.log' \) -print0 2>/dev/null)
}

# ci_summary NAME: print the mode's closing line, counting the suite's own
# results plus one check for the log scan, and return its status.
ci_summary() {
	local name=$1 p=0 f=0
	if [[ $CI_SUITE_LINE =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
		p=${BASH_REMATCH[1]}
		f=${BASH_REMATCH[2]}
	else
		f=1 # the suite died before its summary
	fi
	if ((CI_REPORTS == 0)); then
		p=$((p + 1))
	else
		f=$((f + 1))
		echo "=== $name: $CI_REPORTS log file(s) with reports (see above)"
	fi
	if ((CI_SUITE_RC != 0 && f == 0)); then f=1; fi
	echo
	echo "$p passed, $f failed"
	((f == 0 && p > 0))
}
