#!/usr/bin/env bash
# README's first command: set up .venv, start a local MLflow tracking server (SQLite + local artifacts on
# 127.0.0.1), run the whole pipeline against it with `mlflow run` (which registers the models and, the first time,
# promotes the candidate to production through the gate), and say where to look.
# Environment: MLFLOW_PORT (default 5000), MLFLOW_STATE_DIR (default .mlflow); extra args go to `mlflow run`
# (for example: -P max_epochs=50).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
# MLflow's usage telemetry: off (it phones home; offline it only costs time).
export MLFLOW_DISABLE_TELEMETRY=true

port=${MLFLOW_PORT:-5000}
state=${MLFLOW_STATE_DIR:-.mlflow}
python scripts/tracking_server.py start --root "$state" --port "$port"
export MLFLOW_TRACKING_URI="http://127.0.0.1:$port"
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
# `mlflow run --experiment-name` refuses to run when an experiment id is also set in the environment.
unset MLFLOW_EXPERIMENT_ID MLFLOW_EXPERIMENT_NAME MLFLOW_RUN_ID

started=$(date +%s)
mlflow run . -e main --env-manager local --experiment-name credit-scoring "$@"
elapsed=$(( $(date +%s) - started ))
echo
python -m registry status

# The gateway: a Redis (the machine's if one answers, else a local one), then `python -m serving` (granian) serving
# production/staging.
redis_url=$(python scripts/local_redis.py ensure --url "${REDIS_URL:-redis://127.0.0.1:6379/0}" --state .redis \
    --port "${LOCAL_REDIS_PORT:-6380}")
gateway_port=${SERVING_PORT:-8000}
gateway="http://127.0.0.1:$gateway_port"
mkdir -p .gateway
if ! python -c "import requests, sys; sys.exit(requests.get('$gateway/health', timeout=2).status_code != 200)" 2>/dev/null; then
    # Its log is bounded: rotated at 50 MB, 3 old files kept (serving/log_file.py); server.out gets only what is said
    # before the log file is open (a settings error) and the log writer's own complaints.
    # A local demo on loopback: no API keys (whatever the shell exports) and /metrics on the gateway's own port,
    # where monitoring/prometheus/prometheus.yml scrapes it (compose and Kubernetes turn both on: docs/serving.md).
    REDIS_URL=$redis_url SERVING_BIND=127.0.0.1:$gateway_port SERVING_RELOAD_INTERVAL_S=${SERVING_RELOAD_INTERVAL_S:-10} \
        SERVING_API_KEYS="" SERVING_METRICS_BIND="" SERVING_ENVIRONMENT=development \
        SERVING_LOG_FILE=.gateway/gateway.log nohup python -m serving >.gateway/server.out 2>&1 &
    python scripts/pidfile.py record $! .gateway/gateway.pid
fi
python scripts/sample_requests.py --url "$gateway" --wait 90

# Monitoring: real applicants through the gateway, then one drift report of the prediction stream against the
# training split of the version that scored them (an MLflow run in the experiment "monitoring").
python scripts/send_applicants.py --url "$gateway" --rows "${DRIFT_DEMO_ROWS:-3000}" --redis-url "$redis_url"
# Pushed to a Pushgateway when one answers (`make monitoring` starts one on 9091), so the alerts and dashboard see it.
REDIS_URL=$redis_url MONITORING_PUSHGATEWAY_URL=${MONITORING_PUSHGATEWAY_URL:-$(python scripts/local_monitoring.py pushgateway-url)} \
    python -m monitoring.drift

cat <<MSG

Pipeline finished in ${elapsed} s.
  MLflow UI:          $MLFLOW_TRACKING_URI  (experiment "credit-scoring"; model "credit-scoring" under Models)
  Registry:           .venv/bin/python -m registry status | history | stage | promote | rollback   (MLFLOW_TRACKING_URI as above)
  Run one step:       MLFLOW_TRACKING_URI=$MLFLOW_TRACKING_URI .venv/bin/mlflow run . -e train --env-manager local -P prepare_run_id=<id>
  Gateway:            $gateway  (docs $gateway/docs, metrics $gateway/metrics; log .gateway/gateway.log)
  Redis:              $redis_url
  Drift report:       REDIS_URL=$redis_url MLFLOW_TRACKING_URI=$MLFLOW_TRACKING_URI .venv/bin/python -m monitoring.drift   (experiment "monitoring")
  Drift flagged:      make drift-shifted PORT=$port   (the same job on a copy with income halved and a new housing category)
  Prometheus:         make monitoring PORT=$port SERVING_PORT=$gateway_port   (127.0.0.1:9090, Pushgateway 127.0.0.1:9091)
  Stop everything:    make stop   (gateway, local Redis, tracking server, Prometheus and Pushgateway)
MSG
