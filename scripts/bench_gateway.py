"""HTTP benchmark: the gateway vs `mlflow models serve` (ONNX and sklearn) vs a bare Flask+ONNX app.

Every server runs 2 workers on 127.0.0.1; wrk (a separate process) drives the load. The gateway and the bare app run
under both HTTP servers the gateway supports (granian, its default, and gunicorn's sync workers), and the single-row
load is sent both ways: a new connection per request (`Connection: close`) and over kept-alive connections. Prints a
Markdown table of requests/s, rows/s, p50 and p99 (medians over rounds) and, when every server was measured, the
issue's targets checked against it; --output also writes them to a file:
    .venv/bin/python scripts/bench_gateway.py --tracking-uri http://127.0.0.1:5000 --model credit-scoring \
        --duration 10 --rounds 3 --output /tmp/benchmark.md
Needs wrk (Debian: apt-get install wrk), a model with a production version made by the pipeline (scripts/run-main.sh
makes one), and a Redis at REDIS_URL. docs/benchmarks.md records a run and how to read it."""

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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import requests
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from registry.resolve import load_version  # noqa: E402
from registry.settings import RegistrySettings  # noqa: E402
from scoring.contract import MODEL_URI_TAG, TRAIN_RUN_ID  # noqa: E402
from scripts.tracking_server import free_port, stop_group  # noqa: E402

