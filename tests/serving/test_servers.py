"""The gateway as users run it (`python -m serving`), under each server it supports (granian, the default, and
gunicorn), 2 workers, real Redis, real MLflow registry."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from registry.promotion import promote
from registry.settings import RegistrySettings
from registry.versions import STAGING_ALIAS
from scripts.gateway_process import server_workers
from scripts.tracking_server import free_port
from serving.prediction_log import rows_of
from tests.conftest import GatewayProcess, RedisProcess, Served, running_gateway

pytestmark = pytest.mark.integration

ROW = {"values": [9, "rent", 60, 30, "married", "no", "freelance", 73, 129.0, 0.0, 0.0, 800, 846]}


BODY = json.dumps({"batch": [ROW]}).encode()
HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(params=["granian", "gunicorn"])
def gateway(served: Served, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[GatewayProcess]:
    redis_server = RedisProcess(tmp_path)
    redis_server.start()
    try:
        with running_gateway(
            served.url,
            served.model_name,
            tmp_path,
            redis_server.url,
            SERVING_SERVER=request.param,
            SERVING_RELOAD_INTERVAL_S="0.5",
            SERVING_MAX_BODY_BYTES="65536",
            # Only a worker's exit flushes the prediction log within a test's time: the SIGTERM test relies on it.
            SERVING_PREDICTION_LOG_FLUSH_S="600",
        ) as running:
            yield running
    finally:
        redis_server.stop()


def test_a_promotion_under_load_is_picked_up_with_zero_failed_requests(gateway: GatewayProcess, served: Served) -> None:
    outcomes: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                response = session.post(f"{gateway.url}/predict", json={"batch": [ROW]}, timeout=10)
                with lock:
                    outcomes[str(response.status_code)] += 1
                    if response.status_code == 200:
                        versions[response.json()["model"]["version"]] += 1
            except requests.RequestException as error:
                with lock:
                    outcomes[type(error).__name__] += 1

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    settings = RegistrySettings(tracking_uri=served.url, model_name=served.model_name)
    try:
        time.sleep(1.5)
        promote("2", force=True, reason="reload under load", settings=settings)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and versions["2"] < 50:
            time.sleep(0.2)
        # Every worker now serves version 2 and no staging (it graduated): its gauges say so, the version it served
        # before is 0 (multiprocess gauges cannot be cleared), and no staging version is routable. Kept-alive sessions
        # may all sit on one worker, so the other's reload is waited for, not assumed.
        deadline = time.monotonic() + 30
        while True:
            metrics = requests.get(f"{gateway.url}/metrics", timeout=10).text
            production = production_gauges(metrics)
            settled = (
                production == {"2": {"1.0"}, "1": {"0.0"}} and metric_total(metrics, "gateway_staging_routable") == 0
            )
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert production == {"2": {"1.0"}, "1": {"0.0"}}, metrics
        assert metric_total(metrics, "gateway_staging_routable") == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        promote("1", force=True, reason="reload under load: back", settings=settings)
        from mlflow.tracking import MlflowClient

        MlflowClient(served.url).set_registered_model_alias(served.model_name, STAGING_ALIAS, "2")
    assert set(outcomes) == {"200"}, outcomes
    assert outcomes["200"] > 200
    assert versions["1"] > 0 and versions["2"] >= 50, versions


def production_gauges(metrics: str) -> dict[str, set[str]]:
    """Each production version's gateway_model_info values across the worker processes (one series per worker)."""
    values: dict[str, set[str]] = {}
    for line in metrics.splitlines():
        if line.startswith('gateway_model_info{alias="production"'):
            version = line.split('version="', 1)[1].split('"', 1)[0]
            values.setdefault(version, set()).add(line.rsplit(" ", 1)[1])
    return values


