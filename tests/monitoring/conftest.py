"""Real servers for the monitoring tests: a registered model (the shared `served`), a Redis, a
gateway writing the prediction stream, and the Prometheus/Pushgateway binaries (skipped locally when absent, a
failure under CI)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pandas as pd
import pytest
import redis
import requests

from tests.conftest import GatewayProcess, RedisProcess, Served, running_gateway

STREAM = "credit-scoring:predictions"


def require_binary(name: str) -> str:
    """The path of a Debian Prometheus binary; skip without it here, fail under CI (so CI cannot pass by skipping)."""
    found = shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed (apt-get install prometheus prometheus-pushgateway; .ci/run does it)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def gateway_process(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway (`python -m serving`, 2 workers) with its own Redis for the monitoring tests; the log flushes every
    0.1 s."""
    folder = tmp_path_factory.mktemp("monitored-gateway")
    redis_server = RedisProcess(folder)
    redis_server.start()
    try:
        with running_gateway(
            served.url, served.model_name, folder, redis_server.url, SERVING_PREDICTION_LOG_FLUSH_S="0.1"
        ) as gateway:
            yield gateway
    finally:
        redis_server.stop()


def applicant_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Rows of a frame as the gateway's `features` objects (NaN -> null)."""
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return [{"features": record} for record in records]


def send(url: str, frame: pd.DataFrame, endpoint: str = "predict", batch: int = 100, **body: object) -> int:
    """Score every row of `frame` through the gateway in batches; returns the rows answered with 200."""
    answered = 0
    with requests.Session() as session:
        rows = applicant_rows(frame)
        for start in range(0, len(rows), batch):
            payload = {"batch": rows[start : start + batch], **body}
            response = session.post(f"{url}/{endpoint}", json=payload, timeout=30)
            assert response.status_code == 200, response.text[:500]
            answered += len(rows[start : start + batch])
    return answered


def stream_rows(client: redis.Redis) -> int:
    return sum(int(fields[b"rows"]) for _, fields in client.xrange(STREAM))


def wait_for_stream_rows(client: redis.Redis, rows: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while stream_rows(client) < rows:
        assert time.monotonic() < deadline, f"the stream holds {stream_rows(client)} rows, expected {rows}"
        time.sleep(0.1)
