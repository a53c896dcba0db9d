"""Send a few real applicants from data/credit_data.csv to a running gateway and print what it answers.

python scripts/sample_requests.py --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

DATA = Path(__file__).resolve().parent.parent / "data" / "credit_data.csv"


def applicants(count: int) -> list[dict[str, object]]:
    rows = []
    with DATA.open() as handle:
        for index, record in enumerate(csv.DictReader(handle)):
            if index >= count:
                break
            record.pop("Status")
            features: dict[str, object] = {}
            for name, text in record.items():
                if text == "":
                    features[name] = None
                else:
                    try:
                        features[name] = float(text)
                    except ValueError:
                        features[name] = text
            rows.append({"features": features, "applicant_id": f"sample-{index}"})
    return rows


def show(title: str, response: requests.Response) -> None:
    print(f"\n{title}: HTTP {response.status_code}")
    print(json.dumps(response.json(), indent=2)[:1200])


class NotReadyError(RuntimeError):
    """The gateway did not answer /ready in time, or its process exited first (with the tail of its log)."""


def wait_until_ready(
    url: str, seconds: float, process: subprocess.Popen[Any] | None = None, log_path: Path | None = None
) -> None:
    """Poll `url`/ready until it answers 200. With `process`, fail as soon as it exits; with `log_path`, the error
    carries the log's tail."""
    tail = (lambda: f": {log_path.read_text()[-3000:]}") if log_path else (lambda: "")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet, or the workers are still loading the models
        if process is not None and process.poll() is not None:
            raise NotReadyError(f"the gateway at {url} exited with {process.returncode}{tail()}")
        time.sleep(0.25)
    raise NotReadyError(f"the gateway at {url} is not ready after {seconds:.0f} s{tail()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--wait", type=float, default=0, help="first wait up to this many seconds for /ready")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("GATEWAY_API_KEY"),
        help="one of the gateway's SERVING_API_KEYS, when it has any (compose, Kubernetes) [env GATEWAY_API_KEY]",
    )
    arguments = parser.parse_args()
    if arguments.wait:
        try:
            wait_until_ready(arguments.url, arguments.wait)
        except NotReadyError as error:
            raise SystemExit(f"error: {error}") from None
    batch = {"batch": applicants(3)}
    session = requests.Session()
    if arguments.api_key:
        session.headers["X-API-Key"] = arguments.api_key
    show("POST /predict (3 applicants)", session.post(f"{arguments.url}/predict", json=batch, timeout=10))
    session.post(f"{arguments.url}/predict_cached", json=batch, timeout=10)
    show("POST /predict_cached (second call)", session.post(f"{arguments.url}/predict_cached", json=batch, timeout=10))
    show("POST /predict_ab", session.post(f"{arguments.url}/predict_ab", json=batch, timeout=10))
    typo = dict(batch["batch"][0]["features"], Age="thirty")
    bad = {"batch": [batch["batch"][0], {"features": typo}]}
    show("POST /predict with a bad second row", session.post(f"{arguments.url}/predict", json=bad, timeout=10))
    return 0


if __name__ == "__main__":
    sys.exit(main())
