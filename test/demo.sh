#!/usr/bin/env bash
# vecphi: a guided tour on a throwaway server.
#
# Run as root from anywhere: sudo bash test/demo.sh
#
# Installs and builds (test/setup.sh), then as the 'postgres' OS user creates
# a temporary cluster with vecphi preloaded, runs test/demo.sql with psql,
# and removes the cluster again, whatever happens.  Two hospitals share one
# table of encrypted clinical notes; each sees and decrypts only its own.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "demo.sh: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (it installs packages and switches to the postgres user): sudo bash $0"

# PG_CONFIG may point at another (e.g. relocated) PostgreSQL 15 installation.
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG

# /tmp rather than $TMPDIR: 'postgres' must be able to enter it, and the
# socket path must stay short.
DEMO=$(mktemp -d /tmp/vecphi-demo.XXXXXX)
DATA=$DEMO/data
KEYS=$DEMO/keys
SECRET_FILE=$DEMO/jwt_secret
LOG=$DEMO/server.log
# The server listens only on a Unix socket inside $DEMO (listen_addresses is
# empty), so this port number cannot collide with any other server: it only
# names the socket file.
PORT=${VECPHI_DEMO_PORT:-5499}

as_postgres() {
	(cd "$DEMO" && runuser -u postgres -- env -i \
		PATH="$PGBIN:/usr/bin:/bin" LANG=C.UTF-8 HOME="$DEMO" "$@")
}

cleanup() {
	local rc=$?
	if ((rc != 0)) && [[ -f $LOG ]]; then
		echo "demo.sh: failed; tail of the server log:" >&2
		tail -n 40 "$LOG" >&2
	fi
	if [[ -f $DATA/postmaster.pid ]]; then
		as_postgres pg_ctl -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$DEMO"
}
trap cleanup EXIT

# The build log is long and only interesting when something went wrong.
echo "demo.sh: installing prerequisites and building vecphi (test/setup.sh; minutes on a new machine)"
bash "$REPO/test/setup.sh" >"$DEMO/setup.log" 2>&1 ||
	{ cat "$DEMO/setup.log" >&2; die "test/setup.sh failed"; }
PGBIN=$("$PG_CONFIG" --bindir)

# A fresh random secret: demo tokens are worthless anywhere else.
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
install -d -m 0700 "$KEYS"
(umask 077 && printf '%s' "$SECRET" >"$SECRET_FILE")
chown -R postgres:postgres "$DEMO"

echo "demo.sh: creating a throwaway cluster in $DATA"
as_postgres initdb -D "$DATA" -U postgres -A trust -E UTF8 --no-locale \
	--no-instructions >"$DEMO/initdb.log" 2>&1 ||
	{ cat "$DEMO/initdb.log" >&2; die "initdb failed"; }

# Keys and secret live outside the data directory, as they should in
# production: a copy of the data directory (or a backup) carries neither.
cat >>"$DATA/postgresql.conf" <<EOF

# vecphi demo
listen_addresses = ''
unix_socket_directories = '$DEMO'
port = $PORT
shared_preload_libraries = 'vecphi'
vecphi.key_directory = '$KEYS'
vecphi.jwt_secret_file = '$SECRET_FILE'
EOF

as_postgres pg_ctl -D "$DATA" -l "$LOG" -w start >/dev/null ||
	die "the server did not start"

# Tokens are minted here, by the "identity provider", not in the database:
# HS256 over the claims, keyed with the secret the server was given.
mint() {
	perl -I"$REPO/test/lib" -MVecphiJWT -e \
		'print VecphiJWT::token(secret => shift, tenant => shift,
			role => "clinician", sub => shift, purpose => "treatment")' \
		"$@"
}
tok_a=$(mint "$SECRET" st_marys dr.okafor)
tok_b=$(mint "$SECRET" county_general dr.lindqvist)
# Right claims, wrong key: what an attacker without the secret can make.
tok_forged=$(mint "not-the-server-secret-0123456789abcdef" county_general mallory)

# psql runs as root over the private socket (root can enter $DEMO), so the
# script can be read from wherever the repository lives.
"$PGBIN/psql" -X -q -h "$DEMO" -p "$PORT" -U postgres -d postgres \
	-v ON_ERROR_STOP=1 \
	-v tok_a="$tok_a" -v tok_b="$tok_b" -v tok_forged="$tok_forged" \
	-f "$REPO/test/demo.sql"

echo
echo "== Where the keys are: one key-encryption key per hospital, outside the data directory"
ls -l "$KEYS"
echo
echo "demo.sh: done; stopping the server and removing $DEMO"
