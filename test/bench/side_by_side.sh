#!/usr/bin/env bash
# vecphi against pgvector, side by side in one server, on Fashion-MNIST
# (the training images are the base set, queries come from the test images).
#
#   sudo PG_CONFIG=/path/to/pg_config bash test/bench/side_by_side.sh     # 20,000 rows
#   sudo FULL=1 bash test/bench/side_by_side.sh                         # 60,000 rows
#   sudo BASE=5000 QUERIES=200 ROUNDS=1 SECONDS_PER_RUN=3 bash test/bench/side_by_side.sh
#
# Starts a throwaway cluster as user postgres, loads the same rows into a
# pgvector vector(784) table and a vecphi evector(784) table (encrypted under
# one tenant, with claims set, audit on), and prints one table: each figure
# for pgvector, for vecphi and their ratio, the median over ROUNDS rounds
# interleaved per figure (pgvector, vecphi, pgvector, vecphi, ...).  The
# ratio is oriented so that above 1.0 means vecphi is better:
# vecphi/pgvector for rates and recall, pgvector/vecphi for times and sizes.
#
# pgvector: the server's installation if CREATE EXTENSION vector works;
# otherwise it is built from $REPO/../shared/bench/pgvector-0.8.6.tar.gz in
# a temporary directory and installed with the same PG_CONFIG; without the
# tarball it prints "skipped: no pgvector" and measures vecphi alone.
#
# Figures only, never assertions.  Environment (defaults in brackets):
#   BASE (20000; 60000 with FULL=1), QUERIES (1000), ROUNDS (3),
#   BUILD_ROUNDS (1: rounds of the serial and of the parallel build),
#   SECONDS_PER_RUN (5: each pgbench run), INSERTS (200 single-row inserts
#   per round), COPY_ROWS (1000 rows per COPY), PROFILE=1 (perf record of
#   the vecphi backends in an extra 8-client ef_search 40 run, top 15),
#   PG_CONFIG or PGBIN, SKIP_SETUP=1 (do not run test/setup.sh), KEEP=1
#   (keep the cluster directory), PORT (5443), PGVECTOR_TARBALL (the
#   shared tarball above), QUERY_TYPE (evector_query: the plaintext query
#   vector type drivers' arrays become, never encrypted; evector: the query
#   encrypted under the claimant's key and decrypted by the scan, as an
#   untyped literal is).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck disable=SC2034 # read by benchlib.sh
BENCH_NAME=side_by_side.sh
if [[ ${FULL:-0} == 1 ]]; then BASE=${BASE:-60000}; else BASE=${BASE:-20000}; fi
QUERIES=${QUERIES:-1000}
ROUNDS=${ROUNDS:-3}
# A build takes tens of seconds: by default one round of each build keeps
# the run within ten minutes on two cores.
BUILD_ROUNDS=${BUILD_ROUNDS:-1}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
INSERTS=${INSERTS:-200}
COPY_ROWS=${COPY_ROWS:-1000}
# PGXS reads PROFILE as extra compiler flags: keep it from make.
DO_PROFILE=${PROFILE:-0}
unset PROFILE
PORT=${PORT:-5443}
QUERY_TYPE=${QUERY_TYPE:-evector_query}
EFS=(10 40 200)
PGVECTOR_TARBALL=${PGVECTOR_TARBALL:-$REPO/../shared/bench/pgvector-0.8.6.tar.gz}
# shellcheck source-path=SCRIPTDIR source=benchlib.sh
. "$REPO/test/bench/benchlib.sh"

for v in BASE QUERIES ROUNDS BUILD_ROUNDS SECONDS_PER_RUN INSERTS COPY_ROWS; do
	if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then die "$v must be a positive whole number, not '${!v}'"; fi
done
# Inserted and copied rows are test images after the queries.
EXTRA=$((ROUNDS * (INSERTS + COPY_ROWS)))
((QUERIES + EXTRA <= 10000)) || die "QUERIES + ROUNDS * (INSERTS + COPY_ROWS) must be at most 10000 (the test images)"

START=$(now)
progress() { printf '[%5.0f s] %s\n' "$(since "$START")" "$*"; }

