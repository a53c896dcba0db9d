"""Where the pipeline's runs are found again (`steps.tracking.pipeline_experiments`): through the registered model's
versions, wherever `mlflow run` put their runs, and in the experiment the steps write to outside `mlflow run`."""

from __future__ import annotations

import uuid

from mlflow.tracking import MlflowClient

from registry.versions import VersionSpec, registration
from steps.settings import PipelineSettings
from steps.tracking import pipeline_experiments


def names(settings: PipelineSettings) -> list[str]:
    return [experiment.name for experiment in pipeline_experiments(MlflowClient(settings.tracking_uri), settings)]


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
    named = nothing.model_copy(update={"experiment_name": pipeline_runs.settings.experiment})
    assert names(named) == [pipeline_runs.settings.experiment]
