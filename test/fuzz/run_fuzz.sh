#!/bin/bash
# run_fuzz.sh: build vecphi's libFuzzer targets and run each for a bounded
# time.  Run as root (installs clang with apt-get when missing).
#
#   bash test/fuzz/run_fuzz.sh [SECONDS]      (or FUZZ_SECONDS; default 60)
#   FUZZ_TARGETS="envelope jwt" ...           (a subset)
#   PG_CONFIG=...                              (server headers, libpgcommon)
#
# Each target links the parser's own source file (#included, so static
# functions are reachable) with fuzz_stubs.c (palloc in a per-input arena,
# ereport(ERROR) as a longjmp), PostgreSQL's frontend libpgcommon objects
# (base64, JSON parser, StringInfo, encoding checks) and OpenSSL, under
# AddressSanitizer and UndefinedBehaviorSanitizer.  Backend functions a
# parser must not reach stay unresolved (lazy binding): reaching one ends
# the run with an error, counted as a failure.  New inputs found are kept
# in a scratch corpus; test/fuzz/corpus/<target>/ is the seed corpus kept
# in the repository (copy interesting new inputs there by hand).
#
# Prints one line per target and a closing line "N passed, M failed";
# exits non-zero when any target crashed, leaked past its limits or did
# not build.

set -u
FUZZ_DIR=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=$(cd "$FUZZ_DIR/../../src" && pwd)
SECONDS_PER_TARGET=${1:-${FUZZ_SECONDS:-60}}
TARGETS=(${FUZZ_TARGETS:-evector_text envelope jwt claims keyfile})

# clang with libFuzzer's runtime (libclang-rt-dev is only recommended by
# clang on Debian, so it is asked for by name).
fuzzer_works() {
	local d
	d=$(mktemp -d)
	echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long s) { return 0; }' >"$d/t.c"
	clang -fsanitize=fuzzer,address -o "$d/t" "$d/t.c" >/dev/null 2>&1
	local rc=$?
	rm -rf "$d"
	return $rc
}
if ! command -v clang >/dev/null 2>&1 || ! fuzzer_works; then
	echo "=== installing clang and the libFuzzer runtime"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-dev binutils >/dev/null
	fuzzer_works || { echo "clang cannot build libFuzzer targets"; echo "0 passed, ${#TARGETS[@]} failed"; exit 1; }
fi

PG_CONFIG=${PG_CONFIG:-$(command -v pg_config || echo /usr/lib/postgresql/15/bin/pg_config)}
PG_INC=$("$PG_CONFIG" --includedir-server)
PG_LIB=$("$PG_CONFIG" --pkglibdir)
[[ -f $PG_LIB/libpgcommon.a ]] || PG_LIB=$("$PG_CONFIG" --libdir)
[[ -f $PG_LIB/libpgcommon.a ]] || PG_LIB=/usr/lib/postgresql/15/lib

WORK=$(mktemp -d /tmp/vecphi-fuzz.XXXXXX)
echo "=== fuzzing ${TARGETS[*]} for ${SECONDS_PER_TARGET}s each in $WORK"

# The frontend objects of libpgcommon a parser uses (not fe_memutils: palloc
# comes from the stubs).
mkdir -p "$WORK/pgcommon"
(cd "$WORK/pgcommon" && ar x "$PG_LIB/libpgcommon.a" base64.o jsonapi.o stringinfo.o wchar.o) || {
	echo "cannot extract libpgcommon objects from $PG_LIB"; echo "0 passed, ${#TARGETS[@]} failed"; exit 1; }

CFLAGS=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
	-fno-sanitize-recover=undefined -Wno-unused-command-line-argument
	-Wno-ignored-attributes -Wno-unknown-warning-option -Wno-compound-token-split-by-macro
	-I"$SRC_DIR" -I"$SRC_DIR"/common -I"$SRC_DIR"/crypto -I"$SRC_DIR"/keys -I"$SRC_DIR"/claims
	-I"$SRC_DIR"/types -I"$SRC_DIR"/ehnsw -I"$SRC_DIR"/audit -I"$SRC_DIR"/protect -I"$SRC_DIR"/erasure -I"$FUZZ_DIR" -I"$PG_INC" -D_GNU_SOURCE)

passed=0
failed=0
results=()
for t in "${TARGETS[@]}"; do
	bin=$WORK/fuzz_$t
	# First link: collect the backend symbols the parser's file refers to
	# but the stubs do not provide, and make each one abort with its name.
	objs=("$FUZZ_DIR/fuzz_$t.c" "$FUZZ_DIR/fuzz_stubs.c" "$SRC_DIR/crypto/crypto.c" "$WORK"/pgcommon/*.o "$PG_LIB/libpgport.a")
	# claims: the tenant name rule lives in common/tenant.c.
	[[ $t == claims ]] && objs+=("$SRC_DIR/common/tenant.c")
	clang "${CFLAGS[@]}" -o "$bin" "${objs[@]}" -lcrypto >"$WORK/link1_$t.log" 2>&1
	{
		echo '#include <stdio.h>'
		echo '#include <stdlib.h>'
		sed -n "s/.*undefined reference to \`\([A-Za-z_][A-Za-z0-9_]*\)'.*/\1/p" "$WORK/link1_$t.log" |
			sort -u | while read -r sym; do
				echo "void $sym(void); void $sym(void) { fprintf(stderr, \"fuzz: reached backend function $sym\\n\"); abort(); }"
			done
	} >"$WORK/unreached_$t.c"
	if ! clang "${CFLAGS[@]}" -o "$bin" "${objs[@]}" "$WORK/unreached_$t.c" -lcrypto \
		>"$WORK/build_$t.log" 2>&1; then
		cat "$WORK/build_$t.log" | tail -20
		results+=("$t: build FAILED (see $WORK/build_$t.log)")
		failed=$((failed + 1))
		continue
	fi
	mkdir -p "$WORK/corpus_$t" "$WORK/artifacts_$t"
	seeds=()
	[[ -d $FUZZ_DIR/corpus/$t ]] && seeds=("$FUZZ_DIR/corpus/$t")
	# -rss_limit_mb and -malloc_limit_mb: any single allocation near 1 GB is
	# a finding too (the backend would refuse it).
	"$bin" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
		-malloc_limit_mb=1100 -max_len=16384 -print_final_stats=1 \
		-artifact_prefix="$WORK/artifacts_$t/" \
		"$WORK/corpus_$t" "${seeds[@]}" >"$WORK/run_$t.log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/run_$t.log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$WORK/run_$t.log" | tail -1)
	if ((rc == 0)); then
		results+=("$t: ok, ${execs:-?} executions, ${cov:-cov: ?} edges")
		passed=$((passed + 1))
	else
		grep -E "ERROR|SUMMARY|symbol lookup" "$WORK/run_$t.log" | head -5
		results+=("$t: FAILED (exit $rc) after ${execs:-?} executions; log $WORK/run_$t.log, inputs in $WORK/artifacts_$t/")
		failed=$((failed + 1))
	fi
done

for r in "${results[@]}"; do
	echo "$r"
done
echo "$passed passed, $failed failed"
((failed == 0))