SERVERS = ("gateway", "mlflow-onnx", "mlflow-sklearn", "bare")
HTTP_SERVERS = ("granian", "gunicorn")  # the gateway's and the bare app's; granian is the gateway's default
DEFAULT_HTTP_SERVER = "granian"
KEPT_ALIVE, NEW_CONNECTION = "kept-alive", "new connection per request"
# Each wrk thread walks the bodies from its own starting point, so that two threads never send the same body at the
# same time (the cache-miss scenario relies on every body being new).
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local threads = 0
function setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end
local counter = 0
function init(args)
  counter = thread_number * math.floor(#bodies / %(threads)d)
end
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter %% #bodies) + 1])
end
"""


# The benchmarks' gateways log to a stream of their own: the drift job's (and `make run`'s) stays untouched.
BENCH_STREAM = "credit-scoring:predictions:bench"


def applicant_rows(count: int) -> list[dict[str, object]]:
    frame = pd.read_csv(REPO / "data" / "credit_data.csv").drop(columns=["Status"])
    records = frame.sample(n=count, replace=count > len(frame), random_state=1).to_dict("records")
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in records]


def gateway_body(rows: list[dict[str, object]]) -> str:
    return json.dumps({"batch": [{"features": row} for row in rows]})


def tensor_body(rows: list[dict[str, object]], schema) -> str:
    def value(row: dict[str, object], name: str) -> object:
        raw = row[name]
        if name in schema.categorical:
            return "" if raw is None else raw
        return float("nan") if raw is None else raw

    return json.dumps({"inputs": {name: [[value(r, name)] for r in rows] for name in schema.features}})


def dataframe_body(rows: list[dict[str, object]], schema) -> str:
    data = [
        [("" if r[n] is None else r[n]) if n in schema.categorical else r[n] for n in schema.features] for r in rows
    ]
    return json.dumps({"dataframe_split": {"columns": schema.features, "data": data}})


def wrk(
    url: str,
    bodies: list[str],
    connections: int,
    duration: int,
    keep_alive: bool = False,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """One wrk run, over kept-alive connections or with a new connection per request (`Connection: close`; gunicorn's
    sync workers close after each response anyway, and uvicorn (mlflow models serve) on a kept-alive connection stalls
    ~40 ms per response (Nagle's algorithm meeting delayed ACKs): its fastest mode is the new connection). `headers`
    go with every request (an API key: scripts/bench_auth.py)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    (folder / "bodies.txt").write_text("\n".join(bodies) + "\n")
    threads = min(2, connections)
    (folder / "post.lua").write_text(LUA % {"bodies": folder / "bodies.txt", "threads": threads})
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(folder / "post.lua")]
    if not keep_alive:
        command += ["-H", "Connection: close"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    shutil.rmtree(folder, ignore_errors=True)

    def milliseconds(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        number, unit = float(match.group(1)), match.group(2)
        return number / 1000 if unit == "us" else number * 1000 if unit == "s" else number

    # Failed requests: non-2xx answers, and connections that failed or timed out (those are in no percentile).
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failed = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": milliseconds("50"),
        "p99": milliseconds("99"),
        "errors": float(failed),
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
        stop_group(process.pid, timeout=30, process=process)
        process.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--model", default="credit-scoring")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--only", nargs="+", choices=SERVERS, default=list(SERVERS), help="servers to measure (default: all)"
    )
    parser.add_argument(
        "--scenarios", nargs="+", default=None, metavar="SCENARIO",
        help='measure only these scenarios, named as in the table (e.g. "1 row, c=8" "100 rows, c=4")',
    )  # fmt: skip
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is not installed (apt-get install wrk)")

    client = MlflowClient(arguments.tracking_uri)
    production = client.get_model_version_by_alias(arguments.model, "production")
    settings = RegistrySettings(tracking_uri=arguments.tracking_uri, model_name=arguments.model)
    resolved = load_version(client, arguments.model, production.version, settings)
    schema = resolved.feature_schema
    sklearn_uri = client.get_run(production.tags[TRAIN_RUN_ID]).data.tags[MODEL_URI_TAG]
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
    plans: list[Plan] = []

    def both_ways(server_label: str, url: str, one: list[str], connections: int = 8) -> None:
        for keep_alive, mode in ((True, KEPT_ALIVE), (False, NEW_CONNECTION)):
            plans.append(Plan(server_label, f"1 row, c={connections}, {mode}", url, lambda: one, connections, 1,
                              keep_alive))  # fmt: skip

    def batches_of(server_label: str, url: str, hundred: list[str], keep_alive: bool) -> None:
        mode = KEPT_ALIVE if keep_alive else NEW_CONNECTION
        plans.append(Plan(server_label, f"100 rows, c=4, {mode}", url, lambda: hundred, 4, 100, keep_alive))

    with ExitStack() as running:
        # Every server is started first and each round measures all of them in turn: this machine's speed drifts by
        # tens of percent over minutes, and measuring one server after another would compare different machines.
        if "gateway" in arguments.only:
            for http_server in HTTP_SERVERS:
                port = free_port()
                gateway_env = {
                    **env,
                    "CREDIT_REGISTERED_MODEL_NAME": arguments.model,
                    "SERVING_SERVER": http_server,
                    "SERVING_BIND": f"127.0.0.1:{port}",
                    "SERVING_WORKERS": "2",
                    "SERVING_RELOAD_INTERVAL_S": "0",
                    "SERVING_PREDICTION_STREAM": BENCH_STREAM,
                    "PROMETHEUS_MULTIPROC_DIR": str(logs / f"metrics-{http_server}"),
                }
                ready = f"http://127.0.0.1:{port}/ready"
                log = logs / f"gateway-{http_server}.log"
                running.enter_context(server([sys.executable, "-m", "serving"], gateway_env, ready, log))
                base = f"http://127.0.0.1:{port}"
                label = f"gateway /predict_ab on {http_server} (A/B on, cache off)"
                one = [gateway_body([row]) for row in single]
                both_ways(label, f"{base}/predict_ab", one)
                hundred = [gateway_body(b) for b in batches]
                for keep_alive in (True, False) if http_server == DEFAULT_HTTP_SERVER else (False,):
                    batches_of(label, f"{base}/predict_ab", hundred, keep_alive)
                if http_server != DEFAULT_HTTP_SERVER:
                    continue
                plans.append(
                    Plan(label, f"1 row, c=1, {KEPT_ALIVE}", f"{base}/predict_ab", lambda o=one: o, 1, 1, True)
                )
                hit = [gateway_body([single[0]])]
                headers = {"Content-Type": "application/json"}
                requests.post(f"{base}/predict_cached", data=hit[0], headers=headers, timeout=5)
                unseen_rows = unseen_bodies(iter(range(int(time.time()) * 1000, 10**15)))

                cached_label = f"gateway /predict_cached on {http_server}"
                for connections in (1, 8):
                    cached = f"{base}/predict_cached"
                    plans.append(Plan(cached_label, f"1 row, c={connections}, cache hit",
                                      cached, lambda h=hit: h, connections, 1, True))  # fmt: skip
                    plans.append(Plan(cached_label, f"1 row, c={connections}, cache miss",
                                      cached, unseen_rows, connections, 1, True))  # fmt: skip

        for name, label, model_uri, make_body in (
            ("mlflow-onnx", "mlflow models serve, ONNX (inputs)", f"models:/{arguments.model}/{production.version}",
             tensor_body),
            ("mlflow-sklearn", "mlflow models serve, sklearn (dataframe_split)", sklearn_uri, dataframe_body),
        ):  # fmt: skip
            if name not in arguments.only:
                continue
            port = free_port()
            command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
            command += ["-w", "2", "-h", "127.0.0.1", "-p", str(port)]
            running.enter_context(server(command, env, f"http://127.0.0.1:{port}/ping", logs / f"{name}.log"))
            url = f"http://127.0.0.1:{port}/invocations"
            mlflow_one = [make_body([r], schema) for r in single]
            both_ways(label, url, mlflow_one)
            hundred = [make_body(b, schema) for b in batches]
            for keep_alive in (True, False) if name == "mlflow-onnx" else (False,):
                batches_of(label, url, hundred, keep_alive)
            if name == "mlflow-onnx":
                for keep_alive, mode in ((True, KEPT_ALIVE), (False, NEW_CONNECTION)):
                    plans.append(Plan(label, f"1 row, c=1, {mode}", url, lambda b=mlflow_one: b, 1, 1, keep_alive))

        if "bare" in arguments.only:
            bare_env = {**env, "BARE_ONNX_PATH": str(resolved.onnx_path), "PYTHONPATH": str(REPO)}
            bare_one = [tensor_body([r], schema) for r in single]
            for http_server in HTTP_SERVERS:
                port = free_port()
                command = bare_command(http_server, port)
                log = logs / f"bare-{http_server}.log"
                running.enter_context(server(command, bare_env, f"http://127.0.0.1:{port}/ping", log))
                url = f"http://127.0.0.1:{port}/invocations"
                label = f"bare Flask + ONNX on {http_server} (ceiling)"
                both_ways(label, url, bare_one)
                if http_server == DEFAULT_HTTP_SERVER:
                    batches_of(label, url, [tensor_body(b, schema) for b in batches], True)
                    plans.append(Plan(label, f"1 row, c=1, {KEPT_ALIVE}", url, lambda b=bare_one: b, 1, 1, True))

        if arguments.scenarios:
            unknown = set(arguments.scenarios) - {plan.scenario for plan in plans}
            if unknown:
                known = ", ".join(sorted({f'"{plan.scenario}"' for plan in plans}))
                raise SystemExit(f"error: --scenarios: no scenario {', '.join(sorted(unknown))}; these exist: {known}")
            plans = [plan for plan in plans if plan.scenario in arguments.scenarios]
        measured: list[list[dict[str, float]]] = [[] for _ in plans]
        # Within a round, one scenario is measured on every server before the next scenario: the figures the targets
        # compare (say the gateway's and the bare app's single rows at c=8) are then taken seconds apart.
        first_seen = {plan.scenario: rank for rank, plan in reversed(list(enumerate(plans)))}
        order = sorted(range(len(plans)), key=lambda k: first_seen[plans[k].scenario])
        for round_number in range(1, arguments.rounds + 1):
            for k in order:
                plan, rounds = plans[k], measured[k]
                rounds.append(wrk(plan.url, plan.bodies(), plan.connections, arguments.duration, plan.keep_alive))
                print(f"round {round_number}: {plan.server} | {plan.scenario}: {rounds[-1]}", file=sys.stderr,
                      flush=True)  # fmt: skip
    results = [summary(plan, rounds) for plan, rounds in zip(plans, measured, strict=True)]
    table = markdown(results)
    if {"gateway", "mlflow-onnx", "mlflow-sklearn", "bare"} <= set(arguments.only) and not arguments.scenarios:
        table += "\n\n" + target_check(results)
    print(table)
    if arguments.output:
        arguments.output.write_text(table + "\n")
    return 0


def unseen_bodies(novel: Iterator[int]) -> Callable[[], list[str]]:
    """Single-row bodies no earlier run has cached (Amount values from `novel`), fresh for every round: a miss must
    really miss."""
    return lambda: [gateway_body([dict(row, Amount=next(novel))]) for row in applicant_rows(50_000)]


def bare_command(http_server: str, port: int) -> list[str]:
    """The bare app (scripts/bare_onnx_app.py) under `http_server`, 2 workers, as the gateway runs under it."""
    if http_server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "2", "--blocking-threads", "1",
                "--host", "127.0.0.1", "--port", str(port), "scripts.bare_onnx_app:app"]  # fmt: skip
    return [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "scripts.bare_onnx_app:app"]


@dataclass(frozen=True)
class Plan:
    """One row of the table: a server, a scenario and how to load it."""

    server: str
    scenario: str
    url: str
    bodies: Callable[[], list[str]]
    connections: int
    rows: int  # per request
    keep_alive: bool = False


def summary(plan: Plan, rounds: list[dict[str, float]]) -> dict[str, object]:
    rps = statistics.median(r["rps"] for r in rounds)
    return {
        "server": plan.server,
        "scenario": plan.scenario,
        "req/s": round(rps),
        "rows/s": round(rps * plan.rows),
        "p50 ms": round(statistics.median(r["p50"] for r in rounds), 2),
        "p99 ms": round(statistics.median(r["p99"] for r in rounds), 2),
        "failed": int(sum(r["errors"] for r in rounds)),
    }


def target_check(results: list[dict[str, object]]) -> str:
    """The issue's targets, checked against this run's figures: the gateway on its default server over kept-alive
    connections (as its clients hold them) against the bare app on the same server the same way, and against MLflow's
    fastest connection mode."""

    def figure(server: str, scenario: str, column: str = "req/s") -> float:
        """The best figure among the rows whose server and scenario start so (MLflow: either connection mode)."""
        found = [
            float(r[column])
            for r in results
            if str(r["server"]).startswith(server) and str(r["scenario"]).startswith(scenario)
        ]
        return min(found) if column.endswith("ms") else max(found)

    gateway_label = f"gateway /predict_ab on {DEFAULT_HTTP_SERVER}"
    bare_label = f"bare Flask + ONNX on {DEFAULT_HTTP_SERVER}"
    single, batch = f"1 row, c=8, {KEPT_ALIVE}", f"100 rows, c=4, {KEPT_ALIVE}"
    cached = f"gateway /predict_cached on {DEFAULT_HTTP_SERVER}"
    gateway = figure(gateway_label, single)
    mlflow_single = figure("mlflow models serve, ONNX", "1 row, c=8")
    sklearn_single = figure("mlflow models serve, sklearn", "1 row, c=8")
    rows_ratio = figure(gateway_label, batch, "rows/s") / figure("mlflow models serve, ONNX", "100 rows, c=4", "rows/s")
    checks = [
        ("single rows, c=8: >= 85% of the bare app", 100 * gateway / figure(bare_label, single), ">=", 85, "%"),
        ("single rows, c=8: >= 2x MLflow ONNX (its fastest mode)", gateway / mlflow_single, ">=", 2, "x"),
        ("single rows, c=8: p99 <= 5 ms", figure(gateway_label, single, "p99 ms"), "<=", 5, " ms"),
        ("100-row batches: >= 8x MLflow ONNX's rows/s", rows_ratio, ">=", 8, "x"),
        ("single rows, c=8: >= 10x MLflow serving sklearn", gateway / sklearn_single, ">=", 10, "x"),
    ]
    for connections in (1, 8):
        hit = figure(cached, f"1 row, c={connections}, cache hit")
        miss = figure(cached, f"1 row, c={connections}, cache miss")
        checks.append((f"cache hit faster than miss, c={connections} (req/s ratio)", hit / miss, ">", 1, "x"))
    failed = sum(int(r.get("failed", 0)) for r in results if str(r["server"]).startswith("gateway"))
    checks.append(("gateway: no failed requests (non-2xx, socket errors, timeouts)", failed, "<=", 0, ""))
    lines = ["| target | measured | met |", "|---|---|---|"]
    for name, value, relation, bound, unit in checks:
        met = {">=": value >= bound, "<=": value <= bound, ">": value > bound}[relation]
        shown = f"{value:.2f}{unit}" if isinstance(value, float) else str(value)
        lines.append(f"| {name} | {shown} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def markdown(rows: list[dict[str, object]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[column]) for column in header) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
