#!/usr/bin/env bash
# vecphi: VACUUM time with scrubbing (vecphi.scrub_on_vacuum = on, the
# default) against without it, on the same data.
#
# Run as root: sudo bash test/bench/vacuum_scrub_bench.sh
# (PG_CONFIG may point at another PostgreSQL 15 installation, as for
# test/run_tests.sh.)
#
# It builds and installs the extension (test/setup.sh), starts a throwaway
# cluster as the 'postgres' OS user in a temporary directory (removed at
# the end, whatever happens), and loads two identical tables of notes:
# an etext body and an evector embedding (out of line, in TOAST), under
# vecphi.protect() and vecphi.track_erasure().  Each round deletes the same
# rows of both tables, checkpoints, VACUUMs one table with scrubbing off
# and the other with it on (alternating which goes first), and puts the
# rows back.  Which rows (VECPHI_BENCH_DELETE):
#   tenth    a scattered tenth of the rows: a few on nearly every page, the
#            costliest case per page, since nearly every page is zeroed and
#            WAL-logged (the default)
#   patient  one patient's notes (one in 997): VACUUM has few pages to
#            visit, the scrub still reads every page  Times are psql's client-side \timing of the
# VACUUM statement.  Figures only: nothing fails because something is slow.
#
# Settings (environment):
#   VECPHI_BENCH_ROWS     rows per table (10000)
#   VECPHI_BENCH_DIM      dimensions (784)
#   VECPHI_BENCH_ROUNDS   rounds (5)
#   VECPHI_BENCH_INDEX    1: give both tables an ehnsw index too (0)
#   VECPHI_BENCH_DELETE   tenth or patient (tenth)
#   VECPHI_BENCH_PORT     socket port number (5497)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
ROWS=${VECPHI_BENCH_ROWS:-10000}
DIM=${VECPHI_BENCH_DIM:-784}
ROUNDS=${VECPHI_BENCH_ROUNDS:-5}
INDEX=${VECPHI_BENCH_INDEX:-0}
PORT=${VECPHI_BENCH_PORT:-5497}
DELETE=${VECPHI_BENCH_DELETE:-tenth}
SECRET='vecphi-bench-secret-0123456789abcdef0123'

die() { echo "vacuum_scrub_bench.sh: $*" >&2; exit 1; }
for v in ROWS DIM ROUNDS INDEX PORT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "VECPHI_BENCH_$v must be a whole number, not '${!v}'"
done
((ROWS >= 100 && DIM >= 1 && ROUNDS >= 1)) || die "need at least 100 rows, 1 dimension and 1 round"
case $DELETE in
tenth) WHERE='id %% 10 = %d' ;;
patient) WHERE="patient = 'patient_%d'" ;;
*) die "VECPHI_BENCH_DELETE must be tenth or patient, not '$DELETE'" ;;
esac
[[ $EUID -eq 0 ]] || die "must run as root (it builds, installs and switches to the postgres user): sudo bash $0"

echo "vacuum_scrub_bench.sh: building and installing vecphi (test/setup.sh)"
SETUP_LOG=$(mktemp /tmp/vecphi-bench-setup.XXXXXX)
if ! bash "$REPO/test/setup.sh" >"$SETUP_LOG" 2>&1; then
	cat "$SETUP_LOG" >&2
	rm -f "$SETUP_LOG"
	die "test/setup.sh failed"
fi
rm -f "$SETUP_LOG"
PGBIN=$("$PG_CONFIG" --bindir)

DIR=$(mktemp -d /tmp/vecphi-vbench.XXXXXX)
as_postgres() {
	(cd "$DIR" && runuser -u postgres -- env -i HOME="$DIR" PATH="$PGBIN:/usr/bin:/bin" \
		LANG=C.UTF-8 PGHOST="$DIR" PGPORT="$PORT" PGUSER=postgres PGDATABASE=postgres "$@")
}
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [[ -f $DIR/data/postmaster.pid ]]; then
		as_postgres pg_ctl -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$DIR"
}
trap cleanup EXIT

install -d -m 0700 "$DIR/keys"
printf '%s' "$SECRET" >"$DIR/secret"
chmod 0600 "$DIR/secret"
chown -R postgres:postgres "$DIR"
as_postgres initdb -D "$DIR/data" -U postgres -A trust -E UTF8 --no-locale \
	--no-instructions >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
cat >>"$DIR/data/postgresql.conf" <<EOF
shared_preload_libraries = 'vecphi'
vecphi.key_directory = '$DIR/keys'
vecphi.jwt_secret_file = '$DIR/secret'
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DIR'
autovacuum = off
shared_buffers = 256MB
max_wal_size = 4GB
EOF
as_postgres pg_ctl -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null || die "the server did not start"

