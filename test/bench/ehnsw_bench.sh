#!/usr/bin/env bash
# ehnsw benchmark on Fashion-MNIST (ann-benchmarks' split: the 60,000
# training images are the base set, queries come from the test images).
#
#   sudo bash test/bench/ehnsw_bench.sh            # 60,000 rows, 100 queries
#   sudo BASE=10000 QUERIES=50 bash test/bench/ehnsw_bench.sh
#
# Starts a throwaway cluster as user postgres (like test/demo.sh), loads the
# vectors encrypted, and prints: build time and index size; single-client
# QPS and tie-aware recall@10 at ef_search 10/20/40/100/200 against an exact
# scan; single-row insert rate; DELETE 10 % + VACUUM time; and the
# 10-tenant row-level-security case (index scan vs. exact scan).  Query
# rates are timed by the server's clock inside one session, after 20
# warm-up queries.  Figures
# only, never assertions.  Environment: BASE, QUERIES, PG_CONFIG or PGBIN,
# SKIP_SETUP=1 (do not run test/setup.sh), KEEP=1 (keep the cluster
# directory), PORT (5439).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck disable=SC2034 # read by benchlib.sh
BENCH_NAME=ehnsw_bench.sh
BASE=${BASE:-60000}
QUERIES=${QUERIES:-100}
PORT=${PORT:-5439}
# shellcheck source-path=SCRIPTDIR source=benchlib.sh
. "$REPO/test/bench/benchlib.sh"

bench_prepare
bench_workdir vecphi-bench
perl "$REPO/test/bench/fashion_mnist.pl" "$BASE" "$QUERIES" "$WORK"
bench_start_server "shared_buffers = 2GB
maintenance_work_mem = 2GB
max_wal_size = 8GB
checkpoint_timeout = 30min"

TOK=$(token t0)
psql_ <<EOF
CREATE EXTENSION vecphi;
SELECT vecphi.create_tenant('t' || i) FROM generate_series(0, 9) i \\g /dev/null
CREATE TABLE fm (id int PRIMARY KEY, emb evector(784));
CREATE TABLE fmq (id int PRIMARY KEY, emb evector(784));
BEGIN;
SELECT vecphi.set_claims('$TOK') \\g /dev/null
\\copy fm FROM '$WORK/base.tsv'
\\copy fmq FROM '$WORK/queries.tsv'
COMMIT;
VACUUM ANALYZE fm;
VACUUM ANALYZE fmq;
EOF
echo "rows: $(psql_ -At -c 'SELECT count(*) FROM fm'), queries: $(psql_ -At -c 'SELECT count(*) FROM fmq'), dimensions: 784"

# Exact top-10 (and the 10th distance, for tie-aware recall).
t=$(now)
psql_ <<EOF
CREATE TABLE gt (qid int PRIMARY KEY, ids int[], kth float8);
BEGIN;
SELECT vecphi.set_claims('$TOK') \\g /dev/null
SET LOCAL enable_indexscan = off;
INSERT INTO gt
SELECT q.id, array_agg(n.id ORDER BY n.d), max(n.d)
FROM fmq q, LATERAL (SELECT f.id, f.emb <-> q.emb AS d FROM fm f ORDER BY 2 LIMIT 10) n
GROUP BY q.id;
COMMIT;
EOF
echo "exact scan (ground truth): $(printf '%.1f' "$(div "$QUERIES" "$(since "$t")")") QPS"

t=$(now)
psql_ -c "CREATE INDEX fm_idx ON fm USING ehnsw (emb evector_l2_ops) WITH (m = 16, ef_construction = 64)"
echo "build: $(printf '%.1f' "$(since "$t")") s, index size $(psql_ -At -c "SELECT pg_size_pretty(pg_relation_size('fm_idx'))")"

# One psql session, one transaction with claims, one statement per query.
# The timed part of a query script: 20 untimed warm-up queries first (a new
# backend fills its caches), then the server's clock around the timed
# queries, so connection set-up and warm-up are not counted.  The format
# takes the query number twice.
warm_and_time() { # count, printf format
	local q
	for ((q = 0; q < 20 && q < $1; q++)); do
		# shellcheck disable=SC2059
		printf "$2 \\g /dev/null\n" "$q" "$q"
	done
	echo "SELECT extract(epoch FROM clock_timestamp()) \\g '$WORK/t0'"
	for ((q = 0; q < $1; q++)); do
		# shellcheck disable=SC2059
		printf "$2\n" "$q" "$q"
	done
	echo "SELECT extract(epoch FROM clock_timestamp()) \\g '$WORK/t1'"
}
elapsed_qps() { # queries per second between the two marks
	awk -v n="$QUERIES" -v a="$(tr -d ' \n' <"$WORK/t0")" -v b="$(tr -d ' \n' <"$WORK/t1")" \
		'BEGIN { printf "%.6f", n / (b - a) }'
}
run_queries() { # table, ef_search, results table
	local table=$1 ef=$2 out=$3
	{
		echo "BEGIN;"
		echo "SELECT vecphi.set_claims('$4') \\g /dev/null"
		echo "SET LOCAL vecphi.ef_search = $ef;"
		echo "SET LOCAL enable_seqscan = ${5:-on};"
		echo "SET LOCAL enable_indexscan = ${6:-on};"
		warm_and_time "$QUERIES" "SELECT %d, array(SELECT id FROM $table ORDER BY emb <-> (SELECT emb FROM fmq WHERE id = %d) LIMIT 10);"
		echo "COMMIT;"
	} >"$WORK/queries.sql"
	psql_ -At -F $'\t' -f "$WORK/queries.sql" >"$WORK/$out.tsv"
	elapsed_qps
}
recall() { # results table name; tie-aware recall@10 against gt
	psql_ -At <<EOF
CREATE TEMP TABLE r (qid int, ids int[]);
\\copy r FROM '$WORK/$1.tsv'
BEGIN;
SELECT vecphi.set_claims('$TOK') \\g /dev/null
SELECT round(avg(hits) / 10, 4) FROM (
	SELECT r.qid, (SELECT count(*) FROM unnest(r.ids) i JOIN fm f ON f.id = i
		JOIN fmq q ON q.id = r.qid WHERE (f.emb <-> q.emb) <= g.kth + 1e-6) AS hits
	FROM r JOIN gt g USING (qid)) s;
COMMIT;
EOF
}

