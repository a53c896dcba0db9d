#!/usr/bin/env bash
# The compose stack's one-shot trainer: the whole MLproject (`mlflow run . -e main`, which registers the ONNX models
# and, when the model has no production version, promotes the candidate through the gate). A second `docker compose
# up` finds production and trains nothing; TRAINER_FORCE=true trains a new candidate (staged, not promoted).
# Environment: MLFLOW_TRACKING_URI, CREDIT_REGISTERED_MODEL_NAME, CREDIT_EXPERIMENT_NAME; extra args go to mlflow run.
set -euo pipefail
cd "$(dirname "$0")/.."

has_production() {
    # `python -m registry status` lists every version with its aliases (column 2); it exits 2 for an unknown model.
    python -m registry status 2>/dev/null | awk 'NR > 2 && $2 ~ /(^|,)production(,|$)/ { found = 1 } END { exit !found }'
}

if [ "${TRAINER_FORCE:-false}" != "true" ] && has_production; then
    echo "trainer: ${CREDIT_REGISTERED_MODEL_NAME:-credit-scoring} has a production version; nothing to train"
    exit 0
fi
# `mlflow run --experiment-name` refuses to run when an experiment id is also set in the environment.
unset MLFLOW_EXPERIMENT_ID MLFLOW_EXPERIMENT_NAME MLFLOW_RUN_ID
mlflow run . -e main --env-manager local --experiment-name "${CREDIT_EXPERIMENT_NAME:-credit-scoring}" "$@"
python -m registry status
