#!/usr/bin/env bash
# Run the test suite (README's second command): set up .venv if needed, lint, type-check, then pytest. Extra args go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The gateway's own environment and checkov's (tests/deploy use both).
scripts/bootstrap.sh serving validate
export PATH="$PWD/.venv/bin:$PATH"
# MLflow's usage telemetry: off (it phones home; offline it only costs time).
export MLFLOW_DISABLE_TELEMETRY=true
ruff check .
ruff format --check .
mypy  # strict for scoring/, registry/, serving/ (pyproject.toml)
exec python -m pytest "$@"
