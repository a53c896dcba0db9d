"""The DAGs' plain functions that need no server: Params checks, the tracking server from an Airflow connection,
drift windows."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from orchestration.drift import window_of
from orchestration.events import announced_version, event_extras, model_of
from orchestration.promotion import (
    approver_of,
    assigned_approvers,
    chosen_option,
    sign_off_policy,
    sign_off_problem,
    unmoved_outcome,
)
from orchestration.retrain import Registered, RetrainParams
from orchestration.settings import ApprovalPolicy, OrchestrationError, OrchestrationSettings, connection_uri
from steps.errors import UserInputError
from steps.prepare import DEFAULT_DATA_PATH
from tests.airflow.conftest import require_airflow


def test_a_bad_param_names_the_param() -> None:
    with pytest.raises(OrchestrationError) as error:
        RetrainParams.of({"quantization": "int4", "max_epochs": 0, "batch_sizes": "1 x", "test_fraction": 1.5})
    message = str(error.value)
    assert "Param batch_sizes: Value error, must be positive integers like '1 32 1024', got '1 x'" in message
    assert "Param test_fraction: Input should be less than 1" in message
    assert RetrainParams.of({"learning_rate": 0.01, "batch_size": 16}).mlp_params().learning_rate == 0.01
    assert "Param quantization: Value error, must be one of dynamic, static, got 'int4'" in message
    assert "Param max_epochs: Input should be greater than 0" in message


def test_bad_risk_params_name_the_param_and_good_ones_reach_the_train_step(tmp_path: Path) -> None:
    with pytest.raises(OrchestrationError) as error:
        RetrainParams.of(
            {"calibration": "beta", "score_bands": "A:x,B", "fairness_slices": "Age:40/30", "score_pdo": 0}
        )
    message = str(error.value)
    assert "Param calibration: Value error, must be one of auto, none, sigmoid, isotonic, got 'beta'" in message
    assert "Param score_bands: Value error, score band 'A:x': 'x' is not a number" in message
    assert "Param fairness_slices: Value error, fairness slice 'Age:40/30': band edges must increase" in message
    assert "Param score_pdo: Input should be greater than 0" in message
    risk = RetrainParams.of({"score_base": 500, "score_bands": "A:520,B", "fairness_slices": "Job"}).risk()
    assert risk.scaling.base_score == 500 and [band.name for band in risk.scaling.bands] == ["A", "B"]
    assert risk.slices == "Job" and risk.reason_codes["Records"].code == "DEL01"  # the shipped texts by default
    with pytest.raises(UserInputError, match=f"reason codes file {tmp_path / 'none.json'} does not exist"):
        RetrainParams.of({"reason_codes": str(tmp_path / "none.json")}).risk()


def test_the_data_file_is_the_param_else_credit_data_path_else_the_packages_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CREDIT_DATA_PATH", raising=False)
    assert RetrainParams.of({}).data_file() == DEFAULT_DATA_PATH  # not relative to the DAG file
    data = tmp_path / "fresh.csv"
    data.write_text("Status\nbad\n")
    monkeypatch.setenv("CREDIT_DATA_PATH", str(data))
    assert RetrainParams.of({}).data_file() == data
    params = RetrainParams.of({"data_path": "/no/such/file.csv"})  # accepted: only prepare reads the file
    with pytest.raises(OrchestrationError, match="Param data_path: no such file on this worker: /no/such/file.csv"):
        params.data_file()


@dataclass
class FakeConnection:
    """An Airflow connection's fields (airflow.sdk.Connection has the same attributes)."""

    conn_type: str | None
    host: str | None
    port: int | None = None
    schema: str | None = None


def test_the_tracking_server_comes_from_the_environment_else_from_the_airflow_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert OrchestrationSettings().resolved_tracking_uri(lambda conn_id: pytest.fail("not asked")) == (
        "http://tracking:5000"
    )
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("CREDIT_MLFLOW_CONN_ID", "mlflow_prod")
    asked: list[str] = []

    def lookup(conn_id: str) -> FakeConnection:
        asked.append(conn_id)
        return FakeConnection("https", "mlflow.internal", 443, "tracking")

    assert OrchestrationSettings().resolved_tracking_uri(lookup) == "https://mlflow.internal:443/tracking"
    assert asked == ["mlflow_prod"]
    assert connection_uri(FakeConnection("generic", "http://10.0.0.5:5000/"), "c") == "http://10.0.0.5:5000"
    with pytest.raises(OrchestrationError, match="the Airflow connection 'c' has no host"):
        connection_uri(FakeConnection("http", ""), "c")


def test_a_real_airflow_connection_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    require_airflow()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", "http://127.0.0.1:5005")
    assert OrchestrationSettings().resolved_tracking_uri() == "http://127.0.0.1:5005"


def test_drift_windows() -> None:
    spec = window_of(1000.0, 4600.0)
    assert (spec.start, spec.end) == (1000.0, 4600.0)
    spec = window_of(1000.0, 4600.0, "2026-12-01T10:00:00Z", "1796126400")
    assert (spec.start, spec.end) == (1796119200.0, 1796126400.0)
    with pytest.raises(OrchestrationError, match="Param window_start: expected Unix seconds or an ISO 8601 time"):
        window_of(0.0, 1.0, "yesterday")
    with pytest.raises(OrchestrationError, match="the drift window is empty"):
        window_of(5.0, 5.0)


def test_a_run_without_a_logical_date_takes_its_drift_window_from_the_params() -> None:
    # Airflow 3: `airflow dags trigger` without -l, or REST with "logical_date": null, gives no data interval.
    spec = window_of(None, None, "1000", "2026-12-01T10:00:00Z")
    assert (spec.start, spec.end) == (1000.0, 1796119200.0)
    with pytest.raises(OrchestrationError, match="no data interval .*give the Params window_start and window_end"):
        window_of(None, None)
    with pytest.raises(OrchestrationError, match="give the Params window_end$"):
        window_of(None, None, "1000")


