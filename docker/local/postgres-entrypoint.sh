#!/usr/bin/env bash
# The stand-in PostgreSQL's entrypoint (docker/local/postgres.Dockerfile): on the first start initdb with
# POSTGRES_USER/POSTGRES_PASSWORD, run /docker-entrypoint-initdb.d/*.sh against a server that listens on the unix
# socket only (so that health checks over TCP fail until the databases exist), then run the server on every address.
set -euo pipefail
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
export POSTGRES_USER=${POSTGRES_USER:-postgres}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password_file=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
    initdb --username="$POSTGRES_USER" --pwfile="$password_file" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    pg_ctl --wait --silent --options "-c listen_addresses=''" start
    for script in /docker-entrypoint-initdb.d/*.sh; do
        [ -e "$script" ] || continue
        echo "postgres-entrypoint: running $script"
        bash "$script"
    done
    pg_ctl --wait --silent --mode fast stop
    echo "postgres-entrypoint: initialised $PGDATA"
fi
exec postgres -c listen_addresses='*' "$@"