psql_q() { as_postgres psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# An HS256 token for the bench tenant, signed in SQL (pgcrypto's hmac).
psql_q -c 'CREATE EXTENSION vecphi; CREATE EXTENSION pgcrypto;' \
	-c "SELECT vecphi.create_tenant('erase_bench')" >/dev/null
TOKEN=$(psql_q -At <<EOF
WITH p AS (SELECT
	rtrim(translate(encode(convert_to('{"alg":"HS256","typ":"JWT"}', 'UTF8'), 'base64'), E'+/\n', '-_'), '=') || '.' ||
	rtrim(translate(encode(convert_to(jsonb_build_object('tenant', 'erase_bench', 'role', 'clinician',
		'sub', 'bench', 'exp', extract(epoch FROM now())::bigint + 86400)::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '=') AS s)
SELECT s || '.' || rtrim(translate(encode(hmac(convert_to(s, 'UTF8'), convert_to('$SECRET', 'UTF8'), 'sha256'),
	'base64'), E'+/\n', '-_'), '=') FROM p;
EOF
)

echo "vacuum_scrub_bench.sh: deleting: $DELETE; loading $ROWS rows of $DIM dimensions into two tables"
INDEX_SQL=
((INDEX)) && INDEX_SQL="CREATE INDEX ON t_off USING ehnsw (emb); CREATE INDEX ON t_on USING ehnsw (emb);"
psql_q <<EOF >/dev/null
CREATE TABLE source (id int PRIMARY KEY, tenant text, patient text, body etext, emb evector($DIM));
BEGIN;
SELECT vecphi.set_claims('$TOKEN');
INSERT INTO source
	SELECT g, 'erase_bench', 'patient_' || (g % 997),
		vecphi.encrypt('note ' || g || ': ' || repeat(md5(g::text), 4)),
		(SELECT array_agg(random())::real[] FROM generate_series(1, $DIM) WHERE g > 0)
	FROM generate_series(1, $ROWS) g;
COMMIT;
CREATE TABLE t_off (LIKE source INCLUDING ALL) WITH (autovacuum_enabled = off);
CREATE TABLE t_on (LIKE source INCLUDING ALL) WITH (autovacuum_enabled = off);
INSERT INTO t_off SELECT * FROM source;
INSERT INTO t_on SELECT * FROM source;
SELECT vecphi.protect('t_off', 'tenant'), vecphi.protect('t_on', 'tenant');
SELECT vecphi.track_erasure('t_off', 'patient'), vecphi.track_erasure('t_on', 'patient');
$INDEX_SQL
VACUUM t_off; VACUUM t_on; VACUUM source;
CHECKPOINT;
EOF
psql_q -At -c "SELECT 'vacuum_scrub_bench.sh: each table ' || pg_size_pretty(pg_total_relation_size('t_on'))
	|| ' (heap ' || pg_size_pretty(pg_relation_size('t_on')) || ', TOAST '
	|| pg_size_pretty(pg_relation_size((SELECT reltoastrelid FROM pg_class WHERE oid = 't_on'::regclass))) || ')'"

# Time one VACUUM, in milliseconds, with scrubbing on or off.
vacuum_ms() {
	local table=$1 scrub=$2
	psql_q -c "SET vecphi.scrub_on_vacuum = $scrub" -c '\timing on' -c "VACUUM $table" |
		sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
}

printf '%-6s %12s %12s %8s\n' round 'off (ms)' 'on (ms)' 'on/off'
ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
	# shellcheck disable=SC2059 # the format is ours
	cond=$(printf "$WHERE" $((r % 10)))
	psql_q -c "DELETE FROM t_off WHERE $cond; DELETE FROM t_on WHERE $cond;" -c CHECKPOINT
	if ((r % 2)); then
		off=$(vacuum_ms t_off off)
		on=$(vacuum_ms t_on on)
	else
		on=$(vacuum_ms t_on on)
		off=$(vacuum_ms t_off off)
	fi
	ratio=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.2f", a / b }')
	ratios+=("$ratio")
	printf '%-6s %12s %12s %8s\n' "$r" "$off" "$on" "$ratio"
	psql_q -c "INSERT INTO t_off SELECT * FROM source WHERE $cond;
		INSERT INTO t_on SELECT * FROM source WHERE $cond;
		DELETE FROM vecphi.pending_erasure;" -c CHECKPOINT
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
echo "vacuum_scrub_bench.sh: median VACUUM time with scrubbing / without: ${median}x (target <= 1.2x)"
