"""README's first command, `scripts/run-main.sh`, end to end in a copy of the repository, then `make stop`.

It must: start a tracking server, run the whole pipeline with `mlflow run`, deploy through the gate, start a Redis
(here none answers at REDIS_URL, so it starts its own) and the gateway, print the answers of sample requests, send
real applicants and print a drift report (stable), and leave everything running until `make stop` stops it all; the
README's drift command on a shifted copy (`make drift-shifted`) flags drift.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
from mlflow.tracking import MlflowClient

from scripts.tracking_server import free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
NOT_COPIED = (".venv", ".mlflow", ".redis", ".gateway", "mlruns", "__pycache__", ".pytest_cache", ".ruff_cache",
              ".hypothesis")  # fmt: skip


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def printed_answer(output: str, title: str) -> tuple[int, dict[str, object]]:
    """The status and JSON body that sample_requests.py printed under `title`."""
    block = output.split(f"\n{title}: HTTP ", 1)[1]
    status, rest = block.split("\n", 1)
    return int(status), json.loads(rest[: rest.index("\n}") + 2])


def test_run_main_runs_the_pipeline_starts_redis_and_the_gateway_and_make_stop_stops_them(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT, checkout, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=True)
    (checkout / ".venv").symlink_to(REPO_ROOT / ".venv")  # the same locked environment; bootstrap finds it current
    mlflow_port, redis_port, gateway_port = free_port(), free_port(), free_port()
    state = tmp_path / "mlflow-state"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SERVING_", "PROMETHEUS_", "MONITORING_"))
    }
    env |= {
        "MLFLOW_PORT": str(mlflow_port),
        "MLFLOW_STATE_DIR": str(state),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing answers there: the script starts a local one
        "LOCAL_REDIS_PORT": str(redis_port),
        "SERVING_PORT": str(gateway_port),
        "PYTHON": sys.executable,
    }
    gateway = f"http://127.0.0.1:{gateway_port}"
    try:
        result = subprocess.run(
            ["bash", "scripts/run-main.sh", "-P", "cv_folds=2", "-P", "benchmark_repeats=200"],
            cwd=checkout, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
        output = result.stdout
        # Off a terminal: progress as plain lines (no bar's carriage returns), and no onnxruntime quantizer chatter.
        assert "\r" not in output + result.stderr
        assert "Quantization parameters" not in output + result.stderr
        assert "train MLP: " in result.stderr and " epochs/s" in result.stderr
        assert "first deployment: credit-scoring version 1 is now in production" in output + result.stderr
        status_table = output.split("model credit-scoring", 1)[1]
        assert "production" in status_table and "staging" in status_table

        status, predict = printed_answer(output, "POST /predict (3 applicants)")
        assert status == 200 and predict["model"]["alias"] == "production" and len(predict["predictions"]) == 3
        status, cached = printed_answer(output, "POST /predict_cached (second call)")
        assert status == 200 and cached["cached"] is True and cached["predictions"] == predict["predictions"]
        status, ab = printed_answer(output, "POST /predict_ab")
        assert status == 200 and ab["staging_available"] is True and len(ab["variants"]) == 3
        status, bad = printed_answer(output, "POST /predict with a bad second row")
        assert status == 422 and bad["error"]["details"][0]["field"] == "Age"

        # The drift job on the real applicants it sent: one report of version 1, not flagged, logged in MLflow.
        drift = output.split("drift report: ", 1)[1]
        assert drift.startswith("credit-scoring version 1, ") and "-> verdict stable" in drift.splitlines()[0]
        assert "credit PSI" in drift and "Income" in drift and "probability_of_default" in drift
        run_id = drift.split("/runs/", 1)[1].split()[0]
        tracking = MlflowClient(f"http://127.0.0.1:{mlflow_port}")
        run = tracking.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags["verdict"] == "stable"
        assert tracking.get_experiment(run.info.experiment_id).name == "monitoring"
        assert {a.path for a in tracking.list_artifacts(run_id, "drift")} >= {
            "drift/report.html",
            "drift/snapshot.json",
        }
        assert int(run.data.tags["rows"]) >= 3000

        shifted = subprocess.run(
            ["make", "drift-shifted", f"PORT={mlflow_port}"],
            cwd=checkout, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert shifted.returncode == 0, shifted.stderr[-3000:]
        assert "drift report: credit-scoring version 1, 4454 rows -> verdict act" in shifted.stdout, shifted.stdout
        psi = dict(line.split() for line in shifted.stdout.split("act):\n", 1)[1].splitlines() if "    " in line[:4])
        assert float(psi["Income"]) > 0.25 and float(psi["Home"]) > 0.25

        # Everything is still running, as the script's closing message says.
        assert answers(f"http://127.0.0.1:{mlflow_port}/health") and answers(f"{gateway}/ready")
        assert redis.Redis(port=redis_port).ping()
        assert requests.get(f"{gateway}/models", timeout=5).json()["production"]["version"] == "1"
    finally:
        stop = subprocess.run(
            ["make", "stop", f"PORT={mlflow_port}", f"STATE={state}"],
            cwd=checkout, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert stop.returncode == 0, stop.stderr[-2000:]
    deadline = time.monotonic() + 30  # the gateway finishes in-flight requests first (graceful SIGTERM)
    while answers(f"{gateway}/health") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not answers(f"http://127.0.0.1:{mlflow_port}/health") and not answers(f"{gateway}/health")
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=redis_port, socket_connect_timeout=1).ping()
