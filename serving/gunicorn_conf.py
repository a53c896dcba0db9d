"""gunicorn settings for the gateway: `gunicorn -c serving/gunicorn_conf.py` (see `make serve`).

Environment: SERVING_BIND (127.0.0.1:8000), SERVING_WORKERS (2), SERVING_TIMEOUT_S (30), plus ServingSettings'.
Sync workers: on 2 cores they beat gthread for this CPU-light model. Each worker loads the models after the fork
(threads and ONNX sessions do not survive a fork), so `preload_app` stays off.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any  # gunicorn publishes no types: its Arbiter and Worker are Any here

bind = os.environ.get("SERVING_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SERVING_WORKERS", "2"))
worker_class = "sync"
timeout = int(os.environ.get("SERVING_TIMEOUT_S", "30"))
graceful_timeout = 20  # SIGTERM: finish in-flight requests for up to this long, then exit
keepalive = 5
# The heartbeat touches a file in this folder on every request loop: on tmpfs that is a memory write, on a disk-backed
# (or overlay) filesystem a metadata update that can stall a worker. gunicorn's docs suggest /dev/shm.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
wsgi_app = "serving.wsgi:app"
accesslog = None  # the app writes one structured JSON line per request instead
errorlog = "-"


def on_starting(server: Any) -> None:
    # prometheus_client reads this when first imported (in the workers); every worker writes its samples there.
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="gateway-metrics-")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    # Model downloads happen in the workers; MLflow's progress bars would garble the JSON log lines.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def worker_exit(server: Any, worker: Any) -> None:
    # Runs in the worker after its last request (graceful SIGTERM included): send the queued prediction-log entries.
    # Imported here, not at the top: the master must not import prometheus_client before on_starting has run.
    from serving.service import EXTENSION, gateway_of

    app = getattr(worker, "wsgi", None)
    if app is not None and EXTENSION in getattr(app, "extensions", {}):
        gateway_of(app).predictions.log.close()
