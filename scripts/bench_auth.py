"""What the API key check costs: the gateway (granian, 2 workers) with SERVING_API_KEYS off and on, side by side.

Both gateways are started first and each round measures one after the other (single rows to /predict_ab, 8 kept-alive
connections, as `make bench`'s headline row): this machine's speed drifts over minutes, so the two are compared
seconds apart. Prints a Markdown table of the medians over rounds, and each round's figures on stderr:
    .venv/bin/python scripts/bench_auth.py --tracking-uri http://127.0.0.1:5000 --model credit-scoring \
        --duration 10 --rounds 5
Needs wrk, a model with a production version (scripts/run-main.sh makes one) and a Redis at REDIS_URL."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.bench_gateway import BENCH_STREAM, applicant_rows, gateway_body, wrk  # noqa: E402
from scripts.gateway_process import running_gateway  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--model", default="credit-scoring")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--keys", type=int, default=2, help="keys configured when on (a rotation has two)")
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is not installed (apt-get install wrk)")
    keys = [secrets.token_urlsafe(32) for _ in range(arguments.keys)]
    bodies = [gateway_body([row]) for row in applicant_rows(500)]
    # The last key configured: a request checked against every key either way (the comparison does not stop early).
    keys_on = {"SERVING_API_KEYS": ",".join(keys)}
    variants = {"keys off": ({}, {}), "keys on": (keys_on, {"X-API-Key": keys[-1]})}
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with ExitStack() as running:
        urls = {}
        for name, (settings, _) in variants.items():
            folder = Path(tempfile.mkdtemp(prefix=f"bench-auth-{name.replace(' ', '-')}-"))
            gateway = running.enter_context(
                running_gateway(
                    arguments.tracking_uri,
                    arguments.model,
                    folder,
                    arguments.redis_url,
                    SERVING_PREDICTION_STREAM=BENCH_STREAM,
                    **settings,
                )
            )
            urls[name] = f"{gateway.url}/predict_ab"
        for round_number in range(1, arguments.rounds + 1):
            # Alternate which goes first, so that neither always follows the other's warm-up or the machine's drift.
            order = list(variants) if round_number % 2 else list(reversed(variants))
            for name in order:
                figures = wrk(urls[name], bodies, arguments.connections, arguments.duration, True, variants[name][1])
                measured[name].append(figures)
                print(f"round {round_number}: {name}: {figures}", file=sys.stderr, flush=True)
    print(f"| gateway (granian, 2 workers), 1 row, c={arguments.connections}, kept-alive | req/s | p50 ms | p99 ms "
          "| failed |\n| --- | --- | --- | --- | --- |")  # fmt: skip
    for name, rounds in measured.items():
        rps = statistics.median(r["rps"] for r in rounds)
        p50 = statistics.median(r["p50"] for r in rounds)
        p99 = statistics.median(r["p99"] for r in rounds)
        print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {int(sum(r['errors'] for r in rounds))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
