"""Every file in airflow/dags imports without errors, defines the expected DAGs (tasks, schedules, Params, retries,
timeouts, max_active_runs), and does no database or network work and no heavy import when it is parsed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.conftest import AIRFLOW_ENV, DAGS_FOLDER, REPO_ROOT, load_dag

EXPECTED_DAGS = {
    "credit_retrain": ["prepare", "train", "convert", "quantize", "benchmark", "register"],
    "credit_promote": ["evaluate_gate", "route", "approval", "no_approval_required", "promote", "record_answer"],
    "credit_drift": ["measure", "drift_found", "alert_retraining"],
    "credit_portfolio_score": ["score", "publish"],
}
# Exact retries per task: 2 for what talks to MLflow or Redis, 0 for decisions and records written once.
RETRIES = {
    "credit_retrain": dict.fromkeys(EXPECTED_DAGS["credit_retrain"], 2),
    "credit_promote": {
        "evaluate_gate": 2, "route": 0, "approval": 0, "no_approval_required": 2, "promote": 2, "record_answer": 0,
    },
    "credit_drift": {"measure": 2, "drift_found": 0, "alert_retraining": 2},
    "credit_portfolio_score": {"score": 2, "publish": 2},
}  # fmt: skip
HEAVY_MODULES = [
    "mlflow", "sklearn", "pandas", "pyarrow", "onnxruntime", "evidently", "redis",
    "steps", "registry", "monitoring", "portfolio",
]  # fmt: skip


def test_every_dag_file_imports_without_errors(dag_bag: Any) -> None:
    assert dag_bag.import_errors == {}
    assert sorted(dag_bag.dag_ids) == sorted(EXPECTED_DAGS)
    assert sorted(path.name for path in DAGS_FOLDER.glob("*.py")) == sorted(f"{d}.py" for d in EXPECTED_DAGS)
    assert not (DAGS_FOLDER.parent / "__init__.py").exists()  # airflow/ is not a Python package


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_tasks_and_run_policy(dag_bag: Any, dag_id: str) -> None:
    dag = load_dag(dag_bag, dag_id)
    assert sorted(dag.task_ids) == sorted(EXPECTED_DAGS[dag_id])
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert {task.task_id: task.retries for task in dag.tasks} == RETRIES[dag_id]
    for task in dag.tasks:
        if RETRIES[dag_id][task.task_id] == 0 or task.task_id == "no_approval_required":
            continue
        assert task.retry_exponential_backoff, task.task_id
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(minutes=30), task.task_id


@pytest.mark.parametrize("dag_id", ["credit_retrain", "credit_drift", "credit_portfolio_score"])
def test_every_attempt_of_every_task_fits_in_the_dag_run_timeout(dag_bag: Any, dag_id: str) -> None:
    """The worst case: each task uses its whole execution_timeout on every attempt, after the longest retry delays."""
    dag = load_dag(dag_bag, dag_id)
    worst = timedelta()
    for task in dag.tasks:
        worst += task.execution_timeout * (task.retries + 1)
        worst += sum((min(task.retry_delay * 2**n, task.max_retry_delay) for n in range(task.retries)), timedelta())
    assert worst <= dag.dagrun_timeout, (worst, dag.dagrun_timeout)


def test_retrain_is_weekly_or_on_drift_and_emits_the_staging_asset(dag_bag: Any) -> None:
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    dag = load_dag(dag_bag, "credit_retrain")
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert [asset.name for asset in dag.timetable.asset_condition.objects] == ["credit_drift_alert"]
    assert isinstance(dag.timetable.timetable, CronTriggerTimetable)
    assert (dag.timetable.timetable.expression, str(dag.timetable.timetable.timezone)) == ("0 3 * * 1", "UTC")
    assert [asset.name for asset in dag.get_task("register").outlets] == ["credit_staging_version"]
    assert set(dag.params) == {
        "data_path", "target", "positive_label", "registered_model", "experiment_name", "candidate", "quantization",
        "seed", "hidden_layers", "alpha", "learning_rate", "batch_size", "validation_fraction", "test_fraction",
        "min_rows", "max_seconds", "max_epochs", "patience", "cv_folds", "batch_sizes", "benchmark_repeats",
        "categorical_columns", "drop_columns", "allow_schema_change", "calibration", "score_base", "score_base_odds",
        "score_pdo", "score_bands", "fairness_slices", "reason_codes",
    }  # fmt: skip
    assert dag.params["allow_schema_change"] is False and dag.params["max_epochs"] == 200
    # The DAG's defaults are RetrainParams' (written twice: the DAG file imports nothing of the project's packages).
    from orchestration.retrain import RetrainParams

    assert dict(dag.params) == RetrainParams().model_dump()


def test_promote_is_daily_or_on_a_new_staging_version_with_a_sign_off(dag_bag: Any) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.sdk import AssetOrTimeSchedule

    from orchestration.promotion import APPROVE, REJECT

    dag = load_dag(dag_bag, "credit_promote")
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert [asset.name for asset in dag.timetable.asset_condition.objects] == ["credit_staging_version"]
    assert dag.timetable.timetable.expression == "0 6 * * *"
    assert dag.params["require_approval"] is True and dag.params["mirror_stages"] is True
    assert "force" not in dag.params  # a forced promotion stays a CLI act, with a reason
    approval = dag.get_task("approval")
    assert isinstance(approval, ApprovalOperator) and approval.retries == 0
    assert approval.response_timeout == timedelta(days=3)
    assert dag.get_task("promote").upstream_task_ids == {"approval", "no_approval_required"}
    assert dag.get_task("record_answer").upstream_task_ids == {"promote"}
    assert dag.get_task("record_answer").trigger_rule == "all_done"  # also after a time-out fails the approval
    assert dag.params["propose_parked"] is False  # a parked version is proposed again only when asked
    assert (APPROVE, REJECT) == (ApprovalOperator.APPROVE, ApprovalOperator.REJECT)  # what the tasks check against


def test_drift_is_hourly_over_its_data_interval_and_alerts_through_an_asset(dag_bag: Any) -> None:
    from airflow.sdk import CronDataIntervalTimetable

    dag = load_dag(dag_bag, "credit_drift")
    assert isinstance(dag.timetable, CronDataIntervalTimetable) and dag.timetable.expression == "0 * * * *"
    assert [asset.name for asset in dag.get_task("alert_retraining").outlets] == ["credit_drift_alert"]
    assert dag.get_task("alert_retraining").upstream_task_ids == {"measure", "drift_found"}
    assert dict(dag.params) == {"registered_model": "", "window_start": "", "window_end": ""}


def test_portfolio_is_monthly_for_the_month_just_closed_and_announces_its_scores(dag_bag: Any) -> None:
    import pendulum
    from airflow.sdk import CronDataIntervalTimetable
    from airflow.serialization.encoders import coerce_to_core_timetable

    from orchestration.portfolio import PortfolioParams, month_of

    dag = load_dag(dag_bag, "credit_portfolio_score")
    assert isinstance(dag.timetable, CronDataIntervalTimetable) and dag.timetable.expression == "0 4 2 * *"
    assert str(dag.timetable.timezone) == "UTC"
    # The run on 2026-12-02 04:00 UTC covers November: its folder is 2026-11.
    interval = coerce_to_core_timetable(dag.timetable).infer_manual_data_interval(
        run_after=pendulum.datetime(2026, 12, 2, 4, tz="UTC")
    )
    assert (interval.start, interval.end) == (
        pendulum.datetime(2026, 11, 2, 4, tz="UTC"), pendulum.datetime(2026, 12, 2, 4, tz="UTC"),
    )  # fmt: skip
    assert month_of(interval.start) == "2026-11"
    # 20 M rows took 21 s here (docs/benchmarks.md): 30 minutes per attempt leave a wide margin, and no more.
    assert dag.get_task("score").execution_timeout == timedelta(minutes=30)
    assert dag.get_task("publish").execution_timeout == timedelta(minutes=2)
    publish = dag.get_task("publish")
    assert [asset.name for asset in publish.outlets] == ["credit_portfolio_scores"]
    assert [asset.name for asset in publish.inlets] == ["credit_portfolio_scores"]  # reads the earlier events
    assert publish.upstream_task_ids == {"score"}
    # The DAG's defaults are PortfolioParams' (written twice: the DAG file imports nothing of the project's packages).
    assert dict(dag.params) == PortfolioParams().model_dump()
    assert dag.params["version"] == "production" and dag.params["id_columns"] == "account_id"
    assert set(dag.tags) == {"credit-scoring", "portfolio"} and dag.doc_md


PROBE = """
import json, runpy, socket, sys
attempts = []
def refuse(self, address, *args):
    attempts.append(str(address))
    raise OSError("no network at DAG parse time")
socket.socket.connect = refuse
heavy = json.loads(sys.argv[1])
found = {}
for path in sys.argv[2:]:
    runpy.run_path(path)
    found[path.rsplit("/", 1)[-1]] = {
        "connections": list(attempts), "heavy": sorted(name for name in heavy if name in sys.modules)
    }
print(json.dumps(found))
"""


def test_parsing_the_dag_files_does_no_database_network_or_heavy_work(tmp_path: Path) -> None:
    """Each file parsed in a fresh process (one after the other) with sockets refused and an empty AIRFLOW_HOME."""
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {
        **AIRFLOW_ENV,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # a server that does not exist: nothing may call it
    }
    files = [str(DAGS_FOLDER / f"{dag_id}.py") for dag_id in sorted(EXPECTED_DAGS)]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY_MODULES), *files],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {f"{dag_id}.py": {"connections": [], "heavy": []} for dag_id in sorted(EXPECTED_DAGS)}
    assert not (home / "airflow.db").exists()  # no metadata database touched, not even created
