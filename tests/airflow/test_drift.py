"""credit_drift under dag.test() on a real gateway's prediction stream: shifted traffic emits the Asset event that
starts credit_retrain (with the reason and the report run), undrifted traffic does not, and a re-run over the same
window logs no second report and starts no second retraining."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from scripts.shifted_applicants import shifted
from tests.airflow.conftest import asset_events, run_dag
from tests.monitoring.conftest import GatewayProcess, send, wait_for_stream_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def monitored(gateway_process: GatewayProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> GatewayProcess:
    """The drift job's environment for the monitored gateway (what `make airflow` exports), an experiment per test."""
    gateway_process.redis().delete("credit-scoring:predictions")
    monkeypatch.setenv("REDIS_URL", gateway_process.redis_url)
    monkeypatch.setenv("MONITORING_EXPERIMENT_NAME", f"monitoring-airflow-{tmp_path.name}")
    monkeypatch.setenv("MONITORING_MIN_ROWS", "300")
    monkeypatch.setenv("MONITORING_MODEL_CACHE_DIR", str(tmp_path / "models"))
    return gateway_process


def traffic_window(gateway: GatewayProcess, frame: pd.DataFrame) -> dict[str, str]:
    """Send `frame` through the gateway; the Params of a drift run over exactly that traffic."""
    start = time.time()
    wait_for_stream_rows(gateway.redis(), send(gateway.url, frame))
    return {"window_start": f"{start:.3f}", "window_end": f"{time.time() + 0.5:.3f}"}


def reports(client: MlflowClient, experiment_name: str) -> list[Any]:
    experiment = client.get_experiment_by_name(experiment_name)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_drifted_traffic_starts_retraining_once_and_a_rerun_logs_no_second_report(
    dag_bag: Any, monitored: GatewayProcess, credit_frame: pd.DataFrame, tmp_path: Path
) -> None:
    applicants = credit_frame.drop(columns=["Status"]).sample(n=900, random_state=5)
    conf = {"registered_model": monitored.model_name, **traffic_window(monitored, shifted(applicants))}
    run_id, states = run_dag(dag_bag, "credit_drift", conf)
    assert states == {"measure": "success", "drift_found": "success", "alert_retraining": "success"}
    (event,) = asset_events("credit_drift_alert", run_id)
    assert event.extra["reason"].startswith(f"drift: {monitored.model_name} version 1: verdict act")
    assert "PSI max" in event.extra["reason"] and "Income" in event.extra["reason"]
    client = MlflowClient(monitored.tracking_uri)
    (report,) = reports(client, f"monitoring-airflow-{tmp_path.name}")
    assert event.extra["report_run_ids"] == [report.info.run_id] and report.data.tags["verdict"] == "act"

    assert client.get_run(report.info.run_id).data.tags["retraining_requested_by"] == f"credit_drift/{run_id}"

    # The same window again: the report is found, not logged again, and it started retraining already: no event.
    again, states = run_dag(dag_bag, "credit_drift", conf)
    assert states == {"measure": "success", "drift_found": "success", "alert_retraining": "skipped"}
    assert asset_events("credit_drift_alert", again) == []
    assert len(reports(client, f"monitoring-airflow-{tmp_path.name}")) == 1


def test_undrifted_traffic_does_not_start_retraining(
    dag_bag: Any, monitored: GatewayProcess, credit_frame: pd.DataFrame, tmp_path: Path
) -> None:
    applicants = credit_frame.drop(columns=["Status"]).sample(n=900, random_state=6)
    conf = {"registered_model": monitored.model_name, **traffic_window(monitored, applicants)}
    run_id, states = run_dag(dag_bag, "credit_drift", conf)
    assert states == {"measure": "success", "drift_found": "success", "alert_retraining": "skipped"}
    assert asset_events("credit_drift_alert", run_id) == []
    (report,) = reports(MlflowClient(monitored.tracking_uri), f"monitoring-airflow-{tmp_path.name}")
    assert report.data.tags["verdict"] != "act"
