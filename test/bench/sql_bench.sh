#!/usr/bin/env bash
# vecphi: end-to-end benchmark through SQL.
#
# Run as root: sudo bash test/bench/sql_bench.sh
#
# Without PGHOST it works like test/demo.sh: builds and installs the
# extension (test/setup.sh), starts a throwaway cluster with vecphi
# preloaded as the 'postgres' OS user in a temporary directory, and removes
# it again, whatever happens.  With PGHOST (and PGPORT, PGUSER, PGDATABASE
# as libpq reads them) it uses that server instead; see README.md for what
# that server needs.
#
# It loads random vectors under a tenant's claims and prints insert, decrypt
# and exact-search rates next to the same work on a plaintext real[] copy.
# Figures only: nothing here fails because something is slow.
#
# Settings (environment):
#   VECPHI_BENCH_ROWS         rows to load (20000)
#   VECPHI_BENCH_DIM          dimensions (784)
#   VECPHI_BENCH_QUERIES      exact searches to time (20)
#   VECPHI_BENCH_SQL_QUERIES  searches with the plaintext SQL distance (3; 0 skips)
#   VECPHI_BENCH_TENANT       tenant to load under, created if missing (vecphi_bench)
#   VECPHI_BENCH_SECRET_FILE  with PGHOST: the server's vecphi.jwt_secret_file
#   VECPHI_BENCH_SECRET       with PGHOST: or the secret itself
#   VECPHI_BENCH_PORT         throwaway cluster: socket port number (5498)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin

ROWS=${VECPHI_BENCH_ROWS:-20000}
DIM=${VECPHI_BENCH_DIM:-784}
QUERIES=${VECPHI_BENCH_QUERIES:-20}
SQL_QUERIES=${VECPHI_BENCH_SQL_QUERIES:-3}
TENANT=${VECPHI_BENCH_TENANT:-vecphi_bench}

die() { echo "sql_bench.sh: $*" >&2; exit 1; }

TOKEN=

for v in ROWS DIM QUERIES SQL_QUERIES; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "VECPHI_BENCH_$v must be a whole number, not '${!v}'"
done
((ROWS >= 10 && DIM >= 1 && QUERIES >= 1)) ||
	die "need at least 10 rows, 1 dimension and 1 query"
((SQL_QUERIES <= QUERIES)) || SQL_QUERIES=$QUERIES

# Everything the script creates lives in this schema, dropped at the end.
# The comment marks it as ours, so a schema of that name that someone else
# made is never dropped.
SCHEMA_MARK='scratch schema of test/bench/sql_bench.sh; dropped when it ends'

