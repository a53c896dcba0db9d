"""Start and stop a local Prometheus and Pushgateway (Debian's `prometheus`, `prometheus-pushgateway`) on 127.0.0.1
with monitoring/prometheus/, scraping the gateway and tracking server of scripts/run-main.sh.

    python scripts/local_monitoring.py start --state .monitoring [--gateway 127.0.0.1:8000] [--mlflow 127.0.0.1:5000]
    python scripts/local_monitoring.py stop --state .monitoring
    python scripts/local_monitoring.py pushgateway-url     # the local Pushgateway's URL if one answers, else nothing
The tests use `write_config` and `start_process` with free ports.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

# Run as `python scripts/<name>.py` the repository root is not on the path, and the shared process helpers live there.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts import pidfile
from scripts.tracking_server import stop_recorded

HOST = "127.0.0.1"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "monitoring" / "prometheus"
INSTALL_HINT = "apt-get install prometheus prometheus-pushgateway"


def binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"error: {name} is not installed ({INSTALL_HINT})")
    return found


def write_config(
    path: Path, targets: dict[str, list[str]], scrape_interval: str | None = None, source: Path | None = None
) -> Path:
    """The repository's prometheus.yml with the targets of some jobs replaced (jobs not named are kept as they are)."""
    source = source or CONFIG_DIR / "prometheus.yml"
    config = yaml.safe_load(source.read_text())
    config["rule_files"] = [str((source.parent / rule).resolve()) for rule in config.get("rule_files", [])]
    if scrape_interval:
        config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = scrape_interval
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            labels = job["static_configs"][0].get("labels")
            job["static_configs"] = [{"targets": targets[job["job_name"]], **({"labels": labels} if labels else {})}]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_process(command: list[str], log: Path, ready_url: str, timeout: float = 30) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(ready_url):
            return process
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"{command[0]} not ready at {ready_url} after {timeout:.0f} s: {log.read_text()[-2000:]}")


def pushgateway_command(state: Path, port: int) -> list[str]:
    return [binary("prometheus-pushgateway"), f"--web.listen-address={HOST}:{port}"]


def prometheus_command(state: Path, config: Path, port: int) -> list[str]:
    return [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={state / 'prometheus-data'}",
        f"--web.listen-address={HOST}:{port}",
    ]


def start(state: Path, gateway: str, mlflow: str, prometheus_port: int, pushgateway_port: int) -> int:
    state.mkdir(parents=True, exist_ok=True)
    config = write_config(
        state / "prometheus.yml",
        {
            "credit-scoring-api": [gateway],
            "pushgateway": [f"{HOST}:{pushgateway_port}"],
            "mlflow": [mlflow],
            "prometheus": [f"{HOST}:{prometheus_port}"],
        },
    )
    services = [
        ("pushgateway", pushgateway_command(state, pushgateway_port), f"http://{HOST}:{pushgateway_port}/-/ready"),
        ("prometheus", prometheus_command(state, config, prometheus_port), f"http://{HOST}:{prometheus_port}/-/ready"),
    ]
    for name, command, ready in services:
        if answers(ready):
            print(f"{name} already answers at {ready.rsplit('/-/', 1)[0]}")
            continue
        process = start_process(command, state / f"{name}.log", ready)
        pidfile.record(state / f"{name}.pid", process.pid)
        print(f"started {name} at {ready.rsplit('/-/', 1)[0]} (log {state / f'{name}.log'})")
    print(
        f"Prometheus scrapes the gateway at {gateway} and MLflow at {mlflow}; alerts: http://{HOST}:{prometheus_port}/alerts"
    )
    return 0


def stop(state: Path) -> int:
    for name in ("prometheus", "pushgateway"):
        stop_recorded(state / f"{name}.pid", name)
    return 0


def pushgateway_url(port: int) -> str:
    """The local Pushgateway's URL if one answers there, else "" (the drift job then pushes nothing)."""
    url = f"http://{HOST}:{port}"
    return url if answers(f"{url}/-/ready") else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "pushgateway-url"])
    parser.add_argument("--state", type=Path, default=Path(".monitoring"))
    parser.add_argument("--gateway", default=f"{HOST}:{os.environ.get('SERVING_PORT', '8000')}")
    parser.add_argument("--mlflow", default=f"{HOST}:{os.environ.get('MLFLOW_PORT', '5000')}")
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--pushgateway-port", type=int, default=9091)
    arguments = parser.parse_args()
    state = arguments.state.resolve()
    if arguments.action == "start":
        return start(state, arguments.gateway, arguments.mlflow, arguments.prometheus_port, arguments.pushgateway_port)
    if arguments.action == "pushgateway-url":
        print(pushgateway_url(arguments.pushgateway_port))
        return 0
    return stop(state)


if __name__ == "__main__":
    sys.exit(main())
