#!/usr/bin/env bash
# Re-resolve the lock files from pyproject.toml (`make lock`), all with uv for Python 3.11 on every platform:
#   requirements.lock           every extra: .venv, CI, `mlflow run`, the notebooks
#   requirements-serving.lock   the base dependencies only: the gateway (its image, .venv-serving)
#   requirements-pipeline.lock  base + pipeline (+ airflow when pyproject.toml has that extra): trainer, MLflow and
#                               Airflow images
#   requirements-validate.lock  requirements-validate.in: checkov in its own environment (.venv-validate)
# The two subsets are resolved with requirements.lock as constraints, so every package they hold has the version
# the test suite ran with (tests/deploy/test_locks.py checks it).
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
common=(--universal --python-version 3.11 --quiet --custom-compile-command "scripts/lock.sh")

"$uv" pip compile pyproject.toml --all-extras "${common[@]}" -o requirements.lock
"$uv" pip compile pyproject.toml "${common[@]}" -c requirements.lock -o requirements-serving.lock
pipeline=(--extra pipeline)
if .venv/bin/python -c 'import sys, tomllib; sys.exit("airflow" not in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"])'; then
    pipeline+=(--extra airflow)
fi
"$uv" pip compile pyproject.toml "${pipeline[@]}" "${common[@]}" -c requirements.lock -o requirements-pipeline.lock
"$uv" pip compile requirements-validate.in "${common[@]}" -o requirements-validate.lock
echo "lock: requirements.lock, requirements-serving.lock, requirements-pipeline.lock (${pipeline[*]}), requirements-validate.lock"