if [[ -n ${PGHOST:-} ]]; then
	MODE="server $PGHOST, port ${PGPORT:-5432}"
	if [[ -n ${VECPHI_BENCH_SECRET_FILE:-} ]]; then
		SECRET=$(<"$VECPHI_BENCH_SECRET_FILE")
	else
		SECRET=${VECPHI_BENCH_SECRET:-}
	fi
	# The server trims surrounding white space from its secret file.
	SECRET=$(printf '%s' "$SECRET" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
	[[ -n $SECRET ]] || die "with PGHOST set, give the server's JWT secret" \
		"in VECPHI_BENCH_SECRET_FILE or VECPHI_BENCH_SECRET"
	DIR=
else
	[[ $EUID -eq 0 ]] || die "must run as root (it builds, installs and switches" \
		"to the postgres user): sudo bash $0"

	# Build and install the working tree, quietly unless it fails.
	echo "sql_bench.sh: building and installing vecphi (test/setup.sh)"
	SETUP_LOG=$(mktemp /tmp/vecphi-bench-setup.XXXXXX)
	if ! bash "$REPO/test/setup.sh" >"$SETUP_LOG" 2>&1; then
		cat "$SETUP_LOG" >&2
		rm -f "$SETUP_LOG"
		die "test/setup.sh failed"
	fi
	rm -f "$SETUP_LOG"

	# /tmp rather than $TMPDIR: 'postgres' must be able to enter it, and
	# the socket path must stay short.
	DIR=$(mktemp -d /tmp/vecphi-bench.XXXXXX)
	MODE="throwaway cluster in $DIR"
	# The server listens only on a Unix socket in $DIR, so the port number
	# only names the socket file and cannot collide with another server.
	PORT=${VECPHI_BENCH_PORT:-5498}
	SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
	export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
fi

as_postgres() {
	(cd "$DIR" && runuser -u postgres -- env -i \
		PATH="$PGBIN:/usr/bin:/bin" LANG=C.UTF-8 HOME="$DIR" "$@")
}

# psql without psqlrc, unaligned and tuples only, so results can be read
# by the shell, and without notices; stops at the first error.
sql() {
	PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
		"$PGBIN/psql" -X -q -A -t -F ' ' -v ON_ERROR_STOP=1 \
		-v tok="$TOKEN" -v tenant="$TENANT" -v schema_mark="$SCHEMA_MARK" \
		-v rows="$ROWS" -v dim="$DIM" -v queries="$QUERIES" \
		-v sql_queries="$SQL_QUERIES" "$@"
}

SCHEMA_CREATED=0
cleanup() {
	local rc=$?
	if ((SCHEMA_CREATED)); then
		sql -c 'DROP SCHEMA vecphi_bench CASCADE' >/dev/null 2>&1 || true
	fi
	if [[ -n $DIR ]]; then
		if [[ -f $DIR/data/postmaster.pid ]]; then
			as_postgres pg_ctl -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
		fi
		if ((rc != 0)) && [[ -f $DIR/server.log ]]; then
			echo "sql_bench.sh: failed; tail of the server log:" >&2
			tail -n 40 "$DIR/server.log" >&2
		fi
		rm -rf "$DIR"
	fi
}
trap cleanup EXIT

if [[ -n $DIR ]]; then
	install -d -m 0700 "$DIR/keys"
	(umask 077 && printf '%s' "$SECRET" >"$DIR/jwt_secret")
	chown -R postgres:postgres "$DIR"

	echo "sql_bench.sh: creating a throwaway cluster in $DIR/data"
	as_postgres initdb -D "$DIR/data" -U postgres -A trust -E UTF8 --no-locale \
		--no-instructions >"$DIR/initdb.log" 2>&1 ||
		{ cat "$DIR/initdb.log" >&2; die "initdb failed"; }

	# Room for all the tables in shared buffers, and no checkpoint in the
	# middle of a measurement.
	cat >>"$DIR/data/postgresql.conf" <<EOF

# vecphi sql_bench
listen_addresses = ''
unix_socket_directories = '$DIR'
port = $PORT
shared_preload_libraries = 'vecphi'
vecphi.key_directory = '$DIR/keys'
vecphi.jwt_secret_file = '$DIR/jwt_secret'
shared_buffers = 512MB
max_wal_size = 8GB
checkpoint_timeout = 1h
EOF
	as_postgres pg_ctl -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null ||
		die "the server did not start"
fi

# Tokens are minted here, as an identity provider would: HS256 over the
# claims, keyed with the server's secret.
TOKEN=$(perl -I"$REPO/test/lib" -MVecphiJWT -e \
	'print VecphiJWT::token(secret => shift, tenant => shift,
		role => "benchmark", sub => "sql_bench")' "$SECRET" "$TENANT")

echo "sql_bench.sh: loading $ROWS random vectors of $DIM dimensions ($MODE)"

# Setup: extension, tenant, tables, test data, timing helpers.  The
# plaintext source table is filled first, so that the timed inserts below
# measure storing (and encrypting) vectors, not generating random numbers.
sql >/dev/null <<'SQL'
CREATE EXTENSION IF NOT EXISTS vecphi;
SELECT vecphi.create_tenant(:'tenant')
	WHERE NOT EXISTS (SELECT FROM vecphi.tenants WHERE tenant = :'tenant');

SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'vecphi_bench') AS schema_exists,
	coalesce(obj_description((SELECT oid FROM pg_namespace
		WHERE nspname = 'vecphi_bench'), 'pg_namespace') = :'schema_mark', false) AS schema_ours
\gset
\if :schema_exists
	\if :schema_ours
		DROP SCHEMA vecphi_bench CASCADE;
	\else
		DO $$ BEGIN
			RAISE EXCEPTION 'schema vecphi_bench exists and was not made by sql_bench.sh; not touching it';
		END $$;
	\endif
\endif
CREATE SCHEMA vecphi_bench;
COMMENT ON SCHEMA vecphi_bench IS :'schema_mark';
SQL
SCHEMA_CREATED=1

