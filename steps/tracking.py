"""How a step owns its MLflow run: experiment, nesting under `main`, git tags, failure reason, lineage; and where the
pipeline's runs are found again."""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import mlflow
from mlflow.entities import Experiment, LifecycleStage, Metric, Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.store.entities.paged_list import PagedList
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from registry.errors import first_line, is_not_found
from scoring.contract import (
    FAILURE_REASON_TAG,
    GIT_COMMIT_TAG,
    LINEAGE_KEYS,
    PREPARE_RUN_ID,
    SOURCE_RUN_ID_TAG,
    STEP_TAG,
)
from steps.errors import UserInputError
from steps.settings import PipelineSettings

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


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


# Set on `main` runs by `steps.main` (a param too, but under `mlflow run` that keeps what was typed: often nothing).
REGISTERED_MODEL_TAG = "registered_model"
# Results per search request (the tracking server's cap for runs); a search reads page after page until the last.
PAGE_SIZE = 1000
RUN_ID = re.compile(r"[0-9a-f]{32}")  # what MLflow's tracking stores name runs by (a uuid4's hex)


def pipeline_runs(client: MlflowClient, settings: PipelineSettings) -> list[Run]:
    """The pipeline runs of `settings.model_name` (active, tagged with their step), newest first: wherever `mlflow run`
    put them, and none of the other models' runs that share an experiment with them (`Default`).

    A run belongs to the model when it is
    - a run a version of the model was registered from, a `main` run tagged `registered_model` with the model, or a
      step run in `settings.experiment` (steps started outside `mlflow run` put this model's runs there), or
    - linked to such a run, transitively, by parenthood (`main`'s steps, `tune`'s trials, `train`'s baseline) or by
      lineage in either direction: the upstream runs its lineage params name, and the runs whose lineage params name
      it (a `tune` or `train` run started by hand from the model's `prepare` run, and what followed from it).
    """
    everywhere = _experiment_ids(client)
    # A run made from a prepare run (every later step logs its id) may be in any experiment: `mlflow run -e tune`
    # without --experiment-name puts it in `Default`, wherever the prepare run is.
    found = {run.info.run_id: run for run in _search_runs(client, everywhere, f"params.{PREPARE_RUN_ID} IS NOT NULL")}
    mains = _main_runs(client, everywhere, settings.model_name)
    found |= {run.info.run_id: run for run in mains}
    starts = {run.info.run_id for run in mains}
    starts |= {run_id for version in registered_versions(client, settings.model_name) if (run_id := _source(version))}
    named = _named_experiment(client, settings)
    asked: set[str] = set()  # run ids looked up one by one
    searched: set[str] = set()  # experiments whose step runs are all in `found`
    while True:
        in_named = {run_id for run_id, run in found.items() if named and run.info.experiment_id == named.experiment_id}
        members = _linked(found, starts | in_named)
        # A version's source run, or the upstream run a lineage param names (a prepare run), may be in an experiment
        # not searched yet; children (trials, a baseline, main's steps) are in their parent's experiment.
        unseen = (starts | {run_id for member in members for run_id in _links(found[member])}) - found.keys() - asked
        asked |= unseen
        for run in _existing_runs(client, unseen):
            if run.info.lifecycle_stage == LifecycleStage.ACTIVE and STEP_TAG in run.data.tags:
                found[run.info.run_id] = run
        pending = {found[run_id].info.experiment_id for run_id in members | (unseen & found.keys())}
        pending = (pending | ({named.experiment_id} if named else set())) - searched
        if not unseen and not pending:
            return sorted((found[run_id] for run_id in members), key=lambda run: run.info.start_time, reverse=True)
        found |= {run.info.run_id: run for run in _search_runs(client, sorted(pending), f"tags.{STEP_TAG} IS NOT NULL")}
        searched |= pending


def pipeline_experiments(client: MlflowClient, settings: PipelineSettings) -> list[Experiment]:
    """The experiments holding the runs the versions of `settings.model_name` were made from, and the one its steps
    write to outside `mlflow run`: where most of its pipeline runs are (`pipeline_runs` finds all of them, and only
    them).

    Under `mlflow run` the runs are where MLflow put them: the experiment of `--experiment-name`, `Default` without it.
    So: the experiments of the runs the registered model's versions were made from (newest version first), then
    `settings.experiment` (runs started outside `mlflow run`: `python -m steps.*`, the DAGs) if it exists. Empty when
    there is neither: nothing ran yet, or the client asks another tracking server.
    """
    found: dict[str, Experiment] = {}
    for run in _version_source_runs(client, settings.model_name):
        experiment_id = run.info.experiment_id
        if experiment_id not in found:
            found[experiment_id] = client.get_experiment(experiment_id)
    named = _named_experiment(client, settings)
    if named is not None:
        found.setdefault(named.experiment_id, named)
    return [experiment for experiment in found.values() if experiment.lifecycle_stage == LifecycleStage.ACTIVE]


