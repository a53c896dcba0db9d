"""Where the pipeline's runs are found again: `steps.tracking.pipeline_experiments` (through the registered model's
versions, wherever `mlflow run` put their runs, and the experiment the steps write to outside `mlflow run`) and
`steps.tracking.pipeline_runs` (the model's own runs there and whatever is linked to them, no other model's)."""

from __future__ import annotations

import uuid

import pytest
from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

import steps.tracking
from registry.versions import VersionSpec, registration
from scoring.contract import PREPARE_RUN_ID, STEP_TAG
from steps.settings import PipelineSettings
from steps.tracking import REGISTERED_MODEL_TAG, pipeline_experiments, registered_versions

DEFAULT_EXPERIMENT_ID = "0"  # where `mlflow run` without --experiment-name puts its runs


def names(settings: PipelineSettings) -> list[str]:
    return [experiment.name for experiment in pipeline_experiments(MlflowClient(settings.tracking_uri), settings)]


def run_ids(settings: PipelineSettings) -> list[str]:
    """`steps.tracking.pipeline_runs` (the tests' fixture of that name is the runs of `tests/conftest.py`)."""
    runs = steps.tracking.pipeline_runs(MlflowClient(settings.tracking_uri), settings)
    assert [run.info.start_time for run in runs] == sorted((run.info.start_time for run in runs), reverse=True)
    return [run.info.run_id for run in runs]


def step_run(
    client: MlflowClient,
    experiment_id: str,
    step: str,
    parent: str | None = None,
    tags: dict[str, str] | None = None,
    **params: str,
) -> str:
    """A finished run with a step's tags and params and nothing else: all `pipeline_runs` reads of a run."""
    run_tags = {STEP_TAG: step, **({MLFLOW_PARENT_RUN_ID: parent} if parent else {}), **(tags or {})}
    run_id = client.create_run(experiment_id, run_name=step).info.run_id
    client.log_batch(
        run_id,
        params=[Param(key, value) for key, value in params.items()],
        tags=[RunTag(key, value) for key, value in run_tags.items()],
    )
    client.set_terminated(run_id)
    return run_id


def test_the_versions_lead_to_the_experiment_their_runs_are_in(pipeline_runs, mlflow_server: str) -> None:
    """Versions registered from runs of experiment `test-pipeline`: found with no experiment named anywhere, and the
    experiment named like the model (where `python -m steps.tune` would put its trials) after them once it exists."""
    name = f"credit-lookup-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(mlflow_server)
    specs = [VersionSpec(pipeline_runs.converted.model_uri), VersionSpec(pipeline_runs.quantized.model_uri)]
    with registration(client, name, specs):
        pass
    settings = PipelineSettings(tracking_uri=mlflow_server, model_name=name, experiment_name=None)
    assert names(settings) == [pipeline_runs.settings.experiment]
    client.create_experiment(name)
    assert names(settings) == [pipeline_runs.settings.experiment, name]


def test_without_versions_only_the_named_experiment_is_looked_at(pipeline_runs, mlflow_server: str) -> None:
    model_name = f"credit-none-{uuid.uuid4().hex[:8]}"
    nothing = PipelineSettings(tracking_uri=mlflow_server, model_name=model_name, experiment_name=None)
    assert names(nothing) == []
    assert run_ids(nothing) == []
    named = nothing.model_copy(update={"experiment_name": pipeline_runs.settings.experiment})
    assert names(named) == [pipeline_runs.settings.experiment]


