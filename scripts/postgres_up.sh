#!/usr/bin/env bash
# Start a local PostgreSQL for the Dagster instance (make test-postgres), installing the
# Debian package first if it is missing. Prints the connection URL on its last line.
# Idempotent: a running server, the role and the database are reused.
set -euo pipefail
DB="${ECM_PG_DB:-ecm_dagster}"
ROLE="${ECM_PG_ROLE:-ecm}"
# a fresh random password each time unless one is given (set on the role below), so that
# tests can look for it in everything a run writes (reliability item 25)
PASSWORD="${ECM_PG_PASSWORD:-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}"
PORT="${ECM_PG_PORT:-5432}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "installing postgresql (Debian package) ..." >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
fi
if ! pg_isready -q -h localhost -p "$PORT"; then
  version="$(pg_lsclusters -h | awk 'NR==1 {print $1}')"
  cluster="$(pg_lsclusters -h | awk 'NR==1 {print $2}')"
  if [ -z "$version" ]; then
    version="$(ls /usr/lib/postgresql | sort -n | tail -1)"
    cluster=main
    $SUDO pg_createcluster "$version" "$cluster" -p "$PORT" >&2
  fi
  $SUDO pg_ctlcluster "$version" "$cluster" start >&2
  for _ in $(seq 1 30); do pg_isready -q -h localhost -p "$PORT" && break; sleep 1; done
fi
psql_admin() {
  if [ -z "$SUDO" ]; then
    su postgres -c "psql -p $PORT -v ON_ERROR_STOP=1 -qtAc \"$1\""
  else
    sudo -u postgres psql -p "$PORT" -v ON_ERROR_STOP=1 -qtAc "$1"
  fi
}
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
  psql_admin "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'" >&2
else
  psql_admin "ALTER ROLE $ROLE PASSWORD '$PASSWORD'" >&2
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
  psql_admin "CREATE DATABASE $DB OWNER $ROLE" >&2
fi
echo "postgresql+psycopg2://$ROLE:$PASSWORD@localhost:$PORT/$DB"
