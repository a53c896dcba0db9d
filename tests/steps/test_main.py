"""The `main` chain as a function: child runs under one parent, registration only after every step succeeded."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry import audit
from registry.promotion import SchemaChangeError
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS, registration, set_alias
from steps import registration as registration_module
from steps.errors import UserInputError
from steps.main import main
from steps.model import MLPParams
from steps.registration import Int8Evidence, choose_candidate, pipeline_output, register_candidate

FAST = {"params": MLPParams(hidden_layers=(16,), max_epochs=40, patience=5), "cv_folds": 0}


def children_of(run_id: str, experiment_id: str) -> dict[str, mlflow.entities.Run]:
    runs = MlflowClient().search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    return {run.data.tags["step"]: run for run in runs}


def test_main_runs_every_step_as_a_child_and_registers_both_precisions(small_csv: Path, settings) -> None:
    result = main(small_csv, batch_sizes=[1, 4], benchmark_repeats=20, settings=settings, **FAST)
    parent = mlflow.get_run(result.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["step"] == "main"
    children = children_of(result.run_id, parent.info.experiment_id)
    assert set(children) == {"prepare", "train", "convert", "quantize", "benchmark"}
    assert all(child.info.status == "FINISHED" for child in children.values())
    assert {run.data.tags["git_commit"] for run in [parent, *children.values()]} == {parent.data.tags["git_commit"]}

    client = MlflowClient()
    assert set(result.versions) == {"fp32", "int8"}
    # First deployment: the candidate went to production through the gate, the other precision is staged.
    deployed = client.get_model_version_by_alias(settings.model_name, PRODUCTION_ALIAS)
    assert deployed.tags["precision"] == result.candidate
    assert "is now in production (gate passed" in result.first_deployment
    staged = client.get_model_version_by_alias(settings.model_name, STAGING_ALIAS)
    assert staged.tags["precision"] != result.candidate
    assert result.aliases[deployed.version] == [PRODUCTION_ALIAS]
    fp32 = client.get_model_version(settings.model_name, result.versions["fp32"])
    for tag in ("source_run_id", "train_run_id", "data_sha256", "test_roc_auc", "parity_max_abs_diff", "git_commit"):
        assert fp32.tags[tag], tag
    assert fp32.tags["source_run_id"] == children["convert"].info.run_id
    int8 = client.get_model_version(settings.model_name, result.versions["int8"])
    assert int8.tags["fp32_source_run_id"] == children["convert"].info.run_id
    assert 0 < float(int8.tags["decision_agreement"]) <= 1
    assert parent.data.tags[f"registered_version_{result.candidate}"] == deployed.version


def test_main_leaves_an_existing_production_version_alone(small_csv: Path, settings) -> None:
    first = main(small_csv, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    second = main(small_csv, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    client = MlflowClient()
    assert second.first_deployment is None
    deployed = first.versions[first.candidate]
    assert client.get_model_version_by_alias(settings.model_name, PRODUCTION_ALIAS).version == deployed
    staged = client.get_model_version_by_alias(settings.model_name, STAGING_ALIAS)
    assert staged.version == second.versions[second.candidate]


def test_a_failing_step_fails_the_parent_and_registers_nothing(small_csv: Path, settings) -> None:
    with pytest.raises(UserInputError, match="target column 'Outcome' not found"):
        main(small_csv, target="Outcome", settings=settings, **FAST)
    experiment = mlflow.get_experiment_by_name(settings.experiment)
    runs = MlflowClient().search_runs([experiment.experiment_id])
    statuses = {run.data.tags["step"]: run.info.status for run in runs}
    assert statuses == {"main": "FAILED", "prepare": "FAILED"}
    assert MlflowClient().search_registered_models(f"name = '{settings.model_name}'") == []


@pytest.mark.parametrize(
    ("agreement", "auc_delta", "speedup", "expected"),
    [
        (0.999, 0.0, 2.0, "int8"),  # faster, agrees, keeps AUC
        (0.999, 0.0, 1.05, "fp32"),  # not faster enough to be worth it
        (0.95, 0.0, 2.0, "fp32"),  # flips too many decisions
        (0.999, -0.01, 2.0, "fp32"),  # loses ranking quality
    ],
)
def test_auto_candidate_prefers_int8_only_when_it_pays(agreement, auc_delta, speedup, expected) -> None:
    assert choose_candidate("auto", Int8Evidence(agreement, auc_delta, speedup)) == expected


def test_an_explicit_candidate_wins() -> None:
    assert choose_candidate("int8", Int8Evidence(0.5, -0.5, 0.1)) == "int8"


def test_another_schema_is_refused_right_after_prepare_naming_the_columns(
    small_csv: Path, settings, tmp_path: Path
) -> None:
    main(small_csv, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    other = tmp_path / "other.csv"
    frame = pd.read_csv(small_csv).drop(columns=["Price", "Records"])
    frame.assign(Region="north").to_csv(other, index=False)
    client = MlflowClient(settings.tracking_uri)
    versions_before = client.search_model_versions(f"name = '{settings.model_name}'")
    with pytest.raises(SchemaChangeError, match=r"the new model takes other inputs .*\(\+Region, -Records, -Price\)"):
        main(other, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    assert len(client.search_model_versions(f"name = '{settings.model_name}'")) == len(versions_before)
    experiment = mlflow.get_experiment_by_name(settings.experiment)
    (failed,) = client.search_runs([experiment.experiment_id], "attributes.status = 'FAILED'")
    assert failed.data.tags["step"] == "main" and "SchemaChangeError" in failed.data.tags["failure_reason"]
    # Refused before any training: the failed main run's only child is its prepare run.
    assert set(children_of(failed.info.run_id, experiment.experiment_id)) == {"prepare"}

    allowed = main(other, allow_schema_change=True, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    assert client.get_model_version_by_alias(settings.model_name, STAGING_ALIAS).version == allowed.versions["fp32"]


def test_another_registered_model_takes_another_schema_and_names_the_experiment(
    small_csv: Path, settings, tmp_path: Path
) -> None:
    main(small_csv, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    other = tmp_path / "other.csv"
    pd.read_csv(small_csv).drop(columns=["Price"]).to_csv(other, index=False)
    elsewhere = settings.model_copy(update={"model_name": f"{settings.model_name}-other", "experiment_name": None})
    result = main(other, batch_sizes=[1], benchmark_repeats=20, settings=elsewhere, **FAST)
    assert result.model_name == elsewhere.model_name and result.first_deployment
    parent = mlflow.get_run(result.run_id)
    assert mlflow.get_experiment(parent.info.experiment_id).name == elsewhere.model_name


def test_registering_the_same_runs_again_registers_nothing_and_moves_no_alias(small_csv: Path, settings) -> None:
    first = main(small_csv, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    client = MlflowClient(settings.tracking_uri)
    benchmark_run_id = client.get_model_version(settings.model_name, first.versions["fp32"]).tags["benchmark_run_id"]
    registry_settings = RegistrySettings.of(settings)
    moves_before = audit.history(client, registry_settings)
    again = register_candidate(benchmark_run_id, settings=settings)
    assert again.reused and again.versions == first.versions and again.first_deployment is None
    assert len(client.search_model_versions(f"name = '{settings.model_name}'")) == 2
    assert again.aliases == first.aliases
    assert audit.history(client, registry_settings) == moves_before


def test_a_registration_killed_before_staging_is_finished_by_the_retry(small_csv: Path, settings) -> None:
    result = main(small_csv, register=False, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    client = MlflowClient(settings.tracking_uri)
    bench = client.search_runs(
        [mlflow.get_experiment_by_name(settings.experiment).experiment_id],
        f"tags.step = 'benchmark' and tags.mlflow.parentRunId = '{result.run_id}'",
    )[0]
    output = pipeline_output(client, bench.info.run_id)
    # What a worker killed between creating the versions and staging the candidate leaves behind.
    with registration(client, settings.model_name, [output.specs["fp32"], output.specs["int8"]]) as created:
        left = {spec: version.version for spec, version in zip(("fp32", "int8"), created, strict=True)}
    retried = register_candidate(bench.info.run_id, candidate="fp32", promote_first=False, settings=settings)
    assert retried.reused and retried.versions == left
    assert client.get_model_version_by_alias(settings.model_name, STAGING_ALIAS).version == left["fp32"]
    registry_settings = RegistrySettings.of(settings)
    stages = [r for r in audit.history(client, registry_settings) if r.action == "stage"]
    assert [(r.to_version, r.outcome) for r in stages] == [(left["fp32"], "moved")]
    # Once more: staged already, so nothing moves (even if another candidate was staged since).
    client.set_registered_model_alias(settings.model_name, STAGING_ALIAS, left["int8"])
    register_candidate(bench.info.run_id, candidate="fp32", promote_first=False, settings=settings)
    assert client.get_model_version_by_alias(settings.model_name, STAGING_ALIAS).version == left["int8"]


def test_a_registration_failing_after_staging_moved_gives_staging_back(
    small_csv: Path, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = main(small_csv, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    client = MlflowClient(settings.tracking_uri)
    before = client.get_model_version_by_alias(settings.model_name, STAGING_ALIAS).version
    versions_before = len(client.search_model_versions(f"name = '{settings.model_name}'"))

    def stage_then_fail(version: str, *arguments: object, **options: object) -> None:
        # The alias has moved when the audit record cannot be completed (the tracking server went away, say).
        set_alias(client, settings.model_name, STAGING_ALIAS, version)
        raise MlflowException("the tracking server went away")

    monkeypatch.setattr(registration_module, "stage", stage_then_fail)
    with pytest.raises(MlflowException, match="went away"):
        main(small_csv, seed=7, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    assert len(client.search_model_versions(f"name = '{settings.model_name}'")) == versions_before
    assert client.get_model_version_by_alias(settings.model_name, STAGING_ALIAS).version == before
    assert first.versions  # the first run's versions are untouched
