"""The registry CLI and the tracking server it asks: refused when none is named, a quick clear error when it does not
answer, and "not found" naming the server that said so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry.server import displayed
from scripts.tracking_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_an_unreachable_tracking_server_is_reported_in_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "registry", "--tracking-uri", url, "status"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot reach the MLflow tracking server at {url}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "command", [["registry", "status"], ["registry", "history"], ["monitoring.drift", "--last-rows", "10"]]
)
def test_without_mlflow_tracking_uri_it_names_the_variable_and_creates_no_database(
    command: list[str], tmp_path: Path
) -> None:
    """MLflow's default would be ./mlflow.db: created in the working folder, empty, "model not found". The registry's
    command line and the drift job's (which reads the registry too) refuse instead."""
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", *command], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: MLFLOW_TRACKING_URI is not set: ") and "--tracking-uri" in line
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_model_not_found_names_the_server_asked(mlflow_server: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "registry", "--tracking-uri", mlflow_server, "--model", "no-such-model", "status"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: registered model 'no-such-model' not found on {mlflow_server}"


def test_messages_name_the_server_without_its_credentials() -> None:
    assert displayed("http://user:secret@mlflow.internal:5000/") == "http://mlflow.internal:5000/"
    assert displayed("https://token@mlflow.example.com") == "https://mlflow.example.com"
    assert displayed("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert displayed("sqlite:///tmp/mlflow.db") == "sqlite:///tmp/mlflow.db"