bench_prepare
bench_workdir vecphi-side-by-side
progress "writing $BASE base rows and $QUERIES queries (+ $EXTRA rows to insert) from Fashion-MNIST"
perl "$REPO/test/bench/fashion_mnist.pl" "$BASE" "$((QUERIES + EXTRA))" "$WORK" >/dev/null
mv "$WORK/queries.tsv" "$WORK/test.tsv"
head -n "$QUERIES" "$WORK/test.tsv" >"$WORK/queries.tsv"
# Round r inserts ins_r.tsv one row at a time and copies copy_r.tsv.
tail -n +"$((QUERIES + 1))" "$WORK/test.tsv" | awk -F'\t' -v ins="$INSERTS" -v cp="$COPY_ROWS" -v dir="$WORK" '
	{ r = int((NR - 1) / (ins + cp)) + 1; k = (NR - 1) % (ins + cp)
	  f = dir "/" (k < ins ? "ins_" : "copy_") r ".tsv"
	  print NR + 1000000 "\t" $2 > f }'
bench_start_server "shared_buffers = 1GB
maintenance_work_mem = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min
max_worker_processes = 8
max_parallel_workers = 4"

# pgvector: installed, or built from the shared tarball, or none
# (test/tools/pgvector.sh).
HAVE_PGV=1
PGV_WHY=""
if ! psql_ -c 'CREATE EXTENSION vector' 2>/dev/null; then
	if PGV_WHY=$(PG_CONFIG="$PG_CONFIG" PGVECTOR_TARBALL="$PGVECTOR_TARBALL" bash "$REPO/test/tools/pgvector.sh") &&
		psql_ -c 'CREATE EXTENSION vector'; then
		progress "$PGV_WHY"
	else
		PGV_WHY=${PGV_WHY#no pgvector: }
		HAVE_PGV=0
	fi
fi
if ((HAVE_PGV)); then
	PGV_VERSION=$(psql_ -At -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
	progress "pgvector $PGV_VERSION"
else
	echo "skipped: no pgvector ($PGV_WHY); vecphi alone"
fi
SYSTEMS="ev"
((HAVE_PGV)) && SYSTEMS="pv ev"

TOK=$(token t0)
progress "loading (vecphi encrypts every row)"
psql_ <<EOF
CREATE EXTENSION vecphi;
SELECT vecphi.create_tenant('t0') \\g /dev/null
CREATE TABLE ev (id int PRIMARY KEY, emb evector(784));
CREATE TABLE evq (id int PRIMARY KEY, emb evector(784));
CREATE TABLE fmq (id int PRIMARY KEY, v text);
BEGIN;
SELECT vecphi.set_claims('$TOK') \\g /dev/null
\\copy ev FROM '$WORK/base.tsv'
\\copy evq FROM '$WORK/queries.tsv'
COMMIT;
\\copy fmq FROM '$WORK/queries.tsv'
VACUUM ANALYZE ev;
VACUUM ANALYZE evq;
VACUUM ANALYZE fmq;
EOF
if ((HAVE_PGV)); then
	psql_ <<EOF
CREATE TABLE pv (id int PRIMARY KEY, emb vector(784));
CREATE TABLE pvq (id int PRIMARY KEY, emb vector(784));
\\copy pv FROM '$WORK/base.tsv'
\\copy pvq FROM '$WORK/queries.tsv'
VACUUM ANALYZE pv;
VACUUM ANALYZE pvq;
EOF
fi
progress "rows: $(psql_ -At -c 'SELECT count(*) FROM ev'), queries: $(psql_ -At -c 'SELECT count(*) FROM fmq'), dimensions: 784"

# Exact top 10 and the 10th distance (tie-aware recall), in plaintext when
# pgvector is there: the same rows, so the same answer, only faster; from a
# copy stored in line (STORAGE PLAIN: no TOAST fetch per distance), in two
# sessions at once.
if ((HAVE_PGV)); then
	GT_T=gtb GT_Q=pvq GT_CLAIMS=
	psql_ <<EOF
CREATE TABLE gtb (id int PRIMARY KEY, emb vector(784));
ALTER TABLE gtb ALTER emb SET STORAGE PLAIN;
INSERT INTO gtb SELECT id, emb FROM pv;
VACUUM ANALYZE gtb;
EOF
else
	GT_T=ev GT_Q=evq GT_CLAIMS="SELECT vecphi.set_claims('$TOK') \\g /dev/null"
fi
t=$(now)
psql_ -c "CREATE TABLE gt (qid int PRIMARY KEY, ids int[], kth float8)"
gt_part() { # remainder of the query id modulo 2
	psql_ <<EOF
BEGIN;
$GT_CLAIMS
SET LOCAL enable_indexscan = off;
SET LOCAL max_parallel_workers_per_gather = 0;
INSERT INTO gt
SELECT q.id, array_agg(n.id ORDER BY n.d), max(n.d)
FROM $GT_Q q, LATERAL (SELECT f.id, f.emb <-> q.emb AS d FROM $GT_T f ORDER BY 2 LIMIT 10) n
WHERE q.id % 2 = $1
GROUP BY q.id;
COMMIT;
EOF
}
gt_part 0 &
gt0=$!
gt_part 1
wait "$gt0" || die "ground truth failed"
progress "ground truth by exact scan of $GT_T: $(printf '%.1f' "$(since "$t")") s"

# Per system: its table, index method and options, ef_search setting, the
# type a query vector is cast to, and what a transaction starts with.
declare -A TABLE=([pv]=pv [ev]=ev) AM=([pv]="hnsw (emb vector_l2_ops)" [ev]="ehnsw (emb evector_l2_ops)")
declare -A EFGUC=([pv]=hnsw.ef_search [ev]=vecphi.ef_search) TYPE=([pv]=vector [ev]=$QUERY_TYPE)
declare -A CLAIMS=([pv]="" [ev]="SELECT vecphi.set_claims('$TOK');")
declare -A CLAIMS_Q=([pv]="" [ev]="SELECT vecphi.set_claims('$TOK') \\g /dev/null")
declare -A NAME=([pv]=pgvector [ev]=vecphi)
# Results: R[figure,system] = "v1 v2 ..." (one value per round).
declare -A R
record() { R[$1,$2]="${R[$1,$2]:-} $3"; }

build() { # system, max_parallel_maintenance_workers: prints seconds
	psql_ -c "SET client_min_messages = warning" -c "DROP INDEX IF EXISTS ${1}_idx"
	local t
	t=$(now)
	psql_ -c "SET max_parallel_maintenance_workers = $2" \
		-c "CREATE INDEX ${1}_idx ON ${TABLE[$1]} USING ${AM[$1]} WITH (m = 16, ef_construction = 64)"
	since "$t"
}
# Parallel first, so that the searches run on serially built indexes, as
# in the issue's table.
for workers in 2 0; do
	fig=build$workers
	for ((r = 1; r <= BUILD_ROUNDS; r++)); do
		for s in $SYSTEMS; do
			secs=$(build "$s" "$workers")
			record "$fig" "$s" "$secs"
			progress "round $r: ${NAME[$s]} build, max_parallel_maintenance_workers=$workers: $(printf '%.1f' "$secs") s"
		done
	done
done
for s in $SYSTEMS; do
	record size "$s" "$(psql_ -At -c "SELECT pg_relation_size('${s}_idx')")"
	psql_ -c "VACUUM ANALYZE ${TABLE[$s]}"
done

# Both plans must be index scans.
for s in $SYSTEMS; do
	plan=$(psql_ -At <<EOF
BEGIN;
${CLAIMS[$s]}
SELECT v AS q FROM fmq WHERE id = 0 \\gset
EXPLAIN (COSTS OFF) SELECT id FROM ${TABLE[$s]} ORDER BY emb <-> :'q'::${TYPE[$s]} LIMIT 10;
COMMIT;
EOF
	)
	[[ $plan == *"Index Scan using ${s}_idx"* ]] || die "the ${NAME[$s]} search does not use its index: $plan"
done

# Single client through psql: one session, one transaction, one statement
# per query with the query vector as a literal (as an application sending
# SQL text would); 20 untimed warm-up queries, then the server's clock
# around all queries, so connection set-up is not counted.
for s in $SYSTEMS; do
	awk -F'\t' -v t="${TABLE[$s]}" -v ty="${TYPE[$s]}" \
		'{ printf "SELECT %d, array(SELECT id FROM %s ORDER BY emb <-> '\''%s'\''::%s LIMIT 10);\n", $1, t, $2, ty }' \
		"$WORK/queries.tsv" >"$WORK/$s.body.sql"
	head -n 20 "$WORK/$s.body.sql" | sed 's/;$/ \\g \/dev\/null/' >"$WORK/$s.warm.sql"
done
chown postgres "$WORK"/*.sql
psql_qps() { # system, ef_search: prints QPS, leaves the results in $WORK/res_SYSTEM_EF.tsv
	{
		echo "BEGIN;"
		echo "${CLAIMS_Q[$1]}"
		echo "SET LOCAL ${EFGUC[$1]} = $2;"
		echo "\\i $WORK/$1.warm.sql"
		echo "SELECT extract(epoch FROM clock_timestamp()) \\g '$WORK/t0'"
		echo "\\i $WORK/$1.body.sql"
		echo "SELECT extract(epoch FROM clock_timestamp()) \\g '$WORK/t1'"
		echo "COMMIT;"
	} >"$WORK/run.sql"
	psql_ -At -F $'\t' -f "$WORK/run.sql" >"$WORK/res_$1_$2.tsv"
	awk -v n="$QUERIES" -v a="$(tr -d ' \n' <"$WORK/t0")" -v b="$(tr -d ' \n' <"$WORK/t1")" \
		'BEGIN { printf "%.1f", n / (b - a) }'
}
recall() { # results file: tie-aware recall@10 against gt
	psql_ -At <<EOF
CREATE TEMP TABLE r (qid int, ids int[]);
\\copy r FROM '$1'
BEGIN;
$GT_CLAIMS
SELECT round(avg(hits) / 10, 4) FROM (
	SELECT r.qid, (SELECT count(*) FROM unnest(r.ids) i JOIN $GT_T f ON f.id = i
		JOIN $GT_Q q ON q.id = r.qid WHERE (f.emb <-> q.emb) <= g.kth + 1e-6) AS hits
	FROM r JOIN gt g USING (qid)) s;
COMMIT;
EOF
}
for s in $SYSTEMS; do psql_qps "$s" 40 >/dev/null; done # warm the caches
for ef in "${EFS[@]}"; do
	for ((r = 1; r <= ROUNDS; r++)); do
		for s in $SYSTEMS; do
			qps=$(psql_qps "$s" "$ef")
			record "psql$ef" "$s" "$qps"
			progress "round $r: ${NAME[$s]} psql, ef_search $ef: $qps QPS"
		done
	done
	for s in $SYSTEMS; do
		rec=$(recall "$WORK/res_${s}_$ef.tsv")
		record "recall$ef" "$s" "$rec"
		progress "${NAME[$s]} recall@10 at ef_search $ef: $rec"
	done
done

# pgbench with prepared statements: one transaction is one search as an
# application sends it (vecphi: set_claims first), the query vector's text
# fetched from a plain table and bound as a parameter.
for s in $SYSTEMS; do
	cat >"$WORK/$s.pgbench.sql" <<EOF
\\set qid random(0, $((QUERIES - 1)))
BEGIN;
${CLAIMS[$s]}
SELECT v AS q FROM fmq WHERE id = :qid \\gset
SELECT id FROM ${TABLE[$s]} ORDER BY emb <-> :q::${TYPE[$s]} LIMIT 10;
COMMIT;
EOF
	chown postgres "$WORK/$s.pgbench.sql"
done
pgb() { # system, clients, ef_search, audit on|off: prints tps
	bench_pgbench "$2" "$SECONDS_PER_RUN" "$WORK/$1.pgbench.sql" \
		"-c ${EFGUC[$1]}=$3 -c vecphi.audit=$4" | awk '{ printf "%.1f", $1 }'
}
for s in $SYSTEMS; do pgb "$s" 2 40 on >/dev/null; done # warm-up
for ef in "${EFS[@]}"; do
	for ((r = 1; r <= ROUNDS; r++)); do
		for s in $SYSTEMS; do
			tps=$(pgb "$s" 1 "$ef" on)
			record "pgb1_$ef" "$s" "$tps"
			progress "round $r: ${NAME[$s]} pgbench 1 client, ef_search $ef: $tps tps"
		done
	done
done
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order="on off"; else order="off on"; fi
	for s in $SYSTEMS; do
		if [[ $s == pv ]]; then
			tps=$(pgb pv 8 40 on)
			record pgb8 pv "$tps"
			progress "round $r: pgvector pgbench 8 clients, ef_search 40: $tps tps"
			continue
		fi
		for mode in $order; do
			before=$(psql_ -At -c "SELECT count(*) FROM vecphi.audit_log")
			tps=$(pgb ev 8 40 "$mode")
			after=$(psql_ -At -c "SELECT count(*) FROM vecphi.audit_log")
			if [[ $mode == on ]]; then record pgb8 ev "$tps"; else record pgb8off ev "$tps"; fi
			progress "round $r: vecphi pgbench 8 clients, ef_search 40, audit $mode: $tps tps, $((after - before)) audit records"
		done
	done
done

# Single-row inserts, each its own transaction, and COPY, into the indexed
# tables: round r adds the same new rows to both.
for ((r = 1; r <= ROUNDS; r++)); do
	for s in $SYSTEMS; do
		{
			echo "SELECT extract(epoch FROM clock_timestamp()) \\g '$WORK/t0'"
			awk -F'\t' -v t="${TABLE[$s]}" -v c="${CLAIMS[$s]}" \
				'{ printf "BEGIN;\n%s\nINSERT INTO %s VALUES (%d, '\''%s'\'');\nCOMMIT;\n", c, t, $1, $2 }' \
				"$WORK/ins_$r.tsv"
			echo "SELECT extract(epoch FROM clock_timestamp()) \\g '$WORK/t1'"
		} >"$WORK/ins.sql"
		psql_ -At -o /dev/null -f "$WORK/ins.sql"
		rate=$(awk -v n="$INSERTS" -v a="$(tr -d ' \n' <"$WORK/t0")" -v b="$(tr -d ' \n' <"$WORK/t1")" \
			'BEGIN { printf "%.1f", n / (b - a) }')
		record inserts "$s" "$rate"
		progress "round $r: ${NAME[$s]} single-row inserts: $rate rows/s"
	done
	for s in $SYSTEMS; do
		psql_ -At <<EOF
SELECT extract(epoch FROM clock_timestamp()) \\g '$WORK/t0'
BEGIN;
${CLAIMS_Q[$s]}
\\copy ${TABLE[$s]} FROM '$WORK/copy_$r.tsv'
COMMIT;
SELECT extract(epoch FROM clock_timestamp()) \\g '$WORK/t1'
EOF
		rate=$(awk -v n="$COPY_ROWS" -v a="$(tr -d ' \n' <"$WORK/t0")" -v b="$(tr -d ' \n' <"$WORK/t1")" \
			'BEGIN { printf "%.1f", n / (b - a) }')
		record copy "$s" "$rate"
		progress "round $r: ${NAME[$s]} COPY with the index: $rate rows/s"
	done
done

if [[ $DO_PROFILE == 1 ]]; then
	if ! command -v perf >/dev/null; then
		apt-get install -y -qq linux-perf >/dev/null 2>&1 ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null 2>&1; } || true
	fi
	if ! command -v perf >/dev/null || ! perf record -q -o "$WORK/perf.test" -- true >/dev/null 2>&1; then
		PROFILE_OUT="skipped: perf cannot record here (install linux-perf, check kernel.perf_event_paranoid)"
	else
		# The pgbench run outlasts the recording: perf attaches to its
		# backends once they are connected and detaches before they end.
		progress "profiling vecphi: pgbench 8 clients, ef_search 40, audit on, $SECONDS_PER_RUN s recorded"
		bench_pgbench 8 "$((SECONDS_PER_RUN + 3))" "$WORK/ev.pgbench.sql" \
			"-c vecphi.ef_search=40 -c vecphi.audit=on" >"$WORK/profile.tps" &
		pgbench_pid=$!
		sleep 1
		pids=$(psql_ -At -c "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'pgbench'")
		perf record -q -F 999 -p "$pids" -o "$WORK/perf.data" -- sleep "$SECONDS_PER_RUN" >"$WORK/perf.log" 2>&1 || true
		PROFILE_OUT=$(perf report -q --stdio --no-children -i "$WORK/perf.data" --sort dso,symbol 2>>"$WORK/perf.log" |
			grep -v -e '^$' -e '^#' | sed -E 's/([[:space:]]+-)+[[:space:]]*$//' | head -n 15 || true)
		[[ -n $PROFILE_OUT ]] || PROFILE_OUT="skipped: perf recorded nothing: $(tail -n 3 "$WORK/perf.log")"
		wait "$pgbench_pid" || true
	fi
fi

# The table.  Ratio: above 1.0 means vecphi is better.
# shellcheck disable=SC2086 # one word per round
med() { median ${R[$1,$2]:-}; }
row() { # label, figure, format, ratio kind (rate: ev/pv, time: pv/ev), [vecphi note]
	local ev pv ratio="-" pvs="-"
	ev=$(med "$2" ev)
	if ((HAVE_PGV)) && [[ -n ${R[$2,pv]:-} ]]; then
		pv=$(med "$2" pv)
		# shellcheck disable=SC2059
		pvs=$(printf "$3" "$pv")
		if [[ $4 == rate ]]; then
			ratio=$(awk -v a="$ev" -v b="$pv" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
		else
			ratio=$(awk -v a="$pv" -v b="$ev" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
		fi
	fi
	# shellcheck disable=SC2059
	printf '| %s | %s | %s%s | %s |\n' "$1" "$pvs" "$(printf "$3" "$ev")" "${5:-}" "$ratio"
}
pct() { awk -v off="$(med "$1" ev)" -v on="$(med "$2" ev)" 'BEGIN { printf "%.1f %%", (off - on) / off * 100 }'; }
echo
echo "Fashion-MNIST $BASE x 784, $QUERIES queries, m 16, ef_construction 64; ${PGV_VERSION:+pgvector $PGV_VERSION, }vecphi encrypted (one tenant, claims set), audit on unless said"
echo "median of $ROUNDS interleaved round(s) ($BUILD_ROUNDS for builds); pgbench runs $SECONDS_PER_RUN s each; $(nproc) CPU(s)"
echo "ratio: vecphi/pgvector for rates and recall, pgvector/vecphi for times and sizes (above 1.0 = vecphi better)"
echo
echo "| metric | pgvector | vecphi | ratio |"
echo "|---|---|---|---|"
for ef in "${EFS[@]}"; do row "QPS through psql, ef_search $ef" "psql$ef" '%.1f' rate; done
for ef in "${EFS[@]}"; do row "recall@10, ef_search $ef" "recall$ef" '%.4f' rate; done
for ef in "${EFS[@]}"; do row "pgbench -M prepared, 1 client, ef_search $ef (tps)" "pgb1_$ef" '%.1f' rate; done
row "pgbench -M prepared, 8 clients, ef_search 40, audit on (tps)" pgb8 '%.1f' rate
printf '| pgbench 8 clients, ef_search 40, vecphi audit off (tps) | - | %.1f | audit overhead %s |\n' "$(med pgb8off ev)" "$(pct pgb8off pgb8)"
row "serial index build (s)" build0 '%.1f' time
row "parallel index build, 2 workers (s)" build2 '%.1f' time
printf '| parallel build speed-up (serial / parallel) | %s | %s | - |\n' \
	"$( ((HAVE_PGV)) && awk -v a="$(med build0 pv)" -v b="$(med build2 pv)" 'BEGIN { printf "%.2f", a / b }' || echo -)" \
	"$(awk -v a="$(med build0 ev)" -v b="$(med build2 ev)" 'BEGIN { printf "%.2f", a / b }')"
row "single-row inserts with the index (rows/s)" inserts '%.1f' rate
row "COPY with the index (rows/s)" copy '%.1f' rate
for s in $SYSTEMS; do R[sizemb,$s]=$(awk -v b="$(med size "$s")" 'BEGIN { printf "%.1f", b / 1048576 }'); done
row "index size (MB)" sizemb '%.1f' time
if [[ $DO_PROFILE == 1 ]]; then
	echo
	echo "perf: vecphi backends, pgbench 8 clients, ef_search 40, audit on (top 15, self time)"
	echo "$PROFILE_OUT"
fi
echo
echo "wall time: $(printf '%.0f' "$(since "$START")") s"
