"""gunicorn settings for the gateway: `SERVING_SERVER=gunicorn python -m serving` (serving/server.py; granian is the
default server).

Environment: SERVING_BIND and SERVING_WORKERS (serving.server.ServerSettings), SERVING_TIMEOUT_S (30: a worker busy
with one request longer than this is killed and replaced), plus ServingSettings'.
Sync workers: on 2 cores they beat gthread for this CPU-light model (each connection is closed after its response).
Each worker loads the models after the fork (threads and ONNX sessions do not survive a fork), so `preload_app` stays
off.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any  # gunicorn publishes no types: its Arbiter and Worker are Any here

from serving.server import GRACEFUL_TIMEOUT_S, WSGI_APP, ServerSettings

_server = ServerSettings()
bind = _server.bind
workers = _server.workers
worker_class = "sync"
timeout = int(os.environ.get("SERVING_TIMEOUT_S", "30"))
graceful_timeout = GRACEFUL_TIMEOUT_S  # SIGTERM: finish in-flight requests for up to this long, then exit
keepalive = 5
# The heartbeat touches a file in this folder on every request loop: on tmpfs that is a memory write, on a disk-backed
# (or overlay) filesystem a metadata update that can stall a worker. gunicorn's docs suggest /dev/shm.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
wsgi_app = WSGI_APP
accesslog = None  # the app writes one structured JSON line per request instead
errorlog = "-"


def on_starting(server: Any) -> None:
    from serving.server import prepare_metrics_folder

    prepare_metrics_folder()


def when_ready(server: Any) -> None:
    # SERVING_METRICS_BIND: the master serves the summed metrics (it outlives every worker). Kept on the arbiter, which
    # a SIGHUP keeps (this module is read again, so a global here would be lost); when_ready runs once per master.
    if _server.metrics_bind:
        from serving.server import start_metrics_server

        server.gateway_metrics_server = start_metrics_server(_server.metrics_bind)


def post_fork(server: Any, worker: Any) -> None:
    # A forked worker inherits the metrics server's listening socket: closed here, it stays the master's alone.
    metrics_server = getattr(server, "gateway_metrics_server", None)
    if metrics_server is not None:
        metrics_server.socket.close()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    with contextlib.suppress(FileNotFoundError):  # a new worker may have swept them already (metrics.py)
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def worker_exit(server: Any, worker: Any) -> None:
    # Runs in the worker after its last request (graceful SIGTERM included): send the queued prediction-log entries.
    # Imported here, not at the top: the master must not import prometheus_client before on_starting has run.
    from serving.app import stop_serving
    from serving.service import EXTENSION

    app = getattr(worker, "wsgi", None)
    if app is not None and EXTENSION in getattr(app, "extensions", {}):
        stop_serving(app)