def metric_total(metrics: str, name: str, *labels: str) -> float:
    """The sum over every series of `name` (all workers) whose labels include each of `labels`."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(name + "{") and all(label in line for label in labels)
    )


def test_metrics_add_up_across_workers_and_logs_are_json(gateway: GatewayProcess) -> None:
    session = requests.Session()
    for _ in range(40):
        assert session.post(f"{gateway.url}/predict", json={"batch": [ROW, ROW]}, timeout=10).status_code == 200
    for _ in range(8):  # batches past BulkObserver's small-batch limit take the bulk bucket update
        assert session.post(f"{gateway.url}/predict", json={"batch": [ROW] * 10}, timeout=10).status_code == 200
    metrics = session.get(f"{gateway.url}/metrics", timeout=10).text
    assert metric_total(metrics, "gateway_predictions_total", 'variant="A"') == 160
    assert metric_total(metrics, "gateway_probability_of_default_count", 'variant="A"') == 160
    assert metric_total(metrics, "gateway_probability_of_default_bucket", 'variant="A"', 'le="+Inf"') == 160
    assert (
        metric_total(metrics, "flask_http_request_duration_seconds_count", 'endpoint="predict"', 'status="200"') == 48
    )
    requests_logged = [line for line in gateway.log_lines() if line.get("message") == "request"]
    predict_lines = [line for line in requests_logged if line["endpoint"] == "predict"]
    assert len(predict_lines) >= 48
    assert {"request_id", "status", "latency_ms", "rows", "version", "variant"} <= set(predict_lines[-1])


def test_a_chunked_body_over_the_limit_is_refused_with_413(gateway: GatewayProcess) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    payload = json.dumps({"batch": [ROW] * 2000}).encode()
    for start in range(0, len(payload), 8192):
        chunk = payload[start : start + 8192]
        try:
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break  # the server may answer and close before reading everything
    else:
        connection.send(b"0\r\n\r\n")
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["status"] == 413


def test_sigterm_lets_a_request_in_flight_finish(gateway: GatewayProcess) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(BODY)))
    connection.endheaders()
    connection.send(BODY[:20])  # the request has begun: the server holds its headers and part of its body
    time.sleep(2.0)  # nothing observable to wait on: a worker has taken the connection by then in practice
    gateway.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    connection.send(BODY[20:])
    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert len(json.loads(response.read())["predictions"]) == 1
    assert gateway.process.wait(timeout=30) == 0


def test_sighup_reloads_the_workers_without_a_failed_request(gateway: GatewayProcess) -> None:
    def worker_pids() -> set[int]:
        return set(server_workers(gateway.process.pid))

    before = worker_pids()
    assert len(before) == 2, before
    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    lock = threading.Lock()

    def count(outcome: str) -> None:
        with lock:
            outcomes[outcome] += 1

    def client() -> None:
        with requests.Session() as session:  # kept-alive connections, as a loan-origination system holds them
            while not stop.is_set():
                try:
                    count(
                        str(session.post(f"{gateway.url}/predict", data=BODY, headers=HEADERS, timeout=10).status_code)
                    )
                except requests.ConnectionError as error:
                    # A kept-alive connection the old worker closed as the client sent on it: no response at all, so
                    # the request never reached the app. HTTP clients resend in this case (docs/serving.md).
                    count("closed idle connection" if "Connection aborted." in str(error) else type(error).__name__)
                except requests.RequestException as error:
                    count(type(error).__name__)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        gateway.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (worker_pids().isdisjoint(before) and ready(gateway)):
            time.sleep(0.5)
        with lock:
            answered_before_the_new_workers = outcomes["200"]
        time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    after = worker_pids()
    assert len(after) == 2 and not after & before, (before, after)
    # Every request that reached a worker was answered 200; a connection is cut at most once per worker stopped.
    assert set(outcomes) <= {"200", "closed idle connection"}, outcomes
    assert outcomes["closed idle connection"] <= 2 * len(threads), outcomes
    # Load before the reload and after it: the new workers answered the same clients (counts, not a throughput).
    assert answered_before_the_new_workers > 0 and outcomes["200"] > answered_before_the_new_workers, outcomes
    assert gateway.process.poll() is None


def ready(gateway: GatewayProcess) -> bool:
    try:
        return requests.get(f"{gateway.url}/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_sigterm_shuts_down_gracefully_and_flushes_the_prediction_log(gateway: GatewayProcess) -> None:
    with requests.Session() as session:
        answers = [session.post(f"{gateway.url}/predict", json={"batch": [ROW]}, timeout=10) for _ in range(20)]
    assert [answer.status_code for answer in answers] == [200] * 20
    stream = redis.Redis.from_url(gateway.redis_url)
    assert stream.xlen("credit-scoring:predictions") == 0  # still queued in the workers (flush interval 600 s)
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(timeout=30) == 0
    entries = stream.xrange("credit-scoring:predictions")
    assert sorted(row["request_id"] for _, entry in entries for row in rows_of(entry)) == sorted(
        answer.json()["request_id"] for answer in answers
    )


@pytest.mark.parametrize("server", ["granian"])
def test_granian_keeps_a_connection_alive_across_requests(served: Served, tmp_path: Path, server: str) -> None:
    with running_gateway(served.url, served.model_name, tmp_path, "redis://127.0.0.1:1/0", SERVING_SERVER=server) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        sockets = set()
        for _ in range(5):
            connection.request("POST", "/predict", body=BODY, headers=HEADERS)
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("Connection", "").lower() != "close"
            response.read()
            sockets.add(connection.sock.getsockname())  # type: ignore[union-attr]
        assert len(sockets) == 1  # one TCP connection answered all five


def test_the_log_file_is_rotated_by_size_and_keeps_every_line_whole(served: Served, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "gateway.log"
    with running_gateway(
        served.url,
        served.model_name,
        tmp_path,
        "redis://127.0.0.1:1/0",  # no Redis: the gateway answers all the same (cache and stream off, counted)
        SERVING_LOG_FILE=str(log_file),
        SERVING_LOG_MAX_BYTES="65536",
        SERVING_LOG_BACKUPS="2",
        SERVING_PREDICTION_LOG_FLUSH_S="600",
    ) as gateway:
        with requests.Session() as session:
            for _ in range(600):  # about 400 bytes of access line each: 240 KB, more than three whole files
                assert session.post(f"{gateway.url}/predict", data=BODY, headers=HEADERS, timeout=10).ok
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(timeout=30) == 0
    files = sorted(log_file.parent.iterdir())
    assert [f.name for f in files] == ["gateway.log", "gateway.log.1", "gateway.log.2"]
    assert all(f.stat().st_size <= 65536 for f in files)
    lines = [line for f in reversed(files) for line in f.read_text().splitlines()]  # oldest file first
    records = [json.loads(line) for line in lines]  # every line whole: each parses
    assert records[-1]["message"].startswith("Granian shutdown completed")  # the last line survived the stop
    assert not (tmp_path / "gateway.log").read_text().strip()  # nothing went to the server's own stdout


API_KEY = "server-test-key-5e2a9c41d7"


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_with_api_keys_and_an_internal_metrics_address_under_each_server(
    served: Served, tmp_path: Path, server: str
) -> None:
    metrics_port = free_port()
    with running_gateway(
        served.url,
        served.model_name,
        tmp_path,
        "redis://127.0.0.1:1/0",  # no Redis: the gateway answers all the same
        SERVING_SERVER=server,
        SERVING_API_KEYS=f"old-{API_KEY},{API_KEY}",
        SERVING_METRICS_BIND=f"127.0.0.1:{metrics_port}",
    ) as gateway:
        refused = requests.post(f"{gateway.url}/predict", data=BODY, headers=HEADERS, timeout=10)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = requests.post(
            f"{gateway.url}/predict", data=BODY, headers={**HEADERS, "X-API-Key": "x" * 24}, timeout=10
        )
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert requests.get(f"{gateway.url}/health", timeout=10).status_code == 200
        # New connections: under either server they reach both workers, whose metrics the master must sum.
        for number in range(30):
            header = {"Authorization": f"Bearer {API_KEY}"} if number % 2 else {"X-API-Key": f"old-{API_KEY}"}
            answer = requests.post(f"{gateway.url}/predict", data=BODY, headers={**HEADERS, **header}, timeout=10)
            assert answer.status_code == 200, answer.text
        public = requests.get(f"{gateway.url}/metrics", timeout=10)
        assert public.status_code == 404 and public.json()["error"]["status"] == 404
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert metric_total(metrics, "gateway_predictions_total", 'variant="A"') == 30
        assert (
            metric_total(metrics, "flask_http_request_duration_seconds_count", 'endpoint="predict"', 'status="200"')
            == 30
        )
        assert metric_total(metrics, "flask_http_request_total", 'status="401"') == 2
        assert metric_total(metrics, "flask_http_request_total", 'status="404"') == 1  # the public /metrics
        # Each worker's own gauge (set once it has loaded production; /ready waited for one of them), one series per
        # worker process: the master reports both.
        assert len(server_workers(gateway.process.pid)) == 2
        deadline = time.monotonic() + 60
        while metric_total(metrics, "gateway_model_info", 'alias="production"') < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert metric_total(metrics, "gateway_model_info", 'alias="production"') == 2, metrics
        lines = gateway.log_path.read_text()
        assert API_KEY not in lines


@pytest.mark.parametrize(
    ("variables", "arguments", "said"),
    [
        ({"SERVING_SERVER": "uwsgi"}, [], "error: SERVING_SERVER: Input should be 'granian' or 'gunicorn'"),
        ({"SERVING_WORKERS": "0"}, [], "error: SERVING_WORKERS: "),
        ({"SERVING_ENVIRONMENT": "production", "SERVING_ADMIN_TOKEN": "changeme"}, [],
         "error: settings: Value error, SERVING_ADMIN_TOKEN must be set to a real secret"),  # the app's, said once
        ({"SERVING_ENVIRONMENT": "production", "SERVING_ADMIN_TOKEN": "a-real-admin-token-1234",
          "SERVING_API_KEYS": "changeme"}, [], "error: settings: Value error, SERVING_API_KEYS: every key must be"),
        ({"SERVING_BIND": "127.0.0.1:8000", "SERVING_METRICS_BIND": "0.0.0.0:8000"}, [],
         "error: settings: Value error, SERVING_METRICS_BIND must not use SERVING_BIND's port"),
        ({"SERVING_LOG_FILE": "/proc/no-such-folder/gateway.log"}, [], "error: SERVING_LOG_FILE: /proc/no-such"),
        ({}, ["--workers", "4"], "error: python -m serving takes no arguments"),
    ],
)  # fmt: skip
def test_a_mistake_in_starting_the_server_is_named_without_a_traceback(
    variables: dict[str, str], arguments: list[str], said: str
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SERVING_")} | variables
    result = subprocess.run(
        [sys.executable, "-m", "serving", *arguments], env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr


def test_help_says_how_it_is_configured() -> None:
    result = subprocess.run([sys.executable, "-m", "serving", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.startswith("usage: python -m serving")
