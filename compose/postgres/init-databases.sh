#!/usr/bin/env bash
# PostgreSQL's first start (docker-entrypoint-initdb.d): one role and one database each for MLflow and Airflow, so
# that neither can read or break the other's tables. Passwords come from the environment (compose/.env), never files.
set -euo pipefail

: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD must be set}"
: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD must be set}"

create_database() {
    local name=$1 password=$2
    # psql variables (:'password') are quoted by psql itself: a password with quotes cannot break the statement.
    psql --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        --set name="$name" --set password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name') \gexec
SQL
}

create_database mlflow "$MLFLOW_DB_PASSWORD"
create_database airflow "$AIRFLOW_DB_PASSWORD"
