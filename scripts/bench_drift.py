"""Time the drift job on full windows: fill a private Redis stream with N real applicants packed as the gateway packs
them (requests of `--rows-per-request` rows, stream entries of about `--rows-per-entry` rows: ~1,000 under load, a
few when traffic is thin), run `monitoring.job.run_drift` in a fresh process per size, print a table.

python scripts/bench_drift.py --tracking-uri http://127.0.0.1:5000 --rows 10000 50000 200000
python scripts/bench_drift.py --rows 200000 --rows-per-request 1 --rows-per-entry 3     # thin single-row traffic
Needs a registered model with a production version (`make run`); writes runs to the experiment "monitoring-benchmark".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.local_redis import redis_server_binary
from scripts.tracking_server import free_port

DATA = Path(__file__).resolve().parent.parent / "data" / "credit_data.csv"
STREAM = "bench:predictions"


def fill_stream(
    url: str,
    rows: int,
    model: str,
    version: str,
    seed: int,
    tracking_uri: str,
    rows_per_request: int = 100,
    rows_per_entry: int = 1000,
) -> None:
    """`rows` applicants drawn from the data with replacement, scored by the version as the gateway would."""
    from mlflow.tracking import MlflowClient

    from monitoring.reference import normalized_features, score
    from registry.resolve import load_version
    from registry.settings import RegistrySettings
    from serving.prediction_log import LoggedGroup, PredictionLog
    from serving.redis_gateway import CircuitBreaker, RedisGateway

    data = pd.read_csv(DATA).drop(columns=["Status"])
    sample = data.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    settings = RegistrySettings(tracking_uri=tracking_uri, model_name=model)
    resolved = load_version(MlflowClient(tracking_uri), model, version, settings)
    probabilities = score(resolved, normalized_features(sample, resolved.feature_schema, "benchmark rows")).tolist()
    client = redis.Redis.from_url(url)
    client.delete(STREAM)
    log = PredictionLog(
        RedisGateway(client, CircuitBreaker()),
        STREAM,
        max_rows=rows * 2,
        flush_interval_s=3600,
        max_pending=rows + 1,
        entry_max_rows=rows_per_entry,
    )
    now = time.time()
    groups = []
    columns_of = {name: sample[name].astype(object).where(sample[name].notna(), None).tolist() for name in sample}
    for start in range(0, rows, rows_per_request):
        end = min(start + rows_per_request, rows)
        columns = {name: values[start:end] for name, values in columns_of.items()}
        groups.append(
            LoggedGroup(
                now, f"bench-{start}", model, version, "A", columns, probabilities[start:end], [None] * (end - start)
            )
        )
    log.append(groups)
    log.flush()


def peak_rss_mb() -> float:
    """This process's peak resident set since it started. Not `ru_maxrss`: Linux keeps that across execve, so a child
    spawned by the parent (which just filled a large stream) would report the parent's peak."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(arguments: argparse.Namespace) -> int:
    from monitoring.job import run_drift
    from monitoring.settings import MonitoringSettings
    from monitoring.window import WindowSpec

    settings = MonitoringSettings(
        tracking_uri=arguments.tracking_uri,
        model_name=arguments.model,
        redis_url=arguments.redis_url,
        prediction_stream=STREAM,
        experiment_name="monitoring-benchmark",
        sample_size=arguments.sample_size,
    )
    started = time.perf_counter()
    (outcome,) = run_drift(settings, WindowSpec())
    seconds = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "rows": outcome.rows,
                "seconds": seconds,
                "peak_rss_mb": peak_mb,
                "verdict": outcome.summary["verdict"] if outcome.summary else None,
            }
        )
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--model", default="credit-scoring")
    parser.add_argument("--version", default=None, help="version to attribute the rows to [production's]")
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--sample-size", type=int, nargs="+", default=[50_000], help="one run per size and sample size")
    parser.add_argument("--rows-per-request", type=int, default=100)
    parser.add_argument("--rows-per-entry", type=int, default=1000, help="rows the gateway packs into one entry")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        arguments.sample_size = arguments.sample_size[0]
        return child(arguments)

    from mlflow.tracking import MlflowClient

    version = (
        arguments.version
        or MlflowClient(arguments.tracking_uri).get_model_version_by_alias(arguments.model, "production").version
    )
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as folder:
        command = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        server = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            for _ in range(100):
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            print(f"{'rows':>9} {'per entry':>9} {'sample':>8} {'seconds':>8} {'peak RSS MB':>12}  verdict")
            for rows in arguments.rows:
                fill_stream(url, rows, arguments.model, str(version), rows, arguments.tracking_uri,
                            arguments.rows_per_request, arguments.rows_per_entry)  # fmt: skip
                for sample_size in arguments.sample_size:
                    result = subprocess.run(
                        [sys.executable, __file__, "--child", "--tracking-uri", arguments.tracking_uri, "--model",
                         arguments.model, "--redis-url", url, "--sample-size", str(sample_size)],
                        capture_output=True, text=True, check=False,
                    )  # fmt: skip
                    if result.returncode != 0:
                        print(result.stderr[-3000:], file=sys.stderr)
                        return 1
                    figures = json.loads(result.stdout.strip().splitlines()[-1])
                    print(
                        f"{figures['rows']:>9} {arguments.rows_per_entry:>9} {min(sample_size, rows):>8} "
                        f"{figures['seconds']:>8.1f} "
                        f"{figures['peak_rss_mb']:>12.0f}  {figures['verdict']}"
                    )
        finally:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
