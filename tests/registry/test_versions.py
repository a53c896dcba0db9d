"""Registering versions with tags and an alias, all or nothing, on a real tracking server."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry.versions import STAGING_ALIAS, VersionSpec, register_versions


def test_versions_get_their_tags_and_the_alias_points_at_the_chosen_one(pipeline_runs, settings) -> None:
    specs = [
        VersionSpec(pipeline_runs.converted.model_uri, {"precision": "fp32", "test_roc_auc": 0.8}),
        VersionSpec(pipeline_runs.quantized.model_uri, {"precision": "int8"}),
    ]
    created = register_versions(settings.registered_model_name, specs, STAGING_ALIAS, alias_index=1)
    client = MlflowClient()
    assert [v.version for v in created] == ["1", "2"]
    assert client.get_model_version(settings.registered_model_name, "1").tags == {
        "precision": "fp32",
        "test_roc_auc": "0.8",
    }
    staged = client.get_model_version_by_alias(settings.registered_model_name, STAGING_ALIAS)
    assert staged.version == "2" and staged.tags["precision"] == "int8"


# The alias "latest" is reserved: the server refuses it (HTTP 400) after both versions were created, which is the
# latest point a registration can fail.
def test_a_failure_part_way_leaves_nothing_registered(pipeline_runs, settings) -> None:
    specs = [
        VersionSpec(pipeline_runs.converted.model_uri, {"precision": "fp32"}),
        VersionSpec(pipeline_runs.quantized.model_uri, {"precision": "int8"}),
    ]
    with pytest.raises(MlflowException, match="reserved"):
        register_versions(settings.registered_model_name, specs, alias="latest")
    assert MlflowClient().search_registered_models(f"name = '{settings.registered_model_name}'") == []


def test_a_failure_on_an_existing_model_removes_only_the_new_versions(pipeline_runs, settings) -> None:
    name = settings.registered_model_name
    register_versions(name, [VersionSpec(pipeline_runs.converted.model_uri, {"precision": "fp32"})], STAGING_ALIAS)
    specs = [
        VersionSpec(pipeline_runs.converted.model_uri, {"precision": "fp32"}),
        VersionSpec(pipeline_runs.quantized.model_uri, {"precision": "int8"}),
    ]
    with pytest.raises(MlflowException, match="reserved"):
        register_versions(name, specs, alias="latest")
    client = MlflowClient()
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert client.get_registered_model(name).aliases == {STAGING_ALIAS: "1"}


def test_nothing_to_register_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing to register"):
        register_versions("anything", [])
