"""`python -m serving`: the gateway under its HTTP server, chosen by SERVING_SERVER.

- `granian` (default): granian's WSGI interface. HTTP is parsed in Rust and connections are kept alive, so a client
  that reuses its connection (a loan-origination system, a batch of calls) skips a TCP handshake and the server's
  per-connection work on every request: the bare app answered 2.0x the requests of gunicorn's sync workers over
  kept-alive connections and 1.5x over new ones (docs/benchmarks.md). One Python thread per worker runs the app, as
  gunicorn's sync workers did. SIGHUP respawns the workers one after another (a code reload); SIGTERM stops accepting,
  lets the workers finish what they are answering (up to GRACEFUL_TIMEOUT_S) and flush the prediction log.
- `gunicorn`: sync workers (serving/gunicorn_conf.py); each connection is closed after its response.

Both bind SERVING_BIND (127.0.0.1:8000) with SERVING_WORKERS (2) processes, each loading the models itself
(serving/wsgi.py), and sum their metrics through PROMETHEUS_MULTIPROC_DIR: on /metrics of SERVING_BIND, or, with
SERVING_METRICS_BIND (an internal address), served there by the server's own process and not on the public port
(start_metrics_server: granian's main process here, gunicorn's master in gunicorn_conf.when_ready). With
SERVING_LOG_FILE the server's output (the JSON access and application lines) goes to that file, rotated at
SERVING_LOG_MAX_BYTES with SERVING_LOG_BACKUPS old files kept (serving/log_file.py); without it, to stdout, where a
container's collector ships it.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.logs import configure_json_logging

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

GRACEFUL_TIMEOUT_S = 20  # SIGTERM: in-flight requests get this long, under either server
RELOAD_OVERLAP_S = 10.0  # granian's SIGHUP: a new worker and its predecessor both serve this long (start-up: ~3-5 s)
WSGI_APP = "serving.wsgi:app"
ADDRESS = r"^[^\s:]+:\d{1,5}$"  # host:port
ADDRESS_OR_EMPTY = r"^([^\s:]+:\d{1,5})?$"
USAGE = "usage: python -m serving   (configured by SERVING_* variables: docs/serving.md)"


class ServerSettings(BaseSettings):
    """How the gateway's processes are run (the app's own settings are serving.settings.ServingSettings)."""

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore")

    server: Literal["granian", "gunicorn"] = "granian"
    bind: str = Field(default="127.0.0.1:8000", pattern=ADDRESS)
    workers: int = Field(default=2, ge=1)
    log_file: Path | None = None  # empty: stdout, as unset
    log_max_bytes: int = Field(default=50 << 20, ge=1 << 16)
    log_backups: int = Field(default=3, ge=1)
    # The app reads the same variable (serving.settings.ServingSettings.metrics_bind) and then has no /metrics.
    metrics_bind: str = Field(default="", pattern=ADDRESS_OR_EMPTY)

    @field_validator("log_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _metrics_port_of_its_own(self) -> ServerSettings:
        if self.metrics_bind and address(self.metrics_bind)[1] == self.host_and_port[1]:
            raise ValueError("SERVING_METRICS_BIND must not use SERVING_BIND's port")
        return self

    @property
    def host_and_port(self) -> tuple[str, int]:
        return address(self.bind)


def address(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host, int(port)


def prepare_metrics_folder() -> str:
    """An empty PROMETHEUS_MULTIPROC_DIR for this server's workers (made up when unset), set in the environment they
    inherit. prometheus_client reads it when first imported, in the workers: the server's own process must not
    import it before this ran."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="gateway-metrics-")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    # Model downloads happen in the workers; MLflow's progress bars would garble the JSON log lines.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return folder


def start_metrics_server(bind: str) -> WSGIServer:
    """Every worker's metrics, summed as /metrics on the public port would (prometheus_client's MultiProcessCollector
    over PROMETHEUS_MULTIPROC_DIR), served on `bind` by prometheus_client's own HTTP server in a daemon thread of this
    process: the supervising process, which outlives every worker. Call it after prepare_metrics_folder (the import
    reads PROMETHEUS_MULTIPROC_DIR)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()  # nothing but the collector: series registered here would be reported twice
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    host, port = address(bind)
    server, _ = start_http_server(port, host, registry)
    return server


def send_output_to_rotating_file(log_file: Path, settings: ServerSettings) -> None:
    """Point this process's stdout and stderr (and so every worker's) at one writer that rotates the log file.

    One process writes the file, so rotation never races between workers; it ignores SIGTERM and ends when the last
    worker has closed its end of the pipe, after the last line. The file is opened here first, so that a path that
    cannot be written is said at once (OSError) rather than leaving the server without a log."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.open("ab").close()
    writer = subprocess.Popen(
        [sys.executable, "-m", "serving.log_file", str(log_file),
         "--max-bytes", str(settings.log_max_bytes), "--backups", str(settings.log_backups)],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert writer.stdin is not None
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(writer.stdin.fileno(), 1)
    os.dup2(writer.stdin.fileno(), 2)
    writer.stdin.close()


def granian_logging() -> dict[str, object]:
    """granian's own lines (start, stop, respawns) as JSON lines like the gateway's (serving.logs.JsonFormatter)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    return {
        "formatters": {"json": {"()": "serving.logs.JsonFormatter"}},
        "handlers": {"console": handler, "access": handler},
    }


def run_granian(settings: ServerSettings) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    # Workers start as fresh interpreters, not forks: their exit then runs the interpreter's exit handlers, which
    # flush the prediction log (serving/wsgi.py), and nothing of this process's state leaks into them.
    multiprocessing.set_start_method("spawn", force=True)
    host, port = settings.host_and_port
    Granian(
        WSGI_APP,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=settings.workers,
        blocking_threads=1,  # one request at a time per worker, as sync workers: the app needs no more threads
        respawn_failed_workers=True,
        # SIGHUP: each new worker gets this long to load its models before its predecessor is stopped.
        respawn_interval=RELOAD_OVERLAP_S,
        workers_kill_timeout=GRACEFUL_TIMEOUT_S,
        log_dictconfig=granian_logging(),
    ).serve()


def run_gunicorn() -> None:
    config = Path(__file__).with_name("gunicorn_conf.py")
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "-c", str(config)])


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments:
        asked = arguments[0] in {"-h", "--help"}
        sys.stderr.write(
            USAGE + "\n" + ("" if asked else f"error: python -m serving takes no arguments: {arguments}\n")
        )
        return 0 if asked else 2
    from serving.settings import ServingSettings

    try:
        settings = ServerSettings()
        ServingSettings()  # the workers read it: a mistake is said once here, not as each worker's traceback
    except ValidationError as error:
        for problem in error.errors():
            name = "SERVING_" + "_".join(map(str, problem["loc"])).upper() if problem["loc"] else "settings"
            sys.stderr.write(f"error: {name}: {problem['msg']}\n")
        return 2
    if settings.log_file is not None:
        try:
            send_output_to_rotating_file(settings.log_file, settings)
        except OSError as error:
            sys.stderr.write(f"error: SERVING_LOG_FILE: {settings.log_file}: {error.strerror}\n")
            return 2
    if settings.server == "gunicorn":
        run_gunicorn()  # gunicorn_conf.on_starting prepares the metrics folder
    configure_json_logging()
    prepare_metrics_folder()
    if settings.metrics_bind:
        start_metrics_server(settings.metrics_bind)
    run_granian(settings)
    return 0
