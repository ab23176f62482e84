# shellcheck shell=bash
# Pieces the Fashion-MNIST benchmarks share (ehnsw_bench.sh, audit_bench.sh,
# side_by_side.sh): sourced, never run.  The script that sources it sets
# REPO (the repository's top directory) and BENCH_NAME (for messages) first,
# and may set PORT.  It provides:
#
#   die MESSAGE...             print "BENCH_NAME: MESSAGE" and exit 1
#   bench_prepare              root check, dataset-fashion-mnist, test/setup.sh
#                              (unless SKIP_SETUP=1); sets PG_CONFIG and PGBIN
#   bench_workdir PREFIX       WORK=/tmp/PREFIX.XXXXXX, DATA, and an EXIT trap
#                              that stops the server and removes WORK (KEEP=1
#                              keeps it)
#   bench_start_server [CONF]  keys, JWT secret, initdb and start a cluster as
#                              postgres in DATA, listening on a socket in WORK
#                              only; CONF: extra postgresql.conf lines;
#                              BENCH_PRELOAD (vecphi): shared_preload_libraries,
#                              BENCH_LOG ($WORK/server.log): its log file
#   psql_ ARGS...              psql as postgres to that server
#   token TENANT               an HS256 token for TENANT (role clinician)
#   now / since T / div A B    wall clock, seconds since T, A / B
#   median A B C...            the median of numbers
#   bench_pgbench CLIENTS SECONDS SCRIPT [PGOPTIONS]
#                              pgbench -M prepared; prints "tps latency_ms
#                              transactions", dies on failed transactions
#
# Environment: PG_CONFIG (the Debian one by default) or PGBIN, SKIP_SETUP=1,
# KEEP=1, PORT.

SECRET='vecphi-bench-secret-0123456789abcdef0123'

die() {
	echo "${BENCH_NAME:-bench}: $*" >&2
	exit 1
}

bench_prepare() {
	[[ $EUID -eq 0 ]] || die "run as root: sudo bash $0"
	PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
	export PG_CONFIG
	if ! dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
	fi
	[[ ${SKIP_SETUP:-0} == 1 ]] || bash "$REPO/test/setup.sh" >/dev/null
	PGBIN=${PGBIN:-$("$PG_CONFIG" --bindir)}
}

bench_workdir() {
	WORK=$(mktemp -d "/tmp/$1.XXXXXX")
	DATA=$WORK/data
	trap bench_cleanup EXIT
}

bench_cleanup() {
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
	[[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}

bench_start_server() {
	install -d -m 0700 "$WORK/keys"
	(umask 077 && printf '%s' "$SECRET" >"$WORK/jwt_secret")
	chown -R postgres:postgres "$WORK"
	runuser -u postgres -- "$PGBIN/initdb" -D "$DATA" -A trust >/dev/null
	cat >>"$DATA/postgresql.conf" <<EOF
shared_preload_libraries = '${BENCH_PRELOAD:-vecphi}'
vecphi.key_directory = '$WORK/keys'
vecphi.jwt_secret_file = '$WORK/jwt_secret'
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
jit = off
${1:-}
EOF
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -l "${BENCH_LOG:-$WORK/server.log}" -w start >/dev/null
}

psql_() { runuser -u postgres -- "$PGBIN/psql" -h "$WORK" -p "$PORT" -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
token() { perl -I"$REPO/test/lib" -MVecphiJWT -e 'print VecphiJWT::token(secret => $ARGV[0], tenant => $ARGV[1], role => "clinician", sub => "bench", exp => time() + 86400)' "$SECRET" "$1"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.6f", b - a }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a / b }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

bench_pgbench() { # clients, seconds, script file, PGOPTIONS
	local out
	out=$(runuser -u postgres -- env PGOPTIONS="${4:-}" \
		"$PGBIN/pgbench" -h "$WORK" -p "$PORT" -n -M prepared -c "$1" -j "$(($1 < 2 ? 1 : 2))" \
		-T "$2" -f "$3" postgres 2>&1) || {
		echo "$out" >&2
		die "pgbench failed"
	}
	grep -q 'number of failed transactions: 0 ' <<<"$out" || {
		echo "$out" >&2
		die "pgbench reported failed transactions"
	}
	awk '/^tps = / { tps = $3 } /^latency average = / { lat = $4 }
		/^number of transactions actually processed: / { n = $6 }
		END { printf "%s %s %s\n", tps, lat, n }' <<<"$out"
}
