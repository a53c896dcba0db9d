"""Resident memory of real gateway workers, one Python environment after another, and each environment's size.

For every `--python` given (default: .venv, the full environment, and .venv-serving, the gateway's own), starts the
gateway with that interpreter (`python -m serving`: granian, 2 workers, the project on PYTHONPATH; `--source`
runs another checkout's code) against a tracking server holding a model with a production version, sends it
requests, then reads each worker's RSS and PSS from /proc, which of the training stack's native libraries are mapped
into it, and the environment's installed size:
    .venv/bin/python scripts/gateway_memory.py --tracking-uri http://127.0.0.1:5000 --model credit-scoring \
        --redis-url redis://127.0.0.1:6379/0
Prints a Markdown table (docs/deployment.md records one). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.gateway_process import running_gateway, server_workers  # noqa: E402

# Packages whose native code in a worker means the training stack came along (their .so files are mapped).
HEAVY = ("pandas", "sklearn", "scipy", "matplotlib", "pyarrow")
ROW = {"values": [9, "rent", 60, 30, "married", "no", "freelance", 73, 129.0, 0.0, 0.0, 800, 846]}


@dataclass(frozen=True)
class Measured:
    python: str
    site_packages_mb: float
    distributions: int
    worker_rss_mb: list[float]
    worker_pss_mb: list[float]
    heavy_mapped: list[str]


def site_packages(python: str) -> Path:
    out = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def installed_size(folder: Path) -> tuple[float, int]:
    """Megabytes of every file under `folder` (symlinks not followed) and the number of installed distributions."""
    total = sum(path.lstat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())
    return total / 1e6, len(list(folder.glob("*.dist-info")))


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MB: PSS counts shared pages by share, the fairer figure for forked workers."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value)
    return fields["Rss"] / 1024, fields["Pss"] / 1024


def heavy_libraries(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in HEAVY if f"/site-packages/{name}/" in maps]


def measure(python: str, args: argparse.Namespace) -> Measured:
    folder = Path(tempfile.mkdtemp(prefix="gateway-memory-"))
    with running_gateway(
        args.tracking_uri, args.model, folder, args.redis_url, python=python, source=args.source, ready_within_s=120
    ) as gateway:
        with requests.Session() as session:
            for _ in range(args.requests):
                session.post(f"{gateway.url}/predict", json={"batch": [ROW] * 10}, timeout=10).raise_for_status()
        time.sleep(1.0)  # let both workers settle (each served some of the requests)
        workers = server_workers(gateway.process.pid)
        figures = [memory_mb(pid) for pid in workers]
        mapped = sorted({name for pid in workers for name in heavy_libraries(pid)})
    size, distributions = installed_size(site_packages(python))
    return Measured(
        python, size, distributions, [rss for rss, _ in figures], [pss for _, pss in figures], mapped or ["none"]
    )


def table(results: list[Measured]) -> str:
    lines = [
        "| environment | installed (site-packages) | distributions | worker RSS | worker PSS "
        "| training-stack libraries mapped |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in results:
        rss = " / ".join(f"{value:.0f} MB" for value in m.worker_rss_mb)
        pss = " / ".join(f"{value:.0f} MB" for value in m.worker_pss_mb)
        lines.append(
            f"| `{m.python}` | {m.site_packages_mb:.0f} MB | {m.distributions} | {rss} | {pss} | "
            f"{', '.join(m.heavy_mapped)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--model", default=os.environ.get("CREDIT_REGISTERED_MODEL_NAME", "credit-scoring"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--python", action="append", help="interpreter of an environment (repeatable)")
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO,
        help="the project's code to run (default: this checkout; e.g. `git archive` of an older commit, to compare)",
    )
    parser.add_argument("--requests", type=int, default=200, help="10-row /predict requests before measuring")
    args = parser.parse_args()
    # Absolute but not resolved: a venv's python is a symlink, and only its own path makes it that venv's.
    pythons = [os.path.abspath(p) for p in args.python or [".venv/bin/python", ".venv-serving/bin/python"]]
    results = [measure(python, args) for python in pythons]
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
