"""Start, check and stop a local MLflow tracking server (SQLite backend, local artifact folder, 127.0.0.1).

Used by scripts/run-main.sh and by the tests, so both run the same server the same way:
    python scripts/tracking_server.py start --root .mlflow --port 5000
    python scripts/tracking_server.py stop --root .mlflow
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

# Run as `python scripts/tracking_server.py` the repository root is not on the path; the pid files' helper lives there.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts import pidfile

# The servers these scripts start are stopped as process groups (pidfile.stop_group); imported from here by many.
from scripts.pidfile import stop_group

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def is_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(
    root: Path,
    port: int,
    backend_uri: str | None = None,
    app_name: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Launch `mlflow server` with its state under `root`; returns at once (see `wait_until_healthy`).

    The server runs in a session of its own: it spawns uvicorn, a job runner and queue consumers, and `stop` has to
    reach them all through the process group. `app_name` "basic-auth" starts MLflow's authentication app (its
    settings in `environment`: MLFLOW_AUTH_CONFIG_PATH, MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY).
    """
    root = root.resolve()
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    executable = Path(sys.executable).parent / "mlflow"
    command = [
        str(executable) if executable.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri or f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        # Request metrics on /metrics of the same port, scraped by monitoring/prometheus/prometheus.yml.
        "--expose-prometheus",
        str(root / "prometheus"),
        *(["--app-name", app_name] if app_name else []),
    ]
    env = {**os.environ, **(environment or {})}
    # `mlflow server` starts uvicorn by name: the interpreter's bin folder must be on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # MLflow 3's server job runner (GenAI evaluation jobs, trace roll-ups: nothing this project uses) would start six
    # huey consumer processes, each importing the whole of mlflow (~260 MB resident and seconds of CPU apiece).
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    log = (root / "server.log").open("ab")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=root)


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_healthy(url):
            return
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise RuntimeError(f"MLflow server exited with code {process.returncode}; log {log_path}:\n{tail}")
        time.sleep(0.25)
    raise RuntimeError(f"MLflow server at {url} not healthy after {timeout:.0f} s; see {log_path}")


def stop_recorded(pid_file: Path, name: str) -> None:
    """Stop the process group whose leader `pid_file` records (a server started in a session of its own by one of
    these scripts) if that process still runs (scripts/pidfile.py: a stale file signals nothing), say what was done
    and remove the file; nothing to do when there is no such file."""
    if pid_file.exists():
        print(pidfile.stop(pid_file, name, group=True, timeout=10.0))


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    stop_group(process.pid, timeout, process)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _start_command(root: Path, port: int) -> int:
    url = f"http://{HOST}:{port}"
    if is_healthy(url):
        print(f"MLflow tracking server already running at {url}")
        return 0
    process = start(root, port)
    pidfile.record(root / "server.pid", process.pid)
    try:
        wait_until_healthy(url, process, root / "server.log")
    except RuntimeError as error:
        stop(process)
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"MLflow tracking server started at {url} (pid {process.pid}, state in {root})")
    return 0


def _stop_command(root: Path) -> int:
    print(pidfile.stop(root / "server.pid", "MLflow tracking server", group=True, timeout=10.0))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--root", type=Path, default=Path(".mlflow"), help="folder for mlflow.db and artifacts/")
    parser.add_argument("--port", type=int, default=5000)
    arguments = parser.parse_args()
    arguments.root.mkdir(parents=True, exist_ok=True)
    if arguments.action == "start":
        return _start_command(arguments.root.resolve(), arguments.port)
    return _stop_command(arguments.root.resolve())


if __name__ == "__main__":
    sys.exit(main())