def test_a_models_runs_are_its_versions_lineage_and_what_was_made_from_it_not_another_models_in_default(
    pipeline_runs, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In `Default` beside the model's own tune sweep (made by hand from its prepare run): another model's main run
    with its prepare run, and a train run and a tune sweep made from that prepare run. Read two results a page, so
    that every search has to page."""
    monkeypatch.setattr(steps.tracking, "PAGE_SIZE", 2)
    name = f"credit-own-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(mlflow_server)
    specs = [VersionSpec(pipeline_runs.converted.model_uri), VersionSpec(pipeline_runs.quantized.model_uri)]
    with registration(client, name, specs):
        pass
    tune = step_run(client, DEFAULT_EXPERIMENT_ID, "tune", **{PREPARE_RUN_ID: pipeline_runs.prepared.run_id})
    trials = [step_run(client, DEFAULT_EXPERIMENT_ID, "tune-trial", parent=tune) for _ in range(3)]
    other_main = step_run(client, DEFAULT_EXPERIMENT_ID, "main", tags={REGISTERED_MODEL_TAG: f"{name}-other"})
    other_prepare = step_run(client, DEFAULT_EXPERIMENT_ID, "prepare", parent=other_main)
    other_train = step_run(client, DEFAULT_EXPERIMENT_ID, "train", **{PREPARE_RUN_ID: other_prepare})
    other_tune = step_run(client, DEFAULT_EXPERIMENT_ID, "tune", **{PREPARE_RUN_ID: other_prepare})
    other_trial = step_run(client, DEFAULT_EXPERIMENT_ID, "tune-trial", parent=other_tune)

    settings = PipelineSettings(tracking_uri=mlflow_server, model_name=name, experiment_name=None)
    found = run_ids(settings)
    lineage = [pipeline_runs.prepared.run_id, pipeline_runs.trained.run_id, pipeline_runs.trained.baseline_run_id]
    lineage += [pipeline_runs.converted.run_id, pipeline_runs.quantized.run_id, pipeline_runs.benchmarked.run_id]
    assert set(lineage + [tune, *trials]) <= set(found)
    assert not {other_main, other_prepare, other_train, other_tune, other_trial} & set(found)


def test_main_runs_tagged_with_the_model_and_the_named_experiments_runs_count_whatever_the_quotes_in_its_name(
    pipeline_runs, mlflow_server: str
) -> None:
    """A model with no version yet, named with both quote characters (MLflow's filter strings cannot quote it): its
    failed main run in `Default`, a prepare run started as a plain command in the experiment named like the model, a
    train run by hand from that one in `Default`, one made in the model's experiment from a prepare run of a third
    experiment, and one whose prepare run id was mistyped. A look-alike model (a `_` where the name has a quote), with
    a main run and versions of its own, is not mistaken for it."""
    suffix = uuid.uuid4().hex[:8]
    name, look_alike = f"credit 'it\\s' \"q\" {suffix}", f'credit _it_s_ "q" {suffix}'
    client = MlflowClient(mlflow_server)
    named = client.create_experiment(name)
    third = client.create_experiment(f"credit-third-{suffix}")
    main = step_run(client, DEFAULT_EXPERIMENT_ID, "main", tags={REGISTERED_MODEL_TAG: name})
    main_prepare = step_run(client, DEFAULT_EXPERIMENT_ID, "prepare", parent=main)
    plain_prepare = step_run(client, named, "prepare")
    by_hand = step_run(client, DEFAULT_EXPERIMENT_ID, "train", **{PREPARE_RUN_ID: plain_prepare})
    third_prepare = step_run(client, third, "prepare")
    from_third = step_run(client, named, "train", **{PREPARE_RUN_ID: third_prepare})
    mistyped = step_run(client, named, "train", **{PREPARE_RUN_ID: "<run id>"})  # as `mlflow run` logs a failed one's
    other_main = step_run(client, DEFAULT_EXPERIMENT_ID, "main", tags={REGISTERED_MODEL_TAG: look_alike})
    other_prepare = step_run(client, DEFAULT_EXPERIMENT_ID, "prepare", parent=other_main)
    with registration(client, look_alike, [VersionSpec(pipeline_runs.converted.model_uri)]):
        pass

    settings = PipelineSettings(tracking_uri=mlflow_server, model_name=name, experiment_name=None)
    assert registered_versions(client, name) == []
    assert [version.version for version in registered_versions(client, look_alike)] == ["1"]
    assert names(settings) == [name]
    found = run_ids(settings)
    assert set(found) == {main, main_prepare, plain_prepare, by_hand, third_prepare, from_third, mistyped}
    assert not {other_main, other_prepare, pipeline_runs.converted.run_id} & set(found)
