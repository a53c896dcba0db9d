"""The closed loop, end to end, against a real tracking server, a real Redis and a real gateway: drifted
traffic through the gateway → credit_drift flags it → credit_retrain registers a new staging version →
credit_promote (approval answered through Airflow's REST API) promotes it → the running gateway serves the new
version, with no failed request while traffic flows the whole time.

Each DAG runs under dag.test(), in the order the Asset events dictate: the test reads the event the previous DAG
emitted from the metadata database (and the run request it queued for the next DAG), then starts that DAG linked to
the event as the scheduler links it (its tasks read it from `triggering_asset_events`), with the model left to the
event. Not real: no scheduler (its latency and the hourly/daily cadence are not in the timing).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from scripts.shifted_applicants import shifted
from tests.airflow.conftest import AnswerFactory, asset_events, queued_assets, run_dag, small_training
from tests.conftest import RedisProcess, running_gateway
from tests.monitoring.conftest import applicant_rows

pytestmark = pytest.mark.integration


@dataclass
class Traffic:
    """Requests sent continuously from a thread; every answer's status and the version that scored it."""

    url: str
    rows: list[dict[str, Any]]
    statuses: dict[int, int] = field(default_factory=dict)
    versions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with requests.Session() as session:
            offset = 0
            while not self._stop.is_set():
                batch = self.rows[offset : offset + 20] or self.rows[:20]
                offset = (offset + 20) % len(self.rows)
                try:
                    response = session.post(f"{self.url}/predict", json={"batch": batch}, timeout=10)
                except requests.RequestException as error:
                    self.errors.append(repr(error))
                    continue
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    self.versions.append(str(response.json()["model"]["version"]))
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()

    @property
    def failed(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300) + len(self.errors)


class LoopGateway:
    """A Redis and gateways (`python -m serving`, 2 workers) polling the registry every second, started for a model
    by name."""

    def __init__(self, tracking_uri: str, folder: Path, running: ExitStack):
        self.tracking_uri, self.folder, self.running = tracking_uri, folder, running
        self.redis = RedisProcess(folder)

    def start(self, model_name: str) -> str:
        gateway = self.running.enter_context(
            running_gateway(
                self.tracking_uri,
                model_name,
                self.folder,
                self.redis.url,
                SERVING_RELOAD_INTERVAL_S="1",  # hot reload by polling: a promotion is served within a second or two
                SERVING_PREDICTION_LOG_FLUSH_S="0.1",
            )
        )
        return gateway.url


@pytest.fixture
def loop_gateway(mlflow_server: str, tmp_path: Path) -> Iterator[LoopGateway]:
    with ExitStack() as running:
        gateway = LoopGateway(mlflow_server, tmp_path, running)
        gateway.redis.start()
        running.callback(gateway.redis.stop)
        yield gateway


def test_drift_to_a_new_production_version_served_without_a_failed_request(
    dag_bag: Any,
    mlflow_server: str,
    small_csv: Path,
    credit_frame: pd.DataFrame,
    loop_gateway: LoopGateway,
    answer_approval: AnswerFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    name = f"credit-loop-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", loop_gateway.redis.url)
    monkeypatch.setenv("MONITORING_EXPERIMENT_NAME", f"monitoring-{name}")
    monkeypatch.setenv("MONITORING_MIN_ROWS", "300")
    monkeypatch.setenv("MONITORING_MODEL_CACHE_DIR", str(tmp_path / "drift-models"))
    # The loop without a person in it, as local development runs it (`make airflow`); four eyes: test_promote.py.
    monkeypatch.setenv("CREDIT_FOUR_EYES", "false")
    training = small_training(small_csv, name)

    # The starting point, made by the DAGs themselves: a first model through retraining and a promotion.
    _, states = run_dag(dag_bag, "credit_retrain", training)
    assert set(states.values()) == {"success"}, states
    _, states = run_dag(dag_bag, "credit_promote", {"registered_model": name, "require_approval": False})
    assert states["promote"] == "success", states
    url = loop_gateway.start(name)

    drifted = applicant_rows(shifted(credit_frame.drop(columns=["Status"]).sample(n=1200, random_state=9)))
    traffic = Traffic(url, drifted)
    sender = threading.Thread(target=traffic.run, daemon=True)
    loop_started = time.time()
    sender.start()
    try:
        while len(traffic.versions) * 20 < 600:  # enough rows in the window for a report (MONITORING_MIN_ROWS)
            assert time.time() - loop_started < 60, traffic.statuses
            time.sleep(0.2)
        old_version = traffic.versions[0]
        window = {"window_start": f"{loop_started:.3f}", "window_end": f"{time.time():.3f}"}
        time.sleep(0.5)  # the gateway's log writer flushes every 0.1 s

        queued_assets("credit_retrain", clear=True)
        drift_run, states = run_dag(dag_bag, "credit_drift", {"registered_model": name, **window})
        assert states["alert_retraining"] == "success", states
        (alert,) = asset_events("credit_drift_alert", drift_run)
        assert alert.extra["report_run_ids"] and alert.extra["model"] == name
        assert queued_assets("credit_retrain") == {"credit_drift_alert"}  # what a scheduler would start now
        flagged = time.time()

        queued_assets("credit_promote", clear=True)
        # Started as the scheduler starts it: linked to the alert, the model left to the event (Param empty); only
        # the knobs that keep the training small are given.
        as_triggered = {**training, "registered_model": "", "experiment_name": ""}
        retrain_run, states = run_dag(dag_bag, "credit_retrain", as_triggered, consumed_events=[alert])
        assert set(states.values()) == {"success"}, states
        (staged,) = asset_events("credit_staging_version", retrain_run)
        assert staged.extra["model"] == name  # taken from the alert's extra
        assert queued_assets("credit_promote") == {"credit_staging_version"}
        new_version = staged.extra["version"]
        assert new_version != old_version
        registered = time.time()

        with answer_approval("Approve") as answerer:  # default Params: the model comes from the staging event
            _, states = run_dag(dag_bag, "credit_promote", {}, consumed_events=[staged])
        assert answerer.error is None and states["promote"] == "success", states
        promoted = time.time()

        deadline = time.time() + 30
        seen = len(traffic.versions)
        while not (traffic.versions[seen:] and set(traffic.versions[-20:]) == {new_version}):
            assert time.time() < deadline, f"the gateway still serves {set(traffic.versions[-20:])}"
            time.sleep(0.2)
        serving = time.time()
    finally:
        traffic.stop()
        sender.join(15)
    assert traffic.failed == 0, (traffic.statuses, traffic.errors[:5])
    print(
        f"\nclosed loop: {serving - loop_started:.1f} s from the first drifted request to version {new_version} "
        "serving "
        f"(drift flagged after {flagged - loop_started:.1f} s, registered after {registered - loop_started:.1f} s, "
        f"promoted after {promoted - loop_started:.1f} s); {sum(traffic.statuses.values())} requests, none failed"
    )
