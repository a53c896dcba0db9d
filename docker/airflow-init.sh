#!/usr/bin/env bash
# The compose stack's airflow-init: migrate Airflow's metadata database, then give the SimpleAuthManager's users
# `admin` and `approver` the passwords of AIRFLOW_ADMIN_PASSWORD and AIRFLOW_APPROVER_PASSWORD (the api-server
# generates one only for users missing from the file).
set -euo pipefail

: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD must be set}"
: "${AIRFLOW_APPROVER_PASSWORD:?AIRFLOW_APPROVER_PASSWORD must be set}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE must be set}"

airflow db migrate
# JSON written by Python, so that any character of the password survives.
python -c '
import json, os, sys
passwords = {"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"], "approver": os.environ["AIRFLOW_APPROVER_PASSWORD"]}
json.dump(passwords, open(sys.argv[1], "w"))' "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
chmod 600 "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
echo "airflow-init: database migrated; users admin and approver have the passwords of AIRFLOW_ADMIN_PASSWORD and AIRFLOW_APPROVER_PASSWORD"
