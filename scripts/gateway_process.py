"""Start the gateway as users run it (`python -m serving`: its server in a process group of its own), for the tests and
the benchmark scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from scripts.sample_requests import wait_until_ready
from scripts.tracking_server import free_port, stop_group

if TYPE_CHECKING:
    from flask import Flask

    from serving.settings import ServingSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


def server_workers(master: int) -> list[int]:
    """The pids of a gateway server's workers: the children of `python -m serving` that serve requests, not
    multiprocessing's resource tracker (granian's workers are spawned interpreters) nor the log file's writer."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children if not _helper(int(pid))]


def _helper(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True  # gone already
    return "resource_tracker" in command or "serving.log_file" in command


@dataclass(frozen=True)
class GatewayProcess:
    """A gateway started as users run it (`python -m serving`: granian by default, its own process group)."""

    url: str
    redis_url: str
    model_name: str
    tracking_uri: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def log_lines(self) -> list[dict[str, object]]:
        """The JSON lines of its log (any plain line, such as gunicorn's own, left out)."""
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]


@contextmanager
def running_gateway(
    tracking_uri: str,
    model_name: str,
    folder: Path,
    redis_url: str,
    python: str | Path = sys.executable,
    source: Path = REPO_ROOT,
    ready_within_s: float = 90,
    **settings: str,
) -> Iterator[GatewayProcess]:
    """A 2-worker gateway of `model_name` on a free port with state in `folder`, run by the interpreter `python`
    (another venv's, e.g. .venv-serving, with the checkout `source` on its path); `settings` add or override variables
    (SERVING_RELOAD_INTERVAL_S=...). Stopped with its whole process group: a SIGKILL to the master alone would
    orphan its workers."""
    port = free_port()
    env = {
        # Not this venv's: `python` finds its own packages from its own location.
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONHOME"))},
        "PYTHONPATH": str(source),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "CREDIT_REGISTERED_MODEL_NAME": model_name,
        "REDIS_URL": redis_url,
        "SERVING_BIND": f"127.0.0.1:{port}",
        "SERVING_WORKERS": "2",
        "SERVING_RELOAD_INTERVAL_S": "0",
        "SERVING_MODEL_CACHE_DIR": str(folder / "models"),
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
        **settings,
    }
    log_path = folder / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(python), "-m", "serving"],
            env=env,
            cwd=source,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, ready_within_s, process, log_path)
        yield GatewayProcess(url, redis_url, model_name, tracking_uri, log_path, process)
    finally:
        stop_group(process.pid, timeout=30, process=process)


@contextmanager
def in_process_gateway(
    tracking_uri: str, model: str, redis_url: str, **overrides: Any
) -> Iterator[tuple[Flask, ServingSettings]]:
    """The gateway app in this process, models loaded, no background polling, its own model cache folder (what the
    in-process benchmarks measure); its prediction log closed afterwards."""
    import tempfile

    from serving.app import create_app, start_serving
    from serving.service import gateway_of
    from serving.settings import ServingSettings

    with tempfile.TemporaryDirectory(prefix="in-process-gateway-") as folder:
        settings = ServingSettings(
            tracking_uri=tracking_uri,
            model_name=model,
            redis_url=redis_url,
            reload_interval_s=0,
            model_cache_dir=folder,
            **overrides,
        )
        app = create_app(settings)
        start_serving(app)
        try:
            yield app, settings
        finally:
            gateway_of(app).store.stop_polling()
            gateway_of(app).predictions.log.close()
