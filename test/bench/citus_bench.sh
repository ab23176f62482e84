#!/usr/bin/env bash
# vecphi on one node against vecphi on Citus (a coordinator and two
# workers on this machine), on Fashion-MNIST: the same rows in a plain
# table of the coordinator and in a distributed table, the same ehnsw index
# (per shard on Citus: the coordinator pushes ORDER BY ... LIMIT k down to
# every shard and merges their answers).
#
#   sudo bash test/bench/citus_bench.sh                    # 20,000 rows
#   sudo BASE=5000 QUERIES=200 ROUNDS=1 bash test/bench/citus_bench.sh
#
# Prints, for each ef_search, the queries per second of one client through
# psql (one statement per query, the query vector as an evector_query
# literal) and the tie-aware recall@10 of both, and the ratio
# distributed/single-node.  Figures only, never assertions.  All three
# servers share the machine's 2 cores, so the distributed figures measure
# the plan's overhead (a round trip per shard, the merge), not a speed-up:
# on separate hosts each worker would have its own cores.
#
# Needs Citus installed in the server (test/setup.sh builds it from
# ../shared/citus); prints "skipped: no Citus" otherwise.  Environment
# (defaults in brackets): BASE (20000), QUERIES (500), ROUNDS (3),
# SHARDS (4: citus.shard_count), PORT (5453: the coordinator; the workers
# take the next two), PG_CONFIG or PGBIN, SKIP_SETUP=1, KEEP=1.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck disable=SC2034 # read by benchlib.sh
BENCH_NAME=citus_bench.sh
BASE=${BASE:-20000}
QUERIES=${QUERIES:-500}
ROUNDS=${ROUNDS:-3}
SHARDS=${SHARDS:-4}
PORT=${PORT:-5453}
EFS=(10 40 200)
# shellcheck source-path=SCRIPTDIR source=benchlib.sh
. "$REPO/test/bench/benchlib.sh"

for v in BASE QUERIES ROUNDS SHARDS; do
	if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then die "$v must be a positive whole number, not '${!v}'"; fi
done
((QUERIES <= 10000)) || die "QUERIES must be at most 10000 (the test images)"

START=$(now)
progress() { printf '[%5.0f s] %s\n' "$(since "$START")" "$*"; }

bench_prepare
if [[ ! -f $("$PG_CONFIG" --pkglibdir)/citus.so ]]; then
	echo "skipped: no Citus in $("$PG_CONFIG" --pkglibdir) (test/setup.sh builds it from ../shared/citus)"
	exit 0
