#!/bin/bash
# Entry point of saga-stack.local/postgres. On the first start (no PG_VERSION
# in $PGDATA) it runs initdb for $POSTGRES_USER with $POSTGRES_PASSWORD,
# creates $POSTGRES_DB, runs /docker-entrypoint-initdb.d/*.sql|*.sql.gz|*.sh
# in name order against a server listening on the Unix socket only, then
# execs the real server listening on all addresses. Remote (TCP) clients
# authenticate with a scram-sha-256 password; loopback and the socket are
# trusted, as in the official image.
set -Eeuo pipefail

msg() { printf '%s [entrypoint] %s\n' "$(date -u '+%F %T UTC')" "$*" >&2; }
fail() {
  msg "ERROR: $*"
  exit 1
}

# `docker run image -c foo=bar` means flags for postgres.
if [[ $# -eq 0 || ${1:0:1} == '-' ]]; then
  set -- postgres "$@"
fi
[[ $1 == postgres ]] || exec "$@"

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

# Started as root (plain `docker run`): own the data and socket directories,
# then run again as the postgres user.
if [[ $(id -u) == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# A uid with no passwd entry makes initdb fail; say so clearly.
getent passwd "$(id -u)" >/dev/null || fail "uid $(id -u) has no passwd entry; run as uid 999 (postgres)"

mkdir -p "$PGDATA"
chmod 0700 "$PGDATA" 2>/dev/null || true

POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

run_psql() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --host /var/run/postgresql "$@"
}

first_start() {
  if [[ -z ${POSTGRES_PASSWORD:-} && ${POSTGRES_HOST_AUTH_METHOD:-} != trust ]]; then
    fail "the database is not initialised and POSTGRES_PASSWORD is empty (set it, or POSTGRES_HOST_AUTH_METHOD=trust)"
  fi
  msg "initialising $PGDATA for user '$POSTGRES_USER'"
  local pwfile
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  # shellcheck disable=SC2086
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=trust ${POSTGRES_INITDB_ARGS:-} >&2
  rm -f "$pwfile"

  local method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  printf '\n# saga-stack.local/postgres: every other TCP client needs a password.\nhost all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"
  printf "\n# saga-stack.local/postgres\nlisten_addresses = '*'\npassword_encryption = 'scram-sha-256'\n" >>"$PGDATA/postgresql.conf"

  # Setup server: Unix socket only, so no client can see a half-made database.
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" start >&2

  if [[ $POSTGRES_DB != postgres ]]; then
    msg "creating database '$POSTGRES_DB'"
    run_psql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi

  local f
  shopt -s nullglob
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        if [[ -x $f ]]; then
          msg "running $f"
          PGHOST=/var/run/postgresql PGUSER="$POSTGRES_USER" PGDATABASE="$POSTGRES_DB" "$f"
        else
          msg "sourcing $f"
          # shellcheck disable=SC1090
          PGHOST=/var/run/postgresql PGUSER="$POSTGRES_USER" PGDATABASE="$POSTGRES_DB" . "$f"
        fi
        ;;
      *.sql)
        msg "running $f"
        run_psql --dbname "$POSTGRES_DB" -f "$f"
        ;;
      *.sql.gz)
        msg "running $f"
        gzip -dc "$f" | run_psql --dbname "$POSTGRES_DB"
        ;;
      *) msg "ignoring $f" ;;
    esac
  done
  shopt -u nullglob

  pg_ctl -D "$PGDATA" -m fast -w stop >&2
  msg "initialisation done"
}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  first_start
else
  msg "$PGDATA already holds a database; skipping initialisation"
fi

exec "$@"