sql >/dev/null <<'SQL'
-- real[] stored like evector (and pgvector's vector): out of line without
-- compression, so the two are compared on equal terms.
CREATE TABLE vecphi_bench.source (id integer PRIMARY KEY, v real[] NOT NULL);
ALTER TABLE vecphi_bench.source ALTER COLUMN v SET STORAGE EXTERNAL;
CREATE TABLE vecphi_bench.plain (LIKE vecphi_bench.source INCLUDING ALL);
CREATE TABLE vecphi_bench.items (
	id			integer PRIMARY KEY,
	embedding	evector(:dim) NOT NULL
);
CREATE TABLE vecphi_bench.queries (
	qid			integer PRIMARY KEY,
	q			evector NOT NULL,
	qv			real[] NOT NULL
);

-- Server-side time of one statement, in ms: no client round trip, no commit.
CREATE FUNCTION vecphi_bench.time_ms(stmt text) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	EXECUTE stmt;
	RETURN 1000 * extract(epoch FROM clock_timestamp() - t0);
END
$$;

-- Run a search whose parameter $1 is the query vector: its server-side
-- time in ms and the ids it returned, in order (collecting ten ids costs
-- nothing next to the search).
CREATE FUNCTION vecphi_bench.search(stmt text, arg anyelement,
									OUT ms float8, OUT ids integer[])
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	EXECUTE 'SELECT array_agg(id) FROM (' || stmt || ') s' INTO ids USING arg;
	ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
END
$$;

-- Random vectors with elements in [0, 1).  The subquery mentions i so that
-- it runs once per row rather than once in all.
INSERT INTO vecphi_bench.source
	SELECT i, ARRAY(SELECT random()::real FROM generate_series(1, :dim) WHERE i > 0)
	FROM generate_series(1, :rows) i;

BEGIN;
SELECT vecphi.set_claims(:'tok');
INSERT INTO vecphi_bench.queries
	SELECT qid, vecphi.encrypt(v), v
	FROM (SELECT qid, ARRAY(SELECT random()::real
							FROM generate_series(1, :dim) WHERE qid > 0) AS v
		  FROM generate_series(1, :queries) qid) s;
COMMIT;
VACUUM ANALYZE vecphi_bench.source, vecphi_bench.queries;
SQL

# Shared settings of every measuring session: one backend, no parallel
# workers, no JIT compilation in the timings; then the claims.
SESSION_SQL="SET max_parallel_workers_per_gather = 0;
SET jit = off;
BEGIN;
SELECT vecphi.set_claims(:'tok') \\g /dev/null"

# The statements measured.  Inserts copy the same rows from the source
# table, encrypting them or not; reads touch every value, decrypting it or
# just detoasting it.
INSERT_ENC="INSERT INTO vecphi_bench.items
	SELECT id, vecphi.encrypt(v) FROM vecphi_bench.source"
INSERT_PLAIN="INSERT INTO vecphi_bench.plain SELECT id, v FROM vecphi_bench.source"
READ_ENC="SELECT sum(array_length(vecphi.decrypt(embedding), 1)) FROM vecphi_bench.items"
READ_PLAIN="SELECT sum(array_length(v, 1)) FROM vecphi_bench.plain"
# Exact search; the query is an evector parameter, as an application
# would bind it.
SEARCH_ENC="SELECT id FROM vecphi_bench.items ORDER BY embedding <-> \$1 LIMIT 10"
# The plaintext baseline: the same search over the real[] copy with the
# distance in plain SQL, on the first few query vectors.  Interpreted, so
# slow; it also checks that the encrypted search finds the same rows.
SEARCH_SQL="SELECT id FROM vecphi_bench.plain
	ORDER BY (SELECT sum((a - b)::float8 * (a - b)::float8) FROM unnest(v, \$1) AS u(a, b))
	LIMIT 10"

# Inserts.  The source is read once beforehand so both start from warm
# buffers.
OUT=$(sql -v ins_enc="$INSERT_ENC" -v ins_plain="$INSERT_PLAIN" <<SQL
$SESSION_SQL
SELECT sum(array_length(v, 1)) FROM vecphi_bench.source \\g /dev/null
SELECT vecphi_bench.time_ms(:'ins_enc') AS enc,
	vecphi_bench.time_ms(:'ins_plain') AS plain \\gset
COMMIT;
\\echo :enc :plain
SQL
)
read -r INS_ENC_MS INS_PLAIN_MS <<<"$OUT"

# Settle the new tables (hint bits, visibility map, statistics) so that
# the first timed read does not pay for it.
sql >/dev/null <<'SQL'
VACUUM ANALYZE vecphi_bench.items, vecphi_bench.plain;
SELECT rolsuper FROM pg_roles WHERE rolname = current_user \gset
\if :rolsuper
CHECKPOINT;
\endif
SQL

# Reading every row, best of three after a warm-up run.
OUT=$(sql -v read_enc="$READ_ENC" -v read_plain="$READ_PLAIN" <<SQL
$SESSION_SQL
SELECT vecphi_bench.time_ms(:'read_enc'), vecphi_bench.time_ms(:'read_plain') \\g /dev/null
SELECT min(vecphi_bench.time_ms(:'read_enc')) AS dec,
	min(vecphi_bench.time_ms(:'read_plain')) AS scan
FROM generate_series(1, 3) \\gset
COMMIT;
\\echo :dec :scan
SQL
)
read -r DEC_MS SCAN_MS <<<"$OUT"

# Exact searches: one warm-up, then each query vector once; the plaintext
# baseline on the first few.
OUT=$(sql -v enc="$SEARCH_ENC" -v base="$SEARCH_SQL" <<SQL
$SESSION_SQL
SELECT vecphi_bench.search(:'enc', q) FROM vecphi_bench.queries WHERE qid = 1 \\g /dev/null
WITH enc AS MATERIALIZED (
	SELECT qid, s.ms, s.ids
	FROM vecphi_bench.queries, LATERAL vecphi_bench.search(:'enc', q) s
), base AS MATERIALIZED (
	SELECT qid, s.ms, s.ids
	FROM vecphi_bench.queries, LATERAL vecphi_bench.search(:'base', qv) s
	WHERE qid <= :sql_queries
)
SELECT (SELECT avg(ms) FROM enc), (SELECT min(ms) FROM enc),
	(SELECT max(ms) FROM enc), (SELECT count(*) FROM enc),
	(SELECT coalesce(avg(ms), 0) FROM base),
	(SELECT count(*) FROM base JOIN enc USING (qid) WHERE base.ids = enc.ids);
COMMIT;
SQL
)
read -r S_MEAN S_MIN S_MAX S_N SQL_MEAN SQL_AGREE <<<"$OUT"

SERVER_VERSION=$(sql -c 'SHOW server_version')
SHARED_BUFFERS=$(sql -c 'SHOW shared_buffers')
BYTES=$((DIM * 4))

awk -v rows="$ROWS" -v dim="$DIM" -v bytes="$BYTES" -v nq="$S_N" -v nsql="$SQL_QUERIES" \
	-v mode="$MODE" -v version="$SERVER_VERSION" -v sb="$SHARED_BUFFERS" \
	-v ins_enc="$INS_ENC_MS" -v ins_plain="$INS_PLAIN_MS" \
	-v dec="$DEC_MS" -v scan="$SCAN_MS" \
	-v s_mean="$S_MEAN" -v s_min="$S_MIN" -v s_max="$S_MAX" \
	-v sql_mean="$SQL_MEAN" -v sql_agree="$SQL_AGREE" '
function rate(ms) { return rows / (ms / 1000) }
function mbps(ms) { return rows * bytes / 1e6 / (ms / 1000) }
function line(what, ms) {
	printf "  %-47s %9.1f ms %10.0f rows/s %8.1f MB/s\n", what, ms, rate(ms), mbps(ms)
}
BEGIN {
	printf "\nvecphi sql_bench: %d rows of %d dimensions (%d plaintext bytes each)\n", rows, dim, bytes
	printf "PostgreSQL %s, shared_buffers %s, %s\n", version, sb, mode
	printf "one backend, no parallel workers, no JIT; times are server-side statement\n"
	printf "times (clock_timestamp), without commit or client round trip; MB = 10^6\n"
	printf "plaintext bytes\n"

	printf "\nload (INSERT ... SELECT from a real[] table of the same rows)\n"
	line("evector: vecphi.encrypt(v)", ins_enc)
	line("real[] copy, no encryption", ins_plain)
	printf "  %-47s %9.2fx\n", "encrypted / plain insert time", ins_enc / ins_plain

	printf "\nread every row (best of 3)\n"
	line("sum(array_length(vecphi.decrypt(embedding),1))", dec)
	line("sum(array_length(v,1)) over the real[] copy", scan)
	printf "  %-47s %9.2fx\n", "decrypt / plain read time", dec / scan

	printf "\nexact search: ORDER BY embedding <-> $1 LIMIT 10, %d queries over %d rows\n", nq, rows
	printf "  %-47s %9.1f ms  (min %.1f, max %.1f)\n", "mean latency", s_mean, s_min, s_max
	printf "  %-47s %9.2f\n", "queries/s", 1000 / s_mean
	printf "  %-47s %9.0f rows/s %8.1f MB/s\n", "rows scanned (decrypted and compared)", rate(s_mean), mbps(s_mean)
	printf "  %-47s %9.2fx\n", "search / full decrypt() time", s_mean / dec
	printf "  %-47s %9.2fx\n", "search / plain real[] read time", s_mean / scan
	if (nsql > 0) {
		printf "\nplaintext baseline: the same search over the real[] copy, distance in\n"
		printf "SQL (sum over unnest(v, $1)), %d queries; no C kernel, so this is what\n", nsql
		printf "plain SQL costs, not what an optimised plaintext type would\n"
		printf "  %-47s %9.1f ms\n", "mean latency", sql_mean
		printf "  %-47s %9.0f rows/s\n", "rows scanned", rate(sql_mean)
		printf "  %-47s %9.2fx\n", "SQL baseline / encrypted search time", sql_mean / s_mean
		printf "  %-47s %d of %d\n", "queries with the same top 10 ids", sql_agree, nsql
	}
}'
echo
echo "sql_bench.sh: done; dropping schema vecphi_bench${DIR:+, stopping the server and removing $DIR}"
