"""In-process latency of explanations: the gateway's own app (Flask test client, real Redis, the registered version)
answering one row with and without reason codes, and the explainer alone.

    .venv/bin/python scripts/bench_explain.py --tracking-uri http://127.0.0.1:5000 --redis-url redis://127.0.0.1:6379/0

Interleaved: each repeat sends the same row to every path in turn, so a slow moment of the machine hits all alike.
Prints a Markdown table of p50 / p99 / mean in milliseconds (docs/credit_risk.md records one). `make bench-explain`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.gateway_process import in_process_gateway  # noqa: E402
from serving.service import gateway_of  # noqa: E402

ROW = {"values": [9, "rent", 60, 30, "married", "no", "freelance", 73, 129.0, 0.0, 0.0, 800, 846]}


def measure(arguments: argparse.Namespace) -> dict[str, list[float]]:
    with in_process_gateway(arguments.tracking_uri, arguments.model, arguments.redis_url) as (app, _):
        client = app.test_client()
        production = gateway_of(app).store.served().get("production")
        if production is None or production.explainer is None:
            raise SystemExit(f"{arguments.model}: no production version with an explanation reference")
        parsed = production.parser.parse([ROW], None)
        batch = {"batch": [ROW]}
        paths = {
            "/predict (no explanation)": lambda: client.post("/predict", json=batch),
            "/predict with explain=true": lambda: client.post("/predict", json={**batch, "explain": True}),
            "/explain": lambda: client.post("/explain", json=batch),
            "explainer alone (one ORT call)": lambda: production.explainer.explain(parsed.inputs, 3),  # type: ignore[union-attr]
            "model.predict alone": lambda: production.predict(parsed.inputs),
        }
        for call in paths.values():  # warm-up
            for _ in range(200):
                call()
        timings: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(arguments.repeats):
            for name, call in paths.items():
                started = time.perf_counter()
                answer = call()
                timings[name].append((time.perf_counter() - started) * 1000)
                status = getattr(answer, "status_code", 200)
                if status != 200:
                    raise SystemExit(f"{name}: HTTP {status}")
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="http://127.0.0.1:5000")
    parser.add_argument("--model", default="credit-scoring")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--repeats", type=int, default=3000)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    timings = measure(arguments)
    lines = ["| path (one row, in-process) | p50 ms | p99 ms | mean ms |", "| --- | --- | --- | --- |"]
    for name, values in timings.items():
        p50, p99 = np.percentile(values, [50, 99])
        lines.append(f"| {name} | {p50:.3f} | {p99:.3f} | {np.mean(values):.3f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
