"""Registering versions with their tags, all or nothing, on a real tracking server, through an explicit client."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry.versions import STAGING_ALIAS, VersionSpec, registration, set_alias


def test_versions_get_their_tags_and_the_source_run_of_their_model(pipeline_runs, settings) -> None:
    client = MlflowClient(settings.tracking_uri)
    specs = [
        VersionSpec(pipeline_runs.converted.model_uri, {"precision": "fp32", "test_roc_auc": "0.8"}),
        VersionSpec(pipeline_runs.quantized.model_uri, {"precision": "int8"}),
    ]
    with registration(client, settings.model_name, specs) as created:
        set_alias(client, settings.model_name, STAGING_ALIAS, created[1].version)
    assert [v.version for v in created] == ["1", "2"]
    first = client.get_model_version(settings.model_name, "1")
    assert first.tags == {"precision": "fp32", "test_roc_auc": "0.8"}
    assert first.run_id == pipeline_runs.converted.run_id
    staged = client.get_model_version_by_alias(settings.model_name, STAGING_ALIAS)
    assert staged.version == "2" and staged.tags["precision"] == "int8"


# The alias "latest" is reserved: the server refuses it (HTTP 400) after both versions were created, which is the
# latest point a registration can fail.
def test_a_failure_part_way_leaves_nothing_registered(pipeline_runs, settings) -> None:
    client = MlflowClient(settings.tracking_uri)
    specs = [
        VersionSpec(pipeline_runs.converted.model_uri, {"precision": "fp32"}),
        VersionSpec(pipeline_runs.quantized.model_uri, {"precision": "int8"}),
    ]
    with pytest.raises(MlflowException, match="reserved"), registration(client, settings.model_name, specs) as created:
        set_alias(client, settings.model_name, "latest", created[0].version)
    assert client.search_registered_models(f"name = '{settings.model_name}'") == []


def test_a_failure_on_an_existing_model_removes_only_the_new_versions(pipeline_runs, settings) -> None:
    client = MlflowClient(settings.tracking_uri)
    name = settings.model_name
    with registration(client, name, [VersionSpec(pipeline_runs.converted.model_uri, {"precision": "fp32"})]) as first:
        set_alias(client, name, STAGING_ALIAS, first[0].version)
    specs = [
        VersionSpec(pipeline_runs.converted.model_uri, {"precision": "fp32"}),
        VersionSpec(pipeline_runs.quantized.model_uri, {"precision": "int8"}),
    ]
    with pytest.raises(MlflowException, match="reserved"), registration(client, name, specs) as created:
        set_alias(client, name, "latest", created[1].version)
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert client.get_registered_model(name).aliases == {STAGING_ALIAS: "1"}


def test_nothing_to_register_and_run_uris_are_refused(pipeline_runs, settings) -> None:
    client = MlflowClient(settings.tracking_uri)
    with pytest.raises(ValueError, match="nothing to register"), registration(client, "anything", []):
        pass
    by_run = VersionSpec(f"runs:/{pipeline_runs.converted.run_id}/onnx_model")
    with pytest.raises(ValueError, match="models:/m-"), registration(client, settings.model_name, [by_run]):
        pass
    assert client.search_registered_models(f"name = '{settings.model_name}'") == []
