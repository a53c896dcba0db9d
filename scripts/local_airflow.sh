#!/usr/bin/env bash
# `make airflow`: Airflow 3 on embedded defaults (`airflow standalone`: scheduler, DAG processor, triggerer and the
# API server with the UI on 127.0.0.1:8080; SQLite metadata in .airflow/) running the DAGs of airflow/dags against the
# same tracking server and Redis as `make run`. Runs in the background; `make stop-airflow` (or `make stop`) ends it.
# Environment: MLFLOW_PORT (5000), REDIS_URL (as `make run` chose), AIRFLOW_PORT (8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
export MLFLOW_DISABLE_TELEMETRY=true

home="$PWD/.airflow"
mkdir -p "$home"
port=${AIRFLOW_PORT:-8080}
export AIRFLOW_HOME="$home"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/airflow/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$port"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$port"
# The DAG files and their tasks import orchestration/, steps/, registry/, monitoring/ and portfolio/ from the repository.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-http://127.0.0.1:${MLFLOW_PORT:-5000}}
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
# Local development: one user (admin) answers its own sign-offs. Everywhere else four eyes are on (docs/airflow.md).
export CREDIT_FOUR_EYES=${CREDIT_FOUR_EYES:-false}
# The Redis the gateway writes its prediction stream to (`make run`: the machine's on 6379, else a local one on 6380).
REDIS_URL=$(python scripts/local_redis.py ensure --url "${REDIS_URL:-redis://127.0.0.1:6379/0}" --state .redis \
    --port "${LOCAL_REDIS_PORT:-6380}")
export REDIS_URL
# The drift DAG pushes its summary to `make monitoring`'s Pushgateway when one answers (the alerts read it).
MONITORING_PUSHGATEWAY_URL=${MONITORING_PUSHGATEWAY_URL:-$(python scripts/local_monitoring.py pushgateway-url)}
export MONITORING_PUSHGATEWAY_URL

if python scripts/pidfile.py alive "$home/standalone.pid"; then
    echo "airflow: already running ($home/standalone.pid); make stop-airflow to stop it"
else
    # A session of its own: standalone's scheduler, triggerer, DAG processor and API server are stopped together by
    # signalling the process group (`make stop-airflow`); killing standalone alone leaves some of them running.
    setsid nohup airflow standalone >"$home/standalone.log" 2>&1 &
    python scripts/pidfile.py record $! "$home/standalone.pid"
fi

printf 'airflow: waiting for the API server on 127.0.0.1:%s ' "$port"
healthy=false
for _ in $(seq 1 180); do
    if python -c "import requests, sys; sys.exit(requests.get('http://127.0.0.1:$port/api/v2/monitor/health', timeout=2).status_code != 200)" 2>/dev/null; then
        healthy=true
        break
    fi
    printf '.'
    sleep 1
done
echo
if [ "$healthy" != true ]; then
    echo "airflow: the API server did not become healthy in 180 s; the end of $home/standalone.log:" >&2
    tail -n 40 "$home/standalone.log" >&2 || true
    exit 1
fi
cat <<MSG
Airflow:       http://127.0.0.1:$port   (user admin; password in $home/simple_auth_manager_passwords.json.generated)
DAGs:          credit_retrain, credit_promote, credit_drift, credit_portfolio_score (airflow/dags; paused at first:
               unpause them in the UI)
Tracking:      $MLFLOW_TRACKING_URI    Redis: $REDIS_URL
Log:           $home/standalone.log    Stop: make stop-airflow
Trigger:       AIRFLOW_HOME=$home .venv/bin/airflow dags trigger credit_retrain --conf '{"max_epochs": 50}'
Approvals:     UI "Required actions", or the REST call in docs/airflow.md
MSG
