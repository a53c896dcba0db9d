"""credit_retrain: prepare → train → convert → quantize → benchmark → register, weekly and on a drift alert.

Each task runs one pipeline step (`orchestration.retrain`) and hands the next one its MLflow run id (never a local
path), so tasks may run on different workers. `register` stages the candidate (it never promotes: that is
credit_promote's gate and sign-off) and emits an event of the Asset `credit_staging_version` with the version and
run ids. Nothing heavy is imported here: task bodies import the packages when they run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task

from orchestration.dag_policy import (
    DRIFT_ALERT_ASSET,
    RETRAIN_CRON,
    RETRAIN_DAG_ID,
    STAGING_VERSION_ASSET,
    network_retries,
)

DRIFT_ALERT = Asset(DRIFT_ALERT_ASSET)
STAGING_VERSION = Asset(STAGING_VERSION_ASSET)
T = TypeVar("T")
logger = logging.getLogger(__name__)


def _run(work: Callable[..., T]) -> T:
    """Call `work(params, task_run, settings)` for the running task; a user mistake fails it without retries."""
    from orchestration.events import event_extras, model_of
    from orchestration.failures import fail_fast
    from orchestration.retrain import RetrainParams, TaskRun, pipeline_settings

    context = get_current_context()
    ti = context["ti"]
    with fail_fast():
        params = RetrainParams.of(context["params"])
        # Started by a drift alert with the Param empty: retrain the model the alert is about.
        alerts = event_extras(context.get("triggering_asset_events"), DRIFT_ALERT_ASSET)
        model = model_of(params.registered_model, alerts)
        params = params.model_copy(update={"registered_model": model})
        return work(params, TaskRun(ti.dag_id, ti.run_id, ti.task_id), pipeline_settings(params))


@dag(
    dag_id=RETRAIN_DAG_ID,
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(RETRAIN_CRON, timezone="UTC"), assets=[DRIFT_ALERT]),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,  # a missed week is not worth training for afterwards: the next run trains on the newest data
    max_active_runs=1,  # two trainings at once would race to stage their candidates
    # Every attempt of every task may use its whole execution_timeout: 5 steps x 3 x 30 min + register 3 x 10 min +
    # the retry delays = 8 h 9 min at worst (tested); a normal run takes minutes.
    dagrun_timeout=timedelta(hours=9),
    default_args={**network_retries(), "execution_timeout": timedelta(minutes=30)},
    params={
        "data_path": Param(
            "",
            type="string",
            description="CSV file of applicants on the workers; empty: CREDIT_DATA_PATH, else the project's data file",
        ),
        "target": Param("Status", type="string"),
        "positive_label": Param("bad", type="string", description="the target value that means default"),
        "registered_model": Param("", type="string", description="empty: CREDIT_REGISTERED_MODEL_NAME"),
        "experiment_name": Param("", type="string", description="empty: the experiment named like the model"),
        "candidate": Param("auto", enum=["auto", "fp32", "int8"]),
        "quantization": Param("dynamic", enum=["dynamic", "static"]),
        "seed": Param(42, type="integer"),
        "hidden_layers": Param("128-64", type="string", description="layer sizes, e.g. 64-32"),
        "alpha": Param(0.1, type="number", minimum=0),
        "learning_rate": Param(0.001, type="number", exclusiveMinimum=0),
        "batch_size": Param(64, type="integer", minimum=1, description="the MLP's training batch"),
        "validation_fraction": Param(0.15, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
        "test_fraction": Param(0.2, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
        "min_rows": Param(100, type="integer", minimum=1, description="prepare refuses smaller data"),
        "max_seconds": Param(2.0, type="number", exclusiveMinimum=0, description="benchmark time per batch size"),
        "max_epochs": Param(200, type="integer", minimum=1),
        "patience": Param(15, type="integer", minimum=1),
        "cv_folds": Param(5, type="integer", minimum=0, description="0 turns cross-validation off"),
        "batch_sizes": Param("1 32 1024", type="string"),
        "benchmark_repeats": Param(2000, type="integer", minimum=1),
        "categorical_columns": Param("", type="string", description="comma-separated integer-coded categories"),
        "drop_columns": Param("", type="string", description="comma-separated columns that are not features"),
        "allow_schema_change": Param(False, type="boolean"),
        "calibration": Param("auto", enum=["auto", "none", "sigmoid", "isotonic"], description="fitted on validation"),
        "score_base": Param(600.0, type="number", description="score points at the base odds"),
        "score_base_odds": Param(50.0, type="number", exclusiveMinimum=0, description="good:bad odds at the base"),
        "score_pdo": Param(20.0, type="number", exclusiveMinimum=0, description="points to double the odds"),
        "score_bands": Param("", type="string", description="decision bands, e.g. A:680,B:640,C:600,D"),
        "fairness_slices": Param("Age:25/35/50/65,Marital", type="string", description="slicing columns"),
        "reason_codes": Param("", type="string", description="reason-codes JSON file; empty: the shipped one"),
    },
    tags=["credit-scoring", "training"],
    doc_md=__doc__,
)
def credit_retrain() -> None:
    @task
    def prepare() -> str:
        """Validate and split the data; refuse other inputs than production's before any training."""
        from orchestration.retrain import check_inputs, prepare_data

        def work(params: Any, task_run: Any, settings: Any) -> str:
            from orchestration.events import event_extras

            for extra in event_extras(get_current_context().get("triggering_asset_events"), DRIFT_ALERT_ASSET):
                logger.info("triggered by %s: %s", DRIFT_ALERT_ASSET, extra)
            run_id = prepare_data(params, task_run, settings)
            check_inputs(run_id, params, settings)
            return run_id

        return _run(work)

    @task
    def train(prepare_run_id: str) -> str:
        from orchestration.retrain import train_model

        return _run(lambda params, task_run, settings: train_model(prepare_run_id, params, task_run, settings))

    @task
    def convert(train_run_id: str) -> str:
        from orchestration.retrain import convert_model

        return _run(lambda params, task_run, settings: convert_model(train_run_id, task_run, settings))

    @task
    def quantize(convert_run_id: str) -> str:
        from orchestration.retrain import quantize_model

        return _run(lambda params, task_run, settings: quantize_model(convert_run_id, params, task_run, settings))

    @task
    def benchmark(quantize_run_id: str) -> str:
        from orchestration.retrain import benchmark_models

        return _run(lambda params, task_run, settings: benchmark_models(quantize_run_id, params, task_run, settings))

    @task(outlets=[STAGING_VERSION], execution_timeout=timedelta(minutes=10), multiple_outputs=False)
    def register(benchmark_run_id: str) -> dict[str, object]:
        """Register both precisions and stage the candidate; the Asset event carries the version and run ids."""
        from orchestration.promotion import dag_actor
        from orchestration.retrain import register as register_versions

        context = get_current_context()
        actor = dag_actor(context["ti"].dag_id, context["ti"].run_id)
        registered = _run(
            lambda params, task_run, settings: register_versions(benchmark_run_id, params, actor, settings)
        )
        extra = registered.staging_event()
        if extra is None:  # a skipped task emits no Asset event
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"versions {registered.versions} were registered by an earlier attempt")
        context["outlet_events"][STAGING_VERSION].extra = extra
        return extra

    register(benchmark(quantize(convert(train(prepare())))))


credit_retrain()
