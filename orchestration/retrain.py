"""The retraining DAG's tasks: the pipeline's steps one task each, handing over MLflow run ids, then registration.

Each step's run is tagged with the Airflow task instance that made it (`airflow_dag_id`, `airflow_run_id`,
`airflow_task_id`). A task that runs again for the same DAG run (a retry after its result was lost, a cleared task)
first looks for a FINISHED run with those tags and returns it rather than training again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from mlflow.tracking import MlflowClient
from pydantic import AfterValidator, Field, field_validator

from orchestration.settings import DagParams, OrchestrationError, OrchestrationSettings, one_of
from registry.slices import DEFAULT_SLICES, parse_slices
from scoring.contract import STEP_TAG
from scoring.points import parse_bands
from steps.credit_risk import CALIBRATION_CHOICES, DEFAULT_REASON_CODES, RiskArguments, RiskOptions
from steps.errors import UserInputError
from steps.model import MLPParams, parse_hidden_layers
from steps.prepare import DEFAULT_DATA_PATH
from steps.quantize import METHODS
from steps.registration import CANDIDATE_CHOICES
from steps.settings import PipelineSettings

logger = logging.getLogger(__name__)

DATA_PATH_ENV = "CREDIT_DATA_PATH"
DAG_ID_TAG = "airflow_dag_id"
RUN_ID_TAG = "airflow_run_id"
TASK_ID_TAG = "airflow_task_id"
TASK_TAGS = (DAG_ID_TAG, RUN_ID_TAG, TASK_ID_TAG)


@dataclass(frozen=True)
class TaskRun:
    """The Airflow task instance a step runs for (what makes a retry recognisable)."""

    dag_id: str
    run_id: str
    task_id: str

    def tags(self) -> dict[str, str]:
        return {DAG_ID_TAG: self.dag_id, RUN_ID_TAG: self.run_id, TASK_ID_TAG: self.task_id}


class RetrainParams(DagParams):
    """The retraining DAG's Params, checked once: a bad value names its Param."""

    data_path: str = ""  # empty: CREDIT_DATA_PATH, else steps.prepare.DEFAULT_DATA_PATH (resolved on the worker)
    target: str = "Status"
    positive_label: str = "bad"
    registered_model: str = ""  # empty: CREDIT_REGISTERED_MODEL_NAME (default credit-scoring)
    experiment_name: str = ""  # empty: the experiment named like the registered model
    candidate: Annotated[str, AfterValidator(one_of(CANDIDATE_CHOICES))] = "auto"
    quantization: Annotated[str, AfterValidator(one_of(METHODS))] = "dynamic"
    seed: int = 42
    hidden_layers: str = "128-64"
    alpha: float = Field(default=0.1, ge=0)
    learning_rate: float = Field(default=0.001, gt=0)
    batch_size: int = Field(default=64, gt=0)
    validation_fraction: float = Field(default=0.15, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_rows: int = Field(default=100, gt=0)
    max_seconds: float = Field(default=2.0, gt=0)
    max_epochs: int = Field(default=200, gt=0)
    patience: int = Field(default=15, gt=0)
    cv_folds: int = Field(default=5, ge=0)
    batch_sizes: str = "1 32 1024"
    benchmark_repeats: int = Field(default=2000, gt=0)
    categorical_columns: str = ""
    drop_columns: str = ""
    allow_schema_change: bool = False
    calibration: Annotated[str, AfterValidator(one_of(CALIBRATION_CHOICES))] = "auto"
    score_base: float = 600.0
    score_base_odds: float = Field(default=50.0, gt=0)
    score_pdo: float = Field(default=20.0, gt=0)
    score_bands: str = ""
    fairness_slices: str = DEFAULT_SLICES
    reason_codes: str = ""  # empty: the shipped data/reason_codes.json (next to the installed `steps` package)

    @field_validator("score_bands")
    @classmethod
    def _readable_bands(cls, value: str) -> str:
        parse_bands(value)  # its ValueError names the band
        return value

    @field_validator("fairness_slices")
    @classmethod
    def _readable_slices(cls, value: str) -> str:
        parse_slices(value)
        return value

    def risk(self) -> RiskOptions:
        """The score scaling, bands, slices and reason texts of the run (the reason-codes file read on the worker
        that trains: a missing file fails that task, naming it)."""
        reason_codes = self.reason_codes or str(DEFAULT_REASON_CODES)
        fields = (self.score_base, self.score_base_odds, self.score_pdo, self.score_bands, self.fairness_slices)
        return RiskArguments(self.calibration, *fields, reason_codes).options()

    @field_validator("hidden_layers")
    @classmethod
    def _layer_sizes(cls, value: str) -> str:
        try:
            parse_hidden_layers(value)
        except UserInputError as error:
            raise ValueError(f"must look like 64-32, got {value!r}") from error
        return value

    @field_validator("batch_sizes")
    @classmethod
    def _batch_sizes(cls, value: str) -> str:
        from steps.benchmark import parse_batch_sizes  # checked when each task starts, so prepare fails, not benchmark

        try:
            parse_batch_sizes(value)
        except UserInputError as error:
            raise ValueError(f"must be positive integers like '1 32 1024', got {value!r}") from error
        return value

    def data_file(self) -> Path:
        """The CSV prepare reads, checked on the worker that runs prepare (the only task that reads it): the Param,
        else CREDIT_DATA_PATH, else the data file next to the installed `steps` package (never the DAG file's
        folder: DAGs are often mounted elsewhere, e.g. /opt/airflow/dags)."""
        path = Path(self.data_path or os.environ.get(DATA_PATH_ENV) or DEFAULT_DATA_PATH)
        if not path.is_file():
            raise OrchestrationError(f"Param data_path: no such file on this worker: {path}")
        return path

    def mlp_params(self) -> MLPParams:
        return MLPParams(
            hidden_layers=parse_hidden_layers(self.hidden_layers),
            alpha=self.alpha,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            patience=self.patience,
            seed=self.seed,
        )

    def column_list(self, text: str) -> list[str]:
        return [name.strip() for name in text.split(",") if name.strip()]


def pipeline_settings(params: RetrainParams, settings: OrchestrationSettings | None = None) -> PipelineSettings:
    """The steps' settings for this DAG run: the tracking server resolved now (env or Airflow connection)."""
    settings = settings or OrchestrationSettings()
    return PipelineSettings(
        tracking_uri=settings.resolved_tracking_uri(),
        model_name=params.registered_model or settings.model_name,
        experiment_name=params.experiment_name or None,
    )


def finished_run(settings: PipelineSettings, step: str, task: TaskRun) -> str | None:
    """The FINISHED `step` run an earlier attempt of this very task made, if any (newest first)."""
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is None:
        return None
    conditions = [f"tags.{STEP_TAG} = '{step}'", "attributes.status = 'FINISHED'"]
    conditions += [f"tags.{key} = '{_quoted(value)}'" for key, value in task.tags().items()]
    runs = client.search_runs(
        [experiment.experiment_id], " and ".join(conditions), order_by=["attributes.start_time DESC"], max_results=1
    )
    return str(runs[0].info.run_id) if runs else None


def _quoted(value: str) -> str:
    # Airflow's run ids are letters, digits and `_.~:+-`; a quote would end MLflow's string literal.
    if "'" in value:
        raise OrchestrationError(f"an Airflow id with a quote cannot be searched for in MLflow: {value!r}")
    return value


def run_once(step: str, task: TaskRun, settings: PipelineSettings, work: Callable[[PipelineSettings], str]) -> str:
    """The run id of `step` for this task: an earlier attempt's finished run, else `work` run with the task's tags."""
    earlier = finished_run(settings, step, task)
    if earlier is not None:
        logger.info("%s: reusing run %s, finished by an earlier attempt of %s", step, earlier, task.task_id)
        return earlier
    tagged = settings.model_copy(update={"run_tags": {**settings.run_tags, **task.tags()}})
    run_id = work(tagged)
    logger.info("%s: run %s finished", step, run_id)
    return run_id


def prepare_data(params: RetrainParams, task: TaskRun, settings: PipelineSettings) -> str:
    from steps.prepare import prepare

    data_file = params.data_file()

    def work(tagged: PipelineSettings) -> str:
        return prepare(
            data_file,
            params.target,
            params.positive_label,
            seed=params.seed,
            validation_fraction=params.validation_fraction,
            test_fraction=params.test_fraction,
            min_rows=params.min_rows,
            categorical_columns=params.column_list(params.categorical_columns),
            drop_columns=params.column_list(params.drop_columns),
            settings=tagged,
        ).run_id

    return run_once("prepare", task, settings, work)


def check_inputs(prepare_run_id: str, params: RetrainParams, settings: PipelineSettings) -> None:
    """Refuse, before any training, a model whose inputs differ from production's (unless allowed), as `main` does."""
    from steps.prepare import load_schema
    from steps.registration import check_schema
    from steps.tracking import tracking_server

    with tracking_server(settings):
        schema = load_schema(prepare_run_id)
    check_schema(schema, settings, params.allow_schema_change)


def train_model(prepare_run_id: str, params: RetrainParams, task: TaskRun, settings: PipelineSettings) -> str:
    from steps.train import train

    def work(tagged: PipelineSettings) -> str:
        return train(
            prepare_run_id,
            params.mlp_params(),
            cv_folds=params.cv_folds,
            settings=tagged,
            calibration_method=params.calibration,
            risk=params.risk(),
        ).run_id

    return run_once("train", task, settings, work)


def convert_model(train_run_id: str, task: TaskRun, settings: PipelineSettings) -> str:
    from steps.convert import convert

    return run_once("convert", task, settings, lambda tagged: convert(train_run_id, settings=tagged).run_id)


def quantize_model(convert_run_id: str, params: RetrainParams, task: TaskRun, settings: PipelineSettings) -> str:
    from steps.quantize import quantize

    def work(tagged: PipelineSettings) -> str:
        return quantize(convert_run_id, params.quantization, settings=tagged).run_id

    return run_once("quantize", task, settings, work)


def benchmark_models(quantize_run_id: str, params: RetrainParams, task: TaskRun, settings: PipelineSettings) -> str:
    from steps.benchmark import benchmark, parse_batch_sizes

    def work(tagged: PipelineSettings) -> str:
        sizes = parse_batch_sizes(params.batch_sizes)
        return benchmark(
            quantize_run_id, sizes, params.benchmark_repeats, max_seconds=params.max_seconds, settings=tagged
        ).run_id

    return run_once("benchmark", task, settings, work)


@dataclass(frozen=True)
class Registered:
    """What the retraining DAG's Asset event carries: the new staging candidate and the runs behind it."""

    model: str
    version: str  # the candidate's version (staged unless it is production already)
    candidate: str  # its precision
    versions: dict[str, str]  # precision -> version
    benchmark_run_id: str
    prepare_run_id: str
    reused: bool  # a re-run: the versions existed already, nothing was registered or moved

    def staging_event(self) -> dict[str, object] | None:
        """The extra of the `credit_staging_version` event, None for a re-run that found its versions (nothing new:
        no event, so no second promotion run and sign-off request)."""
        return None if self.reused else self.as_extra()

    def as_extra(self) -> dict[str, object]:
        return {
            "model": self.model,
            "version": self.version,
            "candidate": self.candidate,
            "versions": dict(self.versions),
            "benchmark_run_id": self.benchmark_run_id,
            "prepare_run_id": self.prepare_run_id,
            "reused": self.reused,
        }


def register(benchmark_run_id: str, params: RetrainParams, actor: str, settings: PipelineSettings) -> Registered:
    """Register both precisions and stage the candidate (idempotent: `steps.registration.register_candidate`).

    Never promotes, not even with no production version yet (`promote_first=False`): every production change goes
    through the promotion DAG's gate and sign-off.
    """
    from steps.registration import register_candidate
    from steps.tracking import lineage, tracking_server

    result = register_candidate(
        benchmark_run_id,
        params.candidate,
        params.allow_schema_change,
        promote_first=False,
        actor=actor,
        settings=settings,
    )
    with tracking_server(settings):
        prepare_run_id = lineage(benchmark_run_id, "benchmark")["prepare_run_id"]
    registered = Registered(
        model=result.model_name,
        version=result.versions[result.candidate],
        candidate=result.candidate,
        versions=result.versions,
        benchmark_run_id=benchmark_run_id,
        prepare_run_id=prepare_run_id,
        reused=result.reused,
    )
    how = "found (registered by an earlier attempt)" if result.reused else "registered"
    logger.info("%s versions %s %s; candidate %s", registered.model, result.versions, how, registered.version)
    return registered
