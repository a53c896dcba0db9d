"""The `main` chain as a function: child runs under one parent, registration only after every step succeeded."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS
from steps.benchmark import BenchmarkResult
from steps.errors import UserInputError
from steps.main import choose_candidate, main
from steps.model import MLPParams
from steps.quantize import QuantizeResult

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
    deployed = client.get_model_version_by_alias(settings.registered_model_name, PRODUCTION_ALIAS)
    assert deployed.tags["precision"] == result.candidate
    assert "is now in production (gate passed" in result.first_deployment
    staged = client.get_model_version_by_alias(settings.registered_model_name, STAGING_ALIAS)
    assert staged.tags["precision"] != result.candidate
    assert result.aliases[deployed.version] == [PRODUCTION_ALIAS]
    fp32 = client.get_model_version(settings.registered_model_name, result.versions["fp32"])
    for tag in ("source_run_id", "train_run_id", "data_sha256", "test_roc_auc", "parity_max_abs_diff", "git_commit"):
        assert fp32.tags[tag], tag
    assert fp32.tags["source_run_id"] == children["convert"].info.run_id
    int8 = client.get_model_version(settings.registered_model_name, result.versions["int8"])
    assert int8.tags["fp32_source_run_id"] == children["convert"].info.run_id
    assert 0 < float(int8.tags["decision_agreement"]) <= 1
    assert parent.data.tags[f"registered_version_{result.candidate}"] == deployed.version


def test_main_leaves_an_existing_production_version_alone(small_csv: Path, settings) -> None:
    main(small_csv, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    second = main(small_csv, batch_sizes=[1], benchmark_repeats=20, settings=settings, **FAST)
    client = MlflowClient()
    assert second.first_deployment is None
    assert client.get_model_version_by_alias(settings.registered_model_name, PRODUCTION_ALIAS).version == "1"
    staged = client.get_model_version_by_alias(settings.registered_model_name, STAGING_ALIAS)
    assert staged.version == second.versions[second.candidate]


def test_a_failing_step_fails_the_parent_and_registers_nothing(small_csv: Path, settings) -> None:
    with pytest.raises(UserInputError, match="target column 'Outcome' not found"):
        main(small_csv, target="Outcome", settings=settings, **FAST)
    experiment = mlflow.get_experiment_by_name(settings.experiment_name)
    runs = MlflowClient().search_runs([experiment.experiment_id])
    statuses = {run.data.tags["step"]: run.info.status for run in runs}
    assert statuses == {"main": "FAILED", "prepare": "FAILED"}
    assert MlflowClient().search_registered_models(f"name = '{settings.registered_model_name}'") == []


def _results(
    agreement: float, auc_delta: float, fp32_ms: float, int8_ms: float
) -> tuple[QuantizeResult, BenchmarkResult]:
    quantized = QuantizeResult("q", "models:/m-q", {"decision_agreement": agreement, "test_roc_auc_delta": auc_delta})
    table = pd.DataFrame(
        [
            {"runtime": "onnx_fp32", "batch_size": 1, "p50_ms": fp32_ms},
            {"runtime": "onnx_int8", "batch_size": 1, "p50_ms": int8_ms},
        ]
    )
    return quantized, BenchmarkResult("b", table)


@pytest.mark.parametrize(
    ("agreement", "auc_delta", "int8_ms", "expected"),
    [
        (0.999, 0.0, 0.05, "int8"),  # faster, agrees, keeps AUC
        (0.999, 0.0, 0.095, "fp32"),  # not faster enough to be worth it
        (0.95, 0.0, 0.05, "fp32"),  # flips too many decisions
        (0.999, -0.01, 0.05, "fp32"),  # loses ranking quality
    ],
)
def test_auto_candidate_prefers_int8_only_when_it_pays(agreement, auc_delta, int8_ms, expected) -> None:
    assert choose_candidate("auto", *_results(agreement, auc_delta, 0.1, int8_ms)) == expected


def test_an_explicit_candidate_wins() -> None:
    assert choose_candidate("int8", *_results(0.5, -0.5, 0.1, 1.0)) == "int8"
