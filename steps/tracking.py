"""How a step owns its MLflow run: experiment, nesting under `main`, git tags, failure reason, lineage; and where the
pipeline's runs are found again."""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Experiment, LifecycleStage, Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry.errors import first_line, is_not_found
from scoring.contract import FAILURE_REASON_TAG, GIT_COMMIT_TAG, LINEAGE_KEYS, SOURCE_RUN_ID_TAG, STEP_TAG
from steps.errors import UserInputError
from steps.settings import PipelineSettings

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def git_tags() -> dict[str, str]:
    """Commit of the checkout the code runs from (and whether it had uncommitted changes)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {GIT_COMMIT_TAG: "unknown"}
    return {GIT_COMMIT_TAG: commit, "mlflow.source.git.commit": commit, "git_dirty": str(dirty).lower()}


def configure_tracking(settings: PipelineSettings) -> None:
    """Point the process's MLflow at the settings' server (a CLI entry point's set-up)."""
    if settings.tracking_uri:
        mlflow.set_tracking_uri(settings.tracking_uri)


@contextmanager
def tracking_server(settings: PipelineSettings) -> Iterator[None]:
    """MLflow's fluent API talks to the settings' server for the duration (the previous URI is restored after), so
    a step function called with settings for another server never writes to, or reads from, the wrong one."""
    if not settings.tracking_uri:
        yield
        return
    # None when nothing was set: restoring MLflow's resolved default instead would pin it (and export it to
    # MLFLOW_TRACKING_URI for every later settings object and child process).
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets it again


@contextmanager
def step_run(step: str, settings: PipelineSettings) -> Iterator[mlflow.ActiveRun]:
    """Start (or, under `mlflow run`, resume) the step's run on the settings' server; nested when a parent run is
    active.

    On any exception the run ends FAILED with the reason in tag `failure_reason`, and the exception propagates.
    """
    with tracking_server(settings):
        nested = mlflow.active_run() is not None
        if not nested and not os.environ.get("MLFLOW_RUN_ID"):
            mlflow.set_experiment(settings.experiment)
        tags = {**settings.run_tags, STEP_TAG: step, **git_tags()}
        with mlflow.start_run(run_name=step, nested=nested, tags=tags) as run:
            try:
                yield run
            except BaseException as error:
                mlflow.set_tag(FAILURE_REASON_TAG, f"{type(error).__name__}: {first_line(error)}"[:5000])
                raise


def pipeline_experiments(client: MlflowClient, settings: PipelineSettings) -> list[Experiment]:
    """The experiments holding the pipeline runs of `settings.model_name`, looked up where `step_run` puts them.

    Under `mlflow run` the runs are where MLflow put them: the experiment of `--experiment-name`, `Default` without it.
    So: the experiments of the runs the registered model's versions were made from (newest version first), then
    `settings.experiment` (runs started outside `mlflow run`: `python -m steps.*`, the DAGs) if it exists. Empty when
    there is neither: nothing ran yet, or the client asks another tracking server.
    """
    found: dict[str, Experiment] = {}
    asked: set[str] = set()
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
        run_id = version.run_id or version.tags.get(SOURCE_RUN_ID_TAG)
        if not run_id or run_id in asked:
            continue
        asked.add(run_id)
        try:
            experiment_id = client.get_run(run_id).info.experiment_id
        except MlflowException as error:
            if is_not_found(error):  # the source run was deleted for good: its version still serves
                continue
            raise
        if experiment_id not in found:
            found[experiment_id] = client.get_experiment(experiment_id)
    named = client.get_experiment_by_name(settings.experiment)
    if named is not None:
        found.setdefault(named.experiment_id, named)
    return [experiment for experiment in found.values() if experiment.lifecycle_stage == LifecycleStage.ACTIVE]


def log_params(params: dict[str, object]) -> None:
    """Log params, skipping keys the run already has: `mlflow run` logs the entry point's parameters itself
    (as typed, e.g. a relative data path) and MLflow refuses to change a logged value."""
    run = mlflow.active_run()
    assert run is not None, "log_params needs an active run"
    existing = MlflowClient().get_run(run.info.run_id).data.params
    fresh = {key: value for key, value in params.items() if key not in existing}
    if fresh:
        mlflow.log_params(fresh)


def log_metric_history(run_id: str, name: str, values: list[float], start_step: int = 1) -> None:
    """Log a whole curve in batches of 1,000 (one HTTP call each instead of one per point)."""
    client = MlflowClient()
    for offset in range(0, len(values), 1000):
        chunk = values[offset : offset + 1000]
        timestamp = int(1000 * time.time())
        metrics = [Metric(name, float(v), timestamp, start_step + offset + i) for i, v in enumerate(chunk)]
        client.log_batch(run_id, metrics=metrics, synchronous=True)


def lineage(run_id: str, expected_step: str) -> dict[str, str]:
    """Upstream run ids of a `expected_step` run (its params) plus its own id, e.g. {"train_run_id": ...}.

    A missing run or a run of another step is a user mistake and is reported as such.
    """
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException as error:
        if is_not_found(error):
            raise UserInputError(f"{expected_step} run {run_id!r} not found on the tracking server") from error
        raise
    step = run.data.tags.get(STEP_TAG)
    if step != expected_step:
        raise UserInputError(f"run {run_id} is a {step or 'non-pipeline'} run, expected a {expected_step} run")
    if run.info.status != "FINISHED":
        raise UserInputError(f"{expected_step} run {run_id} did not finish (status {run.info.status})")
    found = {key: value for key, value in run.data.params.items() if key in LINEAGE_KEYS}
    found[f"{step}_run_id"] = run_id
    return found
