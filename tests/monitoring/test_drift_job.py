"""The drift job end to end: a real gateway fills a real Redis stream, the job reports to a real MLflow
server; undrifted traffic is not flagged, shifted income and a new category are, versions are reported apart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from evidently.core.report import Snapshot
from mlflow.tracking import MlflowClient

from monitoring.errors import MonitoringInputError
from monitoring.job import run_drift
from monitoring.publish import REPORT_ARTIFACT, RESULTS_ARTIFACT, SNAPSHOT_ARTIFACT, SUMMARY_ARTIFACT
from monitoring.settings import MonitoringSettings
from monitoring.window import WindowSpec
from scripts.tracking_server import free_port
from tests.monitoring.conftest import GatewayProcess, send, wait_for_stream_rows

pytestmark = pytest.mark.integration


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    """Income halved and a third of the applicants with a housing category the model never saw."""
    copy = frame.copy()
    copy["Income"] = copy["Income"] / 2
    copy.loc[copy.index[: len(copy) // 3], "Home"] = "caravan"
    return copy


@pytest.fixture
def settings(gateway_process: GatewayProcess, tmp_path: Path) -> MonitoringSettings:
    gateway_process.redis().delete("credit-scoring:predictions")  # each test sends its own traffic
    return MonitoringSettings(
        tracking_uri=gateway_process.tracking_uri,
        model_name=gateway_process.model_name,
        redis_url=gateway_process.redis_url,
        experiment_name=f"monitoring-{tmp_path.name}",
        model_cache_dir=tmp_path / "models",
        min_rows=300,
    )


@pytest.fixture(scope="module")
def applicants(credit_frame: pd.DataFrame) -> pd.DataFrame:
    return credit_frame.drop(columns=["Status"]).sample(n=1500, random_state=11).reset_index(drop=True)


def test_undrifted_traffic_of_two_versions_is_reported_per_version_and_not_flagged(
    gateway_process: GatewayProcess, settings: MonitoringSettings, applicants: pd.DataFrame
) -> None:
    sent = send(gateway_process.url, applicants.iloc[:1100])  # production (A): version 1
    sent += send(gateway_process.url, applicants.iloc[1100:], "predict_ab", variant="B")  # staging: version 2
    wait_for_stream_rows(gateway_process.redis(), sent)

    outcomes = run_drift(settings, WindowSpec())
    assert [(o.version, o.rows, o.reported) for o in outcomes] == [("1", 1100, True), ("2", 400, True)]
    client = MlflowClient(settings.tracking_uri)
    for outcome in outcomes:
        assert outcome.summary is not None and outcome.run_id is not None
        assert outcome.summary["verdict"] != "act", outcome.summary
        assert float(outcome.summary["psi_max"]) < settings.psi_act and float(outcome.summary["drift_share"]) < 0.5
        run = client.get_run(outcome.run_id)
        assert run.info.status == "FINISHED"
        tags = run.data.tags
        assert (tags["model"], tags["version"], tags["rows"]) == (
            settings.model_name,
            outcome.version,
            str(outcome.rows),
        )
        assert tags["window_start"] <= tags["window_end"] and tags["window_end"].startswith("20")
        assert tags["prepare_run_id"] and tags["verdict"] == outcome.summary["verdict"]
        assert run.data.metrics["psi.Income"] == pytest.approx(float(outcome.summary["psi.Income"]))
        assert run.data.metrics["drift_share"] == pytest.approx(float(outcome.summary["drift_share"]))
        assert run.data.params["sample_seed"] == "42" and run.data.params["sample_size"] == "50000"
        artifacts = {item.path for item in client.list_artifacts(outcome.run_id, "drift")}
        assert artifacts == {REPORT_ARTIFACT, SNAPSHOT_ARTIFACT, RESULTS_ARTIFACT, SUMMARY_ARTIFACT}
    folder = Path(mlflow.artifacts.download_artifacts(run_id=outcomes[0].run_id, artifact_path="drift"))
    assert (folder / "report.html").stat().st_size > 100_000 and "credit PSI" in (folder / "report.html").read_text()
    results = json.loads((folder / "results.json").read_text())
    assert any(m["config"].get("method") == "credit_psi" for m in results["metrics"])
    reopened = Snapshot.loads((folder / "snapshot.json").read_text())  # Evidently's own snapshot, not a dump of it
    assert "credit PSI" in reopened.get_html_str(as_iframe=False)
    assert json.loads((folder / "summary.json").read_text()) == outcomes[0].summary


def test_shifted_income_and_a_new_category_are_flagged(
    gateway_process: GatewayProcess, settings: MonitoringSettings, applicants: pd.DataFrame
) -> None:
    wait_for_stream_rows(gateway_process.redis(), send(gateway_process.url, shifted(applicants.iloc[:900])))
    (outcome,) = run_drift(settings, WindowSpec(last_rows=900))
    assert outcome.summary is not None and outcome.summary["verdict"] == "act"
    assert float(outcome.summary["psi.Income"]) > 0.25 and float(outcome.summary["psi.Home"]) > 0.25
    assert {"Income", "Home"} <= set(outcome.summary["drifted_feature_names"])


def test_a_window_too_small_is_skipped_and_logs_nothing(
    gateway_process: GatewayProcess, settings: MonitoringSettings, applicants: pd.DataFrame
) -> None:
    wait_for_stream_rows(gateway_process.redis(), send(gateway_process.url, applicants.iloc[:50]))
    (outcome,) = run_drift(settings, WindowSpec())
    assert not outcome.reported and outcome.run_id is None
    assert outcome.message == (
        f"skipped: {settings.model_name} version 1 has 50 row(s) in the window (stream credit-scoring:predictions), "
        f"at least 300 are needed (MONITORING_MIN_ROWS)"
    )
    assert MlflowClient(settings.tracking_uri).get_experiment_by_name(settings.experiment_name) is None


def test_a_failing_push_ends_the_run_failed(
    gateway_process: GatewayProcess, settings: MonitoringSettings, applicants: pd.DataFrame
) -> None:
    wait_for_stream_rows(gateway_process.redis(), send(gateway_process.url, applicants.iloc[:400]))
    unreachable = settings.model_copy(update={"pushgateway_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(OSError):
        run_drift(unreachable, WindowSpec())
    client = MlflowClient(settings.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(settings.experiment_name).experiment_id])
    assert run.info.status == "FAILED" and "URLError" in run.data.tags["failure_reason"]


def test_the_same_window_again_is_not_reported_twice_and_a_failed_push_is_retried(
    gateway_process: GatewayProcess, settings: MonitoringSettings, applicants: pd.DataFrame
) -> None:
    wait_for_stream_rows(gateway_process.redis(), send(gateway_process.url, applicants.iloc[:400]))
    newest = gateway_process.redis().xrevrange("credit-scoring:predictions", count=1)[0][0].decode()
    interval = WindowSpec(start=0.0, end=int(newest.split("-")[0]) / 1000 + 1)  # a fixed interval, as a DAG run has
    unreachable = settings.model_copy(update={"pushgateway_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(OSError):
        run_drift(unreachable, interval)  # the push fails: the run is FAILED, the window not yet reported
    (first,) = run_drift(settings, interval)  # the retry reports it
    (again,) = run_drift(settings, interval)  # and a re-run finds that report
    assert first.reported and again.reported and again.run_id == first.run_id
    assert again.summary == first.summary and "reported before" in again.message
    client = MlflowClient(settings.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(settings.experiment_name).experiment_id])
    assert sorted(run.info.status for run in runs) == ["FAILED", "FINISHED"]


def test_a_file_whose_columns_do_not_match_is_an_error_naming_them(
    settings: MonitoringSettings, applicants: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "renamed.csv"
    applicants.rename(columns={"Income": "income_eur"}).drop(columns=["Debt"]).to_csv(path, index=False)
    with pytest.raises(MonitoringInputError) as error:
        run_drift(settings, data_file=path)
    assert str(error.value) == (
        f"file {path} does not match {settings.model_name} version 1's schema: missing column(s) Income, Debt; "
        "unexpected column(s) income_eur"
    )


def test_the_command_line_on_a_shifted_file_and_on_a_mistake(
    settings: MonitoringSettings, applicants: pd.DataFrame, tmp_path: Path
) -> None:
    good, bad = tmp_path / "shifted.parquet", tmp_path / "bad.csv"
    shifted(applicants).to_parquet(good)
    applicants.assign(Age="thirty").to_csv(bad, index=False)
    env = {
        "PATH": "/usr/bin:/bin",
        "MLFLOW_TRACKING_URI": str(settings.tracking_uri),
        "CREDIT_REGISTERED_MODEL_NAME": settings.model_name,
        "MONITORING_EXPERIMENT_NAME": settings.experiment_name,
        "MONITORING_MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    command = [sys.executable, "-m", "monitoring.drift"]
    result = subprocess.run([*command, "--file", str(good)], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"drift report: {settings.model_name} version 1, 1500 rows -> verdict act" in result.stdout
    assert "MLflow run: http://127.0.0.1:" in result.stdout and "/#/experiments/" in result.stdout

    result = subprocess.run([*command, "--file", str(bad)], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1:] == [
        f"error: file {bad}: column 'Age' must be numeric, found 1500 value(s) such as 'thirty'"
    ]
    assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 1
