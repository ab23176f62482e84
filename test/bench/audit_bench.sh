#!/usr/bin/env bash
# Audit overhead on ehnsw searches: Fashion-MNIST (the training images as
# the base set, query vectors from the test images), an ehnsw index, and
# pgbench running searches with vecphi.audit on and off.
#
#   sudo bash test/bench/audit_bench.sh                 # 20,000 rows, 15 s per run, 3 rounds
#   sudo BASE=5000 SECONDS_PER_RUN=5 ROUNDS=1 bash test/bench/audit_bench.sh
#
# Starts a throwaway cluster as user postgres (like ehnsw_bench.sh), loads
# the vectors encrypted under one tenant and builds the index.  One pgbench
# transaction is one search as an application sends it: BEGIN; set_claims
# (token); fetch the query vector's text (an unaudited plain table, \gset);
# SELECT id FROM fm ORDER BY emb <-> $1::evector LIMIT 10 with the vector
# as a bind parameter (-M prepared); COMMIT.  For 1 and 8 clients it runs
# audit off (PGOPTIONS='-c vecphi.audit=off') and on (the defaults:
# synchronous, so every search waits for its record's commit), alternating
# the order every round, and prints searches per second (the mean over the
# rounds, and the range), pgbench's mean latency, and the overhead of the
# audit.  It also counts the audit records each run wrote (one per search
# when on, none when off).  Figures only, never assertions.
#
# Environment: BASE (20000), QUERIES (200), SECONDS_PER_RUN (15), ROUNDS
# (3), CLIENTS ("1 8"), PG_CONFIG or PGBIN, SKIP_SETUP=1 (do not run
# test/setup.sh), KEEP=1 (keep the cluster directory), PORT (5441).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck disable=SC2034 # read by benchlib.sh
BENCH_NAME=audit_bench.sh
BASE=${BASE:-20000}
QUERIES=${QUERIES:-200}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-1 8}
PORT=${PORT:-5441}
# shellcheck source-path=SCRIPTDIR source=benchlib.sh
. "$REPO/test/bench/benchlib.sh"

bench_prepare
bench_workdir vecphi-audit-bench
perl "$REPO/test/bench/fashion_mnist.pl" "$BASE" "$QUERIES" "$WORK"
bench_start_server "shared_buffers = 1GB
maintenance_work_mem = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min"

TOK=$(token t0)
psql_ <<EOF
CREATE EXTENSION vecphi;
SELECT vecphi.create_tenant('t0') \\g /dev/null
CREATE TABLE fm (id int PRIMARY KEY, emb evector(784));
CREATE TABLE fmq (id int PRIMARY KEY, v text);
BEGIN;
SELECT vecphi.set_claims('$TOK') \\g /dev/null
\\copy fm FROM '$WORK/base.tsv'
COMMIT;
\\copy fmq FROM '$WORK/queries.tsv'
VACUUM ANALYZE fm;
VACUUM ANALYZE fmq;
EOF
echo "rows: $(psql_ -At -c 'SELECT count(*) FROM fm'), query vectors: $(psql_ -At -c 'SELECT count(*) FROM fmq'), dimensions: 784"
t=$(now)
psql_ -c "CREATE INDEX fm_idx ON fm USING ehnsw (emb evector_l2_ops) WITH (m = 16, ef_construction = 64)"
echo "index build: $(printf '%.1f' "$(since "$t")") s, size $(psql_ -At -c "SELECT pg_size_pretty(pg_relation_size('fm_idx'))")"

cat >"$WORK/search.sql" <<EOF
\\set qid random(0, $((QUERIES - 1)))
BEGIN;
SELECT vecphi.set_claims('$TOK');
SELECT v AS q FROM fmq WHERE id = :qid \\gset
SELECT id FROM fm ORDER BY emb <-> :q::evector LIMIT 10;
COMMIT;
EOF
chown postgres "$WORK/search.sql"