run_queries fm 40 warmup "$TOK" >/dev/null
echo "ef_search  QPS     recall@10"
for ef in 10 20 40 100 200; do
	qps=$(run_queries fm "$ef" "ef$ef" "$TOK")
	printf '%-10s %-7.1f %s\n' "$ef" "$qps" "$(recall "ef$ef")"
done

# Single-row inserts, each its own transaction (copies of existing
# ciphertext, so no claims are needed; the index decrypts to place them).
{
	for ((i = 0; i < 1000; i++)); do
		echo "INSERT INTO fm SELECT id + 1000000, emb FROM fm WHERE id = $(((i * 37) % BASE));"
	done
} >"$WORK/inserts.sql"
t=$(now)
psql_ -f "$WORK/inserts.sql" >/dev/null
echo "single-row inserts: $(printf '%.0f' "$(div 1000 "$(since "$t")")") rows/s"

t=$(now)
psql_ -c "DELETE FROM fm WHERE id % 10 = 7" -c "VACUUM fm"
echo "DELETE 10 % + VACUUM: $(printf '%.1f' "$(since "$t")") s"
psql_ -At -c "SELECT vecphi.index_check('fm_idx')" >/dev/null && echo "index_check after vacuum: ok"

# Ten tenants in one table behind row-level security.
psql_ <<EOF
CREATE TABLE fm10 (id int PRIMARY KEY, tenant text NOT NULL, emb evector(784));
ALTER TABLE fm10 ENABLE ROW LEVEL SECURITY;
ALTER TABLE fm10 FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON fm10 USING (tenant = vecphi.tenant());
CREATE TABLE fmq3 (id int PRIMARY KEY, emb evector(784));
CREATE ROLE app NOLOGIN;
GRANT SELECT, INSERT ON fm10, fmq3 TO app;
EOF
for i in $(seq 0 9); do
	awk -F'\t' -v t="$i" '$1 % 10 == t { print $1 "\tt" t "\t" $2 }' "$WORK/base.tsv" >"$WORK/t$i.tsv"
	chown postgres "$WORK/t$i.tsv"
	psql_ <<EOF
BEGIN;
SELECT vecphi.set_claims('$(token "t$i")') \\g /dev/null
\\copy fm10 FROM '$WORK/t$i.tsv'
COMMIT;
EOF
done
t=$(now)
psql_ -c "CREATE INDEX fm10_idx ON fm10 USING ehnsw (emb)" -c "ANALYZE fm10"
echo "10 tenants: build $(printf '%.1f' "$(since "$t")") s"
TOK3=$(token t3)
psql_ <<EOF
BEGIN;
SELECT vecphi.set_claims('$TOK3') \\g /dev/null
\\copy fmq3 FROM '$WORK/queries.tsv'
COMMIT;
CREATE TABLE gt10 (qid int PRIMARY KEY, ids int[], kth float8);
BEGIN;
SELECT vecphi.set_claims('$TOK3') \\g /dev/null
SET LOCAL ROLE app;
SET LOCAL enable_indexscan = off;
CREATE TEMP TABLE gt10_tmp AS
SELECT q.id AS qid, array_agg(n.id ORDER BY n.d) AS ids, max(n.d) AS kth
FROM fmq3 q, LATERAL (SELECT f.id, f.emb <-> (SELECT emb FROM fmq3 WHERE id = q.id) AS d FROM fm10 f ORDER BY 2 LIMIT 10) n
GROUP BY q.id;
RESET ROLE;
INSERT INTO gt10 SELECT * FROM gt10_tmp;
COMMIT;
EOF
rls_run() { # label, enable_indexscan
	{
		echo "BEGIN;"
		echo "SELECT vecphi.set_claims('$TOK3') \\g /dev/null"
		echo "SET LOCAL ROLE app;"
		echo "SET LOCAL enable_indexscan = $2;"
		warm_and_time "$QUERIES" "SELECT %d, array(SELECT id FROM fm10 ORDER BY emb <-> (SELECT emb FROM fmq3 WHERE id = %d) LIMIT 10);"
		echo "COMMIT;"
	} >"$WORK/rls.sql"
	psql_ -At -F $'\t' -f "$WORK/rls.sql" >"$WORK/rls_$1.tsv"
	local qps
	qps=$(elapsed_qps)
	local rec
	rec=$(psql_ -At <<EOF
CREATE TEMP TABLE r (qid int, ids int[]);
\\copy r FROM '$WORK/rls_$1.tsv'
SELECT round(avg((SELECT count(*) FROM unnest(r.ids) i WHERE i = ANY (g.ids))::numeric) / 10, 4)
FROM r JOIN gt10 g USING (qid);
EOF
)
	rows=$(awk -F'\t' '{ n += split(substr($2, 2, length($2) - 2), a, ",") } END { printf "%.1f", n / NR }' "$WORK/rls_$1.tsv")
	printf '10 tenants under RLS, %-11s %7.1f QPS, recall@10 %s, rows per query %s\n' "$1:" "$qps" "$rec" "$rows"
}
rls_run index on
rls_run exact off
