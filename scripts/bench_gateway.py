"""HTTP benchmark: the gateway vs `mlflow models serve` (ONNX and sklearn) vs a bare Flask+ONNX app.

Every server runs 2 workers on 127.0.0.1; wrk (a separate process) drives the load. Prints a Markdown table of
requests/s, rows/s, p50 and p99 (medians over rounds) and writes it to --output:
    .venv/bin/python scripts/bench_gateway.py --tracking-uri http://127.0.0.1:5000 --model credit-scoring \
        --duration 10 --rounds 3 --output docs/benchmarks.md
Needs wrk (Debian: apt-get install wrk), a registered model made by the pipeline, and a Redis at REDIS_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import requests
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from registry.resolve import load_version  # noqa: E402
from registry.settings import RegistrySettings  # noqa: E402
from scripts.tracking_server import free_port, stop_group  # noqa: E402

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter %% #bodies) + 1])
end
"""


def applicant_rows(count: int) -> list[dict[str, object]]:
    frame = pd.read_csv(REPO / "data" / "credit_data.csv").drop(columns=["Status"])
    records = frame.sample(n=count, replace=count > len(frame), random_state=1).to_dict("records")
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in records]


def gateway_body(rows: list[dict[str, object]]) -> str:
    return json.dumps({"batch": [{"features": row} for row in rows]})


def tensor_body(rows: list[dict[str, object]], schema) -> str:  # noqa: ANN001
    def value(row: dict[str, object], name: str) -> object:
        raw = row[name]
        if name in schema.categorical:
            return "" if raw is None else raw
        return float("nan") if raw is None else raw

    return json.dumps({"inputs": {name: [[value(r, name)] for r in rows] for name in schema.features}})


def dataframe_body(rows: list[dict[str, object]], schema) -> str:  # noqa: ANN001
    data = [
        [("" if r[n] is None else r[n]) if n in schema.categorical else r[n] for n in schema.features] for r in rows
    ]
    return json.dumps({"dataframe_split": {"columns": schema.features, "data": data}})


def wrk(url: str, bodies: list[str], connections: int, duration: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    (folder / "bodies.txt").write_text("\n".join(bodies) + "\n")
    (folder / "post.lua").write_text(LUA % {"bodies": folder / "bodies.txt"})
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(folder / "post.lua")]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    shutil.rmtree(folder, ignore_errors=True)

    def milliseconds(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        number, unit = float(match.group(1)), match.group(2)
        return number / 1000 if unit == "us" else number * 1000 if unit == "s" else number

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": milliseconds("50"),
        "p99": milliseconds("99"),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


@contextmanager
def server(command: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[None]:
    with log.open("w") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(ready_url, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None:
                raise SystemExit(f"error: {command[:4]} exited; see {log}")
            time.sleep(0.5)
        else:
            raise SystemExit(f"error: {ready_url} not ready; see {log}")
        yield
    finally:
        stop_group(process.pid, timeout=30)
        process.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--model", default="credit-scoring")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is not installed (apt-get install wrk)")

    client = MlflowClient(arguments.tracking_uri)
    production = client.get_model_version_by_alias(arguments.model, "production")
    settings = RegistrySettings(tracking_uri=arguments.tracking_uri, model_name=arguments.model)
    resolved = load_version(client, arguments.model, production.version, settings)
    schema = resolved.feature_schema
    sklearn_uri = client.get_run(production.tags["train_run_id"]).data.tags["model_uri"]
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": arguments.tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    single, batch = applicant_rows(500), applicant_rows(100 * 50)
    batches = [batch[i : i + 100] for i in range(0, len(batch), 100)]
    results: list[dict[str, object]] = []

    def measure(target: str, scenario: str, url: str, bodies: list[str], connections: int, rows: int) -> None:
        rounds = [wrk(url, bodies, connections, arguments.duration) for _ in range(arguments.rounds)]
        rps = statistics.median(r["rps"] for r in rounds)
        results.append(
            {
                "server": target,
                "scenario": scenario,
                "req/s": round(rps),
                "rows/s": round(rps * rows),
                "p50 ms": round(statistics.median(r["p50"] for r in rounds), 2),
                "p99 ms": round(statistics.median(r["p99"] for r in rounds), 2),
                "non-2xx": int(sum(r["errors"] for r in rounds)),
            }
        )
        print(results[-1], file=sys.stderr, flush=True)

    def standard(target: str, url: str, one: list[str], hundred: list[str]) -> None:
        measure(target, "1 row, c=1", url, one, 1, 1)
        measure(target, "1 row, c=8", url, one, 8, 1)
        measure(target, "100 rows, c=4", url, hundred, 4, 100)

    port = free_port()
    gateway_env = {
        **env,
        "SERVING_MODEL_NAME": arguments.model,
        "SERVING_BIND": f"127.0.0.1:{port}",
        "SERVING_WORKERS": "2",
        "SERVING_RELOAD_INTERVAL_S": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(logs / "metrics"),
    }
    with server([sys.executable, "-m", "serving"], gateway_env, f"http://127.0.0.1:{port}/ready", logs / "gw.log"):
        base = f"http://127.0.0.1:{port}"
        one = [gateway_body([row]) for row in single]
        standard(
            "gateway /predict_ab (A/B on, cache off)", f"{base}/predict_ab", one, [gateway_body(b) for b in batches]
        )
        hit = [gateway_body([single[0]])]
        requests.post(f"{base}/predict_cached", data=hit[0], headers={"Content-Type": "application/json"}, timeout=5)
        measure("gateway /predict_cached", "1 row, c=8, cache hit", f"{base}/predict_cached", hit, 8, 1)
        unique = [gateway_body([dict(row, Amount=1000 + i)]) for i, row in enumerate(applicant_rows(200_000))]
        measure("gateway /predict_cached", "1 row, c=8, cache miss", f"{base}/predict_cached", unique, 8, 1)

    for target, model_uri, make_body in (
        ("mlflow models serve, ONNX (inputs)", f"models:/{arguments.model}/{production.version}", tensor_body),
        ("mlflow models serve, sklearn (dataframe_split)", sklearn_uri, dataframe_body),
    ):
        port = free_port()
        command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
        command += ["-w", "2", "-h", "127.0.0.1", "-p", str(port)]
        with server(command, env, f"http://127.0.0.1:{port}/ping", logs / f"mlflow-{port}.log"):
            url = f"http://127.0.0.1:{port}/invocations"
            standard(target, url, [make_body([r], schema) for r in single], [make_body(b, schema) for b in batches])

    port = free_port()
    bare_env = {**env, "BARE_ONNX_PATH": str(resolved.onnx_path), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "scripts.bare_onnx_app:app"]
    with server(command, bare_env, f"http://127.0.0.1:{port}/ping", logs / "bare.log"):
        url = f"http://127.0.0.1:{port}/invocations"
        standard("bare Flask + ONNX (ceiling)", url, [tensor_body([r], schema) for r in single],
                 [tensor_body(b, schema) for b in batches])  # fmt: skip
    table = markdown(results)
    print(table)
    if arguments.output:
        arguments.output.write_text(table + "\n")
    return 0


def markdown(rows: list[dict[str, object]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[column]) for column in header) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
