"""Score real applicants from data/credit_data.csv through a running gateway (traffic for the drift job).

python scripts/send_applicants.py --url http://127.0.0.1:8000 --rows 3000 --redis-url redis://127.0.0.1:6379/0
With --redis-url it waits until the prediction stream holds the rows it sent (the gateway writes them every 0.25 s).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import redis
import requests

DATA = Path(__file__).resolve().parent.parent / "data" / "credit_data.csv"
STREAM = "credit-scoring:predictions"


def applicant_batches(frame: pd.DataFrame, batch: int) -> list[list[dict[str, object]]]:
    features = frame.drop(columns=["Status"], errors="ignore")
    records = features.astype(object).where(features.notna(), None).to_dict(orient="records")
    rows = [
        {"features": record, "applicant_id": f"applicant-{index}"}
        for index, record in zip(frame.index, records, strict=True)
    ]
    return [rows[start : start + batch] for start in range(0, len(rows), batch)]


def last_entry(client: redis.Redis, stream: str) -> bytes:
    """The id of the stream's newest entry (0-0 for an empty or missing stream)."""
    newest = client.xrevrange(stream, count=1)
    return bytes(newest[0][0]) if newest else b"0-0"


def rows_after(client: redis.Redis, stream: str, entry: bytes) -> int:
    """Rows in the entries added after `entry`: unlike the stream's length, this grows even when the stream is at its
    cap and every new entry trims an old one."""
    return sum(int(fields[b"rows"]) for _, fields in client.xrange(stream, min=b"(" + entry))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--rows", type=int, default=3000, help="applicants to send (a seeded random sample)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--redis-url", default=None, help="wait until the prediction stream holds what was sent")
    parser.add_argument("--stream", default=STREAM)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("GATEWAY_API_KEY"),
        help="one of the gateway's SERVING_API_KEYS, when it has any (compose, Kubernetes) [env GATEWAY_API_KEY]",
    )
    arguments = parser.parse_args()
    data = pd.read_csv(DATA)
    # A random sample: the file's order is not random (its first and last rows differ in distribution).
    sample = data.sample(n=min(arguments.rows, len(data)), random_state=arguments.seed)
    client = redis.Redis.from_url(arguments.redis_url) if arguments.redis_url else None
    before = last_entry(client, arguments.stream) if client else b"0-0"
    sent = 0
    started = time.monotonic()
    with requests.Session() as session:
        if arguments.api_key:
            session.headers["X-API-Key"] = arguments.api_key
        for batch in applicant_batches(sample, arguments.batch):
            response = session.post(f"{arguments.url}/predict", json={"batch": batch}, timeout=30)
            if response.status_code != 200:
                print(f"error: POST /predict answered {response.status_code}: {response.text[:300]}", file=sys.stderr)
                return 1
            sent += len(batch)
    print(f"\nsent {sent} real applicants to {arguments.url}/predict in {time.monotonic() - started:.1f} s")
    if client is not None:
        deadline = time.monotonic() + 30
        while rows_after(client, arguments.stream, before) < sent:
            if time.monotonic() > deadline:
                print(f"error: the stream {arguments.stream} did not receive the {sent} rows in 30 s", file=sys.stderr)
                return 1
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