def registered_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of registered model `name`, newest first (none when it is not registered)."""

    def page(token: str | None) -> PagedList[ModelVersion]:
        return client.search_model_versions(_like("name", name), max_results=PAGE_SIZE, page_token=token)

    versions = [version for version in _all_pages(page) if version.name == name]
    return sorted(versions, key=lambda version: int(version.version), reverse=True)


def _version_source_runs(client: MlflowClient, name: str) -> list[Run]:
    """The runs the versions of `name` were registered from, newest version first; a run deleted for good is skipped
    (its version still serves)."""
    run_ids = [_source(version) for version in registered_versions(client, name)]
    return _existing_runs(client, [run_id for run_id in dict.fromkeys(run_ids) if run_id])


def _source(version: ModelVersion) -> str | None:
    return version.run_id or version.tags.get(SOURCE_RUN_ID_TAG)


def _main_runs(client: MlflowClient, experiment_ids: list[str], name: str) -> list[Run]:
    """The `main` runs tagged with registered model `name` (one that failed, or did not register, left no version to
    lead to it)."""
    query = f"tags.{STEP_TAG} = 'main' and {_like(f'tags.{REGISTERED_MODEL_TAG}', name)}"
    return [
        run for run in _search_runs(client, experiment_ids, query) if run.data.tags.get(REGISTERED_MODEL_TAG) == name
    ]


def _experiment_ids(client: MlflowClient) -> list[str]:
    """The active experiments'."""

    def page(token: str | None) -> PagedList[Experiment]:
        return client.search_experiments(max_results=PAGE_SIZE, page_token=token)

    return [experiment.experiment_id for experiment in _all_pages(page)]


def _named_experiment(client: MlflowClient, settings: PipelineSettings) -> Experiment | None:
    named = client.get_experiment_by_name(settings.experiment)
    return named if named is not None and named.lifecycle_stage == LifecycleStage.ACTIVE else None


def _existing_runs(client: MlflowClient, run_ids: Iterable[str]) -> list[Run]:
    found = []
    for run_id in run_ids:
        try:
            found.append(client.get_run(run_id))
        except MlflowException as error:
            if not is_not_found(error):
                raise
    return found


def _search_runs(client: MlflowClient, experiment_ids: list[str], query: str) -> list[Run]:
    if not experiment_ids:
        return []

    def page(token: str | None) -> PagedList[Run]:
        return client.search_runs(experiment_ids, query, max_results=PAGE_SIZE, page_token=token)

    return _all_pages(page)


def _all_pages(page: Callable[[str | None], PagedList[T]]) -> list[T]:
    """Every result of a paged MLflow search: `page(token)` is one request, the first with token None."""
    found: list[T] = []
    token = None
    while True:
        results = page(token)
        found.extend(results)
        token = results.token
        if not token:
            return found


def _like(key: str, value: str) -> str:
    """A filter clause matching `key` = `value` and maybe more: MLflow's filter strings have no escape for a quote, so
    each `'` (and `\\`, which would escape the closing quote) becomes LIKE's any-one-character `_`. Callers keep only
    the exact matches."""
    pattern = re.sub(r"['\\]", "_", value)
    return f"{key} LIKE '{pattern}'"


def _links(run: Run) -> set[str]:
    """The runs `run` names: its parent run and the upstream runs of its lineage params. `mlflow run` logs the
    parameters as typed before the step checks them, so a failed run's may be no run id at all (`<run id>`)."""
    named = [run.data.tags.get(MLFLOW_PARENT_RUN_ID), *(run.data.params.get(key) for key in LINEAGE_KEYS)]
    return {run_id for run_id in named if run_id and RUN_ID.fullmatch(run_id)}


def _linked(runs: dict[str, Run], starts: set[str]) -> set[str]:
    """The runs connected to `starts` through the links of `runs` (followed both ways, only through `runs`)."""
    neighbours: dict[str, set[str]] = {run_id: set() for run_id in runs}
    for run_id, run in runs.items():
        for other in _links(run) & neighbours.keys():
            neighbours[run_id].add(other)
            neighbours[other].add(run_id)
    reached = starts & neighbours.keys()
    queue = list(reached)
    while queue:
        for other in neighbours[queue.pop()] - reached:
            reached.add(other)
            queue.append(other)
    return reached


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