fi
bench_workdir vecphi-citus-bench
COORD_PORT=$PORT
NODES=("coordinator:$PORT" "worker1:$((PORT + 1))" "worker2:$((PORT + 2))")
stop_all() {
	local n
	for n in "${NODES[@]}"; do
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/${n%%:*}" -m immediate -w stop >/dev/null 2>&1 || true
	done
	[[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap stop_all EXIT

progress "writing $BASE base rows and $QUERIES queries from Fashion-MNIST"
perl "$REPO/test/bench/fashion_mnist.pl" "$BASE" "$QUERIES" "$WORK" >/dev/null

# Three servers sharing the KEK store and the JWT secret, as every host of
# a cluster shares the KMS and the claims-verification key (docs/citus.md).
for n in "${NODES[@]}"; do
	DATA=$WORK/${n%%:*} PORT=${n##*:} BENCH_PRELOAD='citus,vecphi' BENCH_LOG=$WORK/${n%%:*}.log \
		bench_start_server "shared_buffers = 512MB
maintenance_work_mem = 512MB
max_wal_size = 4GB
max_prepared_transactions = 20
citus.shard_count = $SHARDS
citus.node_conninfo = 'sslmode=prefer'"
	runuser -u postgres -- "$PGBIN/psql" -h "$WORK" -p "${n##*:}" -d postgres -X -q \
		-v ON_ERROR_STOP=1 -c 'CREATE EXTENSION citus'
done
PORT=$COORD_PORT
psql_ <<EOF
SELECT citus_set_coordinator_host('$WORK', $COORD_PORT) \\g /dev/null
SELECT citus_add_node('$WORK', $((COORD_PORT + 1))) \\g /dev/null
SELECT citus_add_node('$WORK', $((COORD_PORT + 2))) \\g /dev/null
CREATE EXTENSION vecphi;
SELECT vecphi.create_tenant('t0') \\g /dev/null
EOF

TOK=$(token t0)
CLAIMS="SELECT vecphi.set_claims('$TOK') \\g /dev/null"
progress "loading the same rows into a single-node table and a distributed one ($SHARDS shards)"
psql_ <<EOF
CREATE TABLE single (id int PRIMARY KEY, emb evector(784));
CREATE TABLE dist (id int PRIMARY KEY, emb evector(784));
SELECT create_distributed_table('dist', 'id') \\g /dev/null
CREATE TABLE fmq (id int PRIMARY KEY, v text);
BEGIN;
$CLAIMS
\\copy single FROM '$WORK/base.tsv'
\\copy dist FROM '$WORK/base.tsv'
COMMIT;
\\copy fmq FROM '$WORK/queries.tsv'
VACUUM ANALYZE single;
VACUUM ANALYZE dist;
EOF
progress "rows: $(psql_ -At -c 'SELECT count(*) FROM single') single, $(psql_ -At -c 'SELECT count(*) FROM dist') distributed"

t=$(now)
psql_ -c "CREATE INDEX single_idx ON single USING ehnsw (emb evector_l2_ops) WITH (m = 16, ef_construction = 64)"
progress "single-node index build: $(printf '%.1f' "$(since "$t")") s"
t=$(now)
psql_ -c "CREATE INDEX dist_idx ON dist USING ehnsw (emb evector_l2_ops) WITH (m = 16, ef_construction = 64)"
progress "distributed index build ($SHARDS shards on 2 workers): $(printf '%.1f' "$(since "$t")") s"

# Exact top 10 and the 10th distance, by an exact scan of the single-node
# table, in two sessions at once.
t=$(now)
psql_ -c "CREATE TABLE gt (qid int PRIMARY KEY, ids int[], kth float8)"
gt_part() { # remainder of the query id modulo 2
	psql_ <<EOF
BEGIN;
$CLAIMS
SET LOCAL enable_indexscan = off;
SET LOCAL max_parallel_workers_per_gather = 0;
INSERT INTO gt
SELECT q.id, array_agg(n.id ORDER BY n.d), max(n.d)
FROM fmq q, LATERAL (SELECT f.id, f.emb <-> q.v::evector_query AS d FROM single f ORDER BY 2 LIMIT 10) n
WHERE q.id % 2 = $1
GROUP BY q.id;
COMMIT;
EOF
}
gt_part 0 &
gt0=$!
gt_part 1
wait "$gt0" || die "ground truth failed"
progress "ground truth by exact scan: $(printf '%.1f' "$(since "$t")") s"

# The distributed plan must scan the shards' ehnsw indexes.
plan=$(psql_ -At <<EOF
BEGIN;
$CLAIMS
SELECT v AS q FROM fmq WHERE id = 0 \\gset
EXPLAIN (COSTS OFF, VERBOSE OFF) SELECT id FROM dist ORDER BY emb <-> :'q'::evector_query LIMIT 10;
COMMIT;
EOF
)
[[ $plan == *"Index Scan using dist_idx"* ]] || die "the distributed search does not use the shards' index: $plan"

for s in single dist; do
	awk -F'\t' -v t="$s" \
		'{ printf "SELECT %d, array(SELECT id FROM %s ORDER BY emb <-> '\''%s'\''::evector_query LIMIT 10);\n", $1, t, $2 }' \
		"$WORK/queries.tsv" >"$WORK/$s.body.sql"
	head -n 20 "$WORK/$s.body.sql" | sed 's/;$/ \\g \/dev\/null/' >"$WORK/$s.warm.sql"
done
chown postgres "$WORK"/*.sql
qps() { # table, ef_search: prints QPS, leaves the results in $WORK/res_TABLE_EF.tsv
	{
		echo "BEGIN;"
		echo "$CLAIMS"
		echo "SET LOCAL vecphi.ef_search = $2;"
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
$CLAIMS
SELECT round(avg(hits) / 10, 4) FROM (
	SELECT r.qid, (SELECT count(*) FROM unnest(r.ids) i JOIN single f ON f.id = i
		JOIN fmq q ON q.id = r.qid WHERE (f.emb <-> q.v::evector_query) <= g.kth + 1e-6) AS hits
	FROM r JOIN gt g USING (qid)) s;
COMMIT;
EOF
}
declare -A R
for s in single dist; do qps "$s" 40 >/dev/null; done # warm the caches
for ef in "${EFS[@]}"; do
	for ((r = 1; r <= ROUNDS; r++)); do
		for s in single dist; do
			v=$(qps "$s" "$ef")
			R[qps$ef,$s]="${R[qps$ef,$s]:-} $v"
			progress "round $r: $s, ef_search $ef: $v QPS"
		done
	done
	for s in single dist; do
		R[recall$ef,$s]=$(recall "$WORK/res_${s}_$ef.tsv")
		progress "$s recall@10 at ef_search $ef: ${R[recall$ef,$s]}"
	done
done

echo
echo "vecphi single node vs Citus (coordinator + 2 workers, $SHARDS shards, one machine), $BASE rows, $QUERIES queries, median of $ROUNDS"
printf '%-28s %12s %12s %8s\n' figure single citus ratio
for ef in "${EFS[@]}"; do
	# shellcheck disable=SC2086 # word splitting of the rounds is wanted
	a=$(median ${R[qps$ef,single]})
	# shellcheck disable=SC2086
	b=$(median ${R[qps$ef,dist]})
	printf '%-28s %12.1f %12.1f %8.2f\n' "QPS, ef_search $ef" "$a" "$b" "$(div "$b" "$a")"
	printf '%-28s %12.4f %12.4f %8.2f\n' "recall@10, ef_search $ef" "${R[recall$ef,single]}" \
		"${R[recall$ef,dist]}" "$(div "${R[recall$ef,dist]}" "${R[recall$ef,single]}")"
done
echo "ratio: citus/single (above 1.0 = the distributed plan is better)"