def test_the_answer_of_an_approval() -> None:
    # The user id: what Airflow's assigned users and CREDIT_APPROVERS name.
    answer = {"chosen_options": ["Reject"], "responded_by_user": {"id": "risk-officer", "name": "Risk Officer"}}
    assert (chosen_option(answer), approver_of(answer)) == ("Reject", "risk-officer")
    assert (chosen_option(None), approver_of(None)) == (None, None)
    assert approver_of({"chosen_options": ["Approve"], "responded_by_user": None}) is None


def test_what_a_sign_off_that_moved_nothing_records() -> None:
    three_days = timedelta(days=3)
    rejected = {"chosen_options": ["Reject"], "responded_by_user": {"id": "ben", "name": "Ben"}}
    assert unmoved_outcome(rejected, three_days) == ("rejected", "rejected by ben", "ben")
    assert unmoved_outcome({"timed_out": True}, three_days) == ("timed out", "no answer within 3 days", "")
    assert unmoved_outcome({"refused": "nobody may answer"}, three_days) == ("refused", "nobody may answer", "")
    approved = {"chosen_options": ["Approve"], "responded_by_user": {"id": "ben", "name": "Ben"}}
    assert unmoved_outcome(approved, three_days) is None and unmoved_outcome(None, three_days) is None


def test_who_may_answer_a_sign_off() -> None:
    anyone, listed = ApprovalPolicy(approvers=""), ApprovalPolicy(approvers="ana, ben")
    assert assigned_approvers(anyone, {"ana"}) is None  # no allow-list: Airflow takes anyone's answer
    assert assigned_approvers(listed, {"ana"}) == ["ben"]  # four eyes: the requester is not assigned
    assert assigned_approvers(ApprovalPolicy(approvers="ana", four_eyes=False), {"ana"}) == ["ana"]
    with pytest.raises(OrchestrationError, match="nobody may answer this sign-off"):
        assigned_approvers(ApprovalPolicy(approvers="ana"), {"ana"})
    assert sign_off_problem(listed, "ben", {"ana"}) is None
    assert sign_off_problem(listed, None, set()) == "no approver is recorded for the sign-off"
    assert "eve is not one of the approvers" in str(sign_off_problem(listed, "eve", set()))  # a forged approver
    assert "four eyes: ana asked" in str(sign_off_problem(anyone, "ana", {"ana"}))
    assert sign_off_problem(ApprovalPolicy(four_eyes=False), "ana", {"ana"}) is None
    assert "answer is 'Reject' by ben" in str(sign_off_problem(listed, "ben", {"ana"}, "Reject"))
    # require_approval=false skips the sign-off only where neither four eyes nor an allow-list are configured.
    off = ApprovalPolicy(four_eyes=False)
    assert sign_off_policy(False, off) is None and sign_off_policy(True, off) is off
    assert (
        sign_off_policy(False, anyone) is anyone
        and sign_off_policy(False, listed.model_copy(update={"four_eyes": False})) is not None
    )


@dataclass(frozen=True)
class FakeAsset:
    name: str


@dataclass
class FakeEvent:
    extra: dict[str, object]


def test_an_asset_triggered_run_takes_the_model_and_version_from_the_events() -> None:
    events = {
        FakeAsset("credit_staging_version"): [FakeEvent({"model": "credit", "version": "3"})],
        FakeAsset("other"): [FakeEvent({"model": "elsewhere"})],
    }
    extras = event_extras(events, "credit_staging_version")
    assert extras == [{"model": "credit", "version": "3"}]
    assert model_of("", extras) == "credit" and model_of("given", extras) == "given"
    assert model_of("", event_extras(None, "credit_staging_version")) == ""  # scheduled or manual: the settings'
    assert announced_version(extras, "credit") == "3" and announced_version(extras, "other") is None
    with pytest.raises(OrchestrationError, match="events of several models \\(a, b\\)"):
        model_of("", [{"model": "a"}, {"model": "b"}])


def test_a_registration_found_again_announces_no_staging_version() -> None:
    fresh = Registered("credit", "3", "fp32", {"fp32": "3", "int8": "4"}, "bench", "prep", reused=False)
    assert fresh.staging_event() == fresh.as_extra() and fresh.as_extra()["version"] == "3"
    again = Registered("credit", "3", "fp32", {"fp32": "3", "int8": "4"}, "bench", "prep", reused=True)
    assert again.staging_event() is None


def test_importing_the_airflow_conftest_changes_no_environment() -> None:
    # The session's Airflow environment is set by pytest_configure, not as a side effect of an import.
    code = "import os, tests.airflow.conftest as c; print(c.AIRFLOW_ENV == {} and 'AIRFLOW_HOME' not in os.environ)"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr[-2000:]


def test_one_actor_format_for_a_dag_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.promotion import dag_actor
    from registry.audit import current_actor

    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "credit_promote")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__1")
    assert current_actor() == dag_actor("credit_promote", "manual__1") == "airflow credit_promote/manual__1"


def test_fail_fast_turns_a_user_mistake_into_a_failure_without_retries_and_lets_the_rest_retry() -> None:
    require_airflow()
    from airflow.sdk.exceptions import AirflowFailException

    from orchestration.failures import fail_fast

    with pytest.raises(AirflowFailException, match="Param x: bad"):
        with fail_fast():
            raise OrchestrationError("Param x: bad")
    with pytest.raises(ConnectionError):  # a flaky server: retried
        with fail_fast():
            raise ConnectionError("reset")