# The plan is an ehnsw index scan.
psql_ -At <<EOF | grep -q 'Index Scan using fm_idx' || die "the search does not use the ehnsw index"
BEGIN;
SELECT vecphi.set_claims('$TOK') \\g /dev/null
PREPARE s(evector) AS SELECT id FROM fm ORDER BY emb <-> \$1 LIMIT 10;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT v AS q FROM fmq WHERE id = 0 \\gset
EXPLAIN (COSTS OFF) EXECUTE s(:'q');
COMMIT;
EOF

records() { psql_ -At -c "SELECT count(*) FROM vecphi.audit_log WHERE action = 'index_scan'"; }

# pgbench for a duration: prints "tps latency_ms transactions".
bench() { bench_pgbench "$1" "$3" "$WORK/search.sql" "-c vecphi.audit=$2"; }

echo "warm-up: $(bench 2 off 5 | awk '{ printf "%.1f searches/s", $1 }')"

declare -A tps_sum tps_min tps_max lat_sum tx_sum rec_sum
for c in $CLIENTS; do
	for mode in off on; do
		tps_sum[$c$mode]=0 lat_sum[$c$mode]=0 tx_sum[$c$mode]=0 rec_sum[$c$mode]=0
		tps_min[$c$mode]=1e9 tps_max[$c$mode]=0
	done
	for ((r = 1; r <= ROUNDS; r++)); do
		if ((r % 2)); then order="off on"; else order="on off"; fi
		for mode in $order; do
			before=$(records)
			read -r tps lat tx < <(bench "$c" "$mode" "$SECONDS_PER_RUN")
			after=$(records)
			printf 'round %d, %d client(s), audit %-3s: %8.1f searches/s, %6.2f ms, %d searches, %d audit records\n' \
				"$r" "$c" "$mode" "$tps" "$lat" "$tx" "$((after - before))"
			tps_sum[$c$mode]=$(awk -v a="${tps_sum[$c$mode]}" -v b="$tps" 'BEGIN { print a + b }')
			lat_sum[$c$mode]=$(awk -v a="${lat_sum[$c$mode]}" -v b="$lat" 'BEGIN { print a + b }')
			tps_min[$c$mode]=$(awk -v a="${tps_min[$c$mode]}" -v b="$tps" 'BEGIN { print (b < a ? b : a) }')
			tps_max[$c$mode]=$(awk -v a="${tps_max[$c$mode]}" -v b="$tps" 'BEGIN { print (b > a ? b : a) }')
			tx_sum[$c$mode]=$((tx_sum[$c$mode] + tx))
			rec_sum[$c$mode]=$((rec_sum[$c$mode] + after - before))
		done
	done
done

verify=$(psql_ -At -c "SELECT ok || ' (' || rows_checked || ' rows)' FROM vecphi.verify_audit()")
echo
echo "Fashion-MNIST $BASE rows, ehnsw m=16 ef_construction=64 ef_search=40, LIMIT 10;"
echo "$ROUNDS round(s) of $SECONDS_PER_RUN s per configuration, mean (min-max) searches/s"
printf '%-8s %-6s %-26s %-12s %-12s %s\n' clients audit "searches/s" "latency ms" searches "audit records"
for c in $CLIENTS; do
	for mode in off on; do
		printf '%-8s %-6s %-26s %-12s %-12s %s\n' "$c" "$mode" \
			"$(awk -v s="${tps_sum[$c$mode]}" -v n="$ROUNDS" -v lo="${tps_min[$c$mode]}" -v hi="${tps_max[$c$mode]}" \
				'BEGIN { printf "%.1f (%.1f-%.1f)", s / n, lo, hi }')" \
			"$(awk -v s="${lat_sum[$c$mode]}" -v n="$ROUNDS" 'BEGIN { printf "%.2f", s / n }')" \
			"${tx_sum[$c$mode]}" "${rec_sum[$c$mode]}"
	done
done
for c in $CLIENTS; do
	awk -v c="$c" -v off="${tps_sum[${c}off]}" -v on="${tps_sum[${c}on]}" \
		'BEGIN { printf "audit overhead at %d client(s): %.1f %% fewer searches/s\n", c, (off - on) / off * 100 }'
done
echo "(target: at most 10 % at 8 clients)"
echo "verify_audit(): $verify"
