"""credit_retrain under dag.test() against the real tracking server: a new staging version, its Asset event, and
tasks that run again (a retry, a re-run) without training or registering anything twice."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from orchestration.retrain import TASK_TAGS, RetrainParams, TaskRun, pipeline_settings, register, train_model
from registry import audit
from registry.settings import RegistrySettings
from tests.airflow.conftest import Retrained, asset_events

pytestmark = pytest.mark.integration


def test_retraining_registers_a_staging_version_and_announces_it(retrained: Retrained, mlflow_server: str) -> None:
    assert set(retrained.states.values()) == {"success"}, retrained.states
    client = MlflowClient(mlflow_server)
    versions = {v.version: v for v in client.search_model_versions(f"name = '{retrained.model_name}'")}
    assert sorted(versions) == ["1", "2"]  # fp32 and INT8 of one pipeline run
    staged = versions["1"]
    assert staged.tags["precision"] == "fp32"  # candidate=fp32
    # What the DAG run moved, from the audit trail (later tests promote this model): staging, and nothing else.
    settings = RegistrySettings(tracking_uri=mlflow_server, model_name=retrained.model_name)
    moves = audit.history(client, settings, f"tags.actor = 'airflow credit_retrain/{retrained.run_id}'")
    assert [(m.action, m.outcome, m.to_version) for m in moves] == [("stage", "moved", "1")]

    (event,) = asset_events("credit_staging_version", retrained.run_id)
    assert event.extra["model"] == retrained.model_name and event.extra["version"] == staged.version
    assert event.extra["versions"] == {"fp32": "1", "int8": "2"} and event.extra["reused"] is False
    assert event.extra["benchmark_run_id"] == staged.tags["benchmark_run_id"]
    assert event.extra["prepare_run_id"] == staged.tags["prepare_run_id"]
    # Each step's run names the Airflow task instance that made it.
    prepare_run = client.get_run(event.extra["prepare_run_id"])
    assert {key: prepare_run.data.tags[key] for key in TASK_TAGS} == {
        "airflow_dag_id": "credit_retrain",
        "airflow_run_id": retrained.run_id,
        "airflow_task_id": "prepare",
    }


def test_a_retried_step_reuses_its_finished_run(retrained: Retrained, mlflow_server: str) -> None:
    params = RetrainParams.of(retrained.conf)
    settings = pipeline_settings(params)
    client = MlflowClient(mlflow_server)
    (event,) = asset_events("credit_staging_version", retrained.run_id)
    experiment = client.get_experiment_by_name(settings.experiment)
    before = client.search_runs([experiment.experiment_id], "tags.step = 'train'")
    task = TaskRun("credit_retrain", retrained.run_id, "train")
    again = train_model(event.extra["prepare_run_id"], params, task, settings)
    after = client.search_runs([experiment.experiment_id], "tags.step = 'train'")
    assert again == before[0].info.run_id and len(after) == len(before) == 1


def test_registering_again_changes_nothing(retrained: Retrained, mlflow_server: str) -> None:
    params = RetrainParams.of(retrained.conf)
    settings = pipeline_settings(params)
    client = MlflowClient(mlflow_server)
    registry_settings = RegistrySettings.of(settings)
    (event,) = asset_events("credit_staging_version", retrained.run_id)

    def state() -> tuple[Any, ...]:
        versions = client.search_model_versions(f"name = '{retrained.model_name}'")
        # search_model_versions leaves the aliases out: each version is read on its own.
        aliases = sorted(
            (v.version, tuple(sorted(client.get_model_version(v.name, v.version).aliases))) for v in versions
        )
        return aliases, len(audit.history(client, registry_settings))

    before = state()
    result = register(event.extra["benchmark_run_id"], params, f"airflow credit_retrain/{retrained.run_id}", settings)
    assert result.reused and result.version == event.extra["version"]
    assert state() == before
