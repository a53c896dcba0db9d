"""Each step against a real MLflow tracking server: what it logs, and how it fails."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import onnx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from scoring.contract import frame_sha256, split_artifact, split_sha256_tag
from steps.benchmark import parse_batch_sizes
from steps.convert import convert
from steps.errors import CheckFailedError, UserInputError
from steps.model import MLPParams
from steps.onnx_model import _QuantizerChatter, load_onnx_model
from steps.onnx_model import quantize as quantize_dynamic_model
from steps.prepare import load_prepared, prepare
from steps.quantize import quantize
from steps.train import train
from steps.tune import grid, tune


def artifact_paths(run_id: str, path: str = "") -> set[str]:
    """Every artifact file of a run, recursively."""
    client = MlflowClient()
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(run_id, item.path) if item.is_dir else {item.path}
    return found


def latest_run(experiment_name: str) -> mlflow.entities.Run:
    experiment = mlflow.get_experiment_by_name(experiment_name)
    (run,) = MlflowClient().search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    return run


def test_a_split_read_back_hashes_as_prepare_tagged_it(pipeline_runs, tmp_path: Path) -> None:
    """The gate reports prepare's tag, or (for a run without one) hashes the split it read: the same number."""
    run = MlflowClient().get_run(pipeline_runs.prepared.run_id)
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path=split_artifact("test"), dst_path=str(tmp_path)
    )
    assert frame_sha256(pd.read_parquet(local)) == run.data.tags[split_sha256_tag("test")]


def test_prepare_logs_splits_schema_profile_and_dataset_inputs(pipeline_runs, small_csv: Path) -> None:
    run = mlflow.get_run(pipeline_runs.prepared.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["step"] == "prepare"
    assert len(run.data.tags["git_commit"]) == 40 or run.data.tags["git_commit"] == "unknown"
    assert len(run.data.tags["data_sha256"]) == 64
    metrics = run.data.metrics
    assert metrics["rows_train"] + metrics["rows_validation"] + metrics["rows_test"] == metrics["rows_total"]
    assert 0.2 < metrics["positive_rate_test"] < 0.35
    assert {
        "splits/train.parquet",
        "splits/validation.parquet",
        "splits/test.parquet",
        "schema/feature_schema.json",
        "profile/columns.json",
        "plots/data_profile.png",
    } <= artifact_paths(run.info.run_id)
    contexts = {d.tags[0].value for d in run.inputs.dataset_inputs}
    assert contexts == {"train", "validation", "test"}
    prepared = load_prepared(run.info.run_id)
    assert len(prepared.splits.test) == metrics["rows_test"]
    assert prepared.schema.target == "Status"


def test_train_logs_learning_curves_metrics_plots_baseline_and_model(pipeline_runs) -> None:
    trained = pipeline_runs.trained
    run = mlflow.get_run(trained.run_id)
    client = MlflowClient()
    epochs = int(run.data.metrics["epochs_run"])
    assert len(client.get_metric_history(trained.run_id, "train_loss")) == epochs
    auc_history = client.get_metric_history(trained.run_id, "validation_roc_auc")
    assert [m.step for m in auc_history] == list(range(1, epochs + 1))
    for name in ("roc_auc", "gini", "ks", "brier", "log_loss", "precision", "recall", "f1", "tn", "fp", "fn", "tp"):
        assert f"test_{name}" in run.data.metrics
    assert run.data.metrics["test_gini"] == pytest.approx(2 * run.data.metrics["test_roc_auc"] - 1)
    assert 0 < run.data.metrics["decision_threshold"] < 1
    assert {"cv_roc_auc_mean", "cv_roc_auc_std"} <= run.data.metrics.keys()
    assert run.data.params["hidden_layers"] == "32-16"
    artifacts = artifact_paths(trained.run_id)
    for plot in ("roc_curve", "precision_recall_curve", "calibration_curve", "confusion_matrix", "learning_curve"):
        assert f"plots/{plot}.png" in artifacts
    assert "reports/classification_report.txt" in artifacts
    baseline = mlflow.get_run(trained.baseline_run_id)
    assert baseline.data.tags["mlflow.parentRunId"] == trained.run_id
    assert "test_roc_auc" in baseline.data.metrics
    model = mlflow.sklearn.load_model(trained.model_uri)
    prepared = load_prepared(pipeline_runs.prepared.run_id)
    assert model.predict_proba(prepared.splits.test[prepared.schema.features]).shape[1] == 2
    info = mlflow.models.get_model_info(trained.model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None


def test_convert_logs_a_single_file_onnx_model_within_tolerance(pipeline_runs) -> None:
    converted = pipeline_runs.converted
    run = mlflow.get_run(converted.run_id)
    assert run.data.metrics["parity_max_abs_diff"] < 1e-4
    assert run.data.metrics["parity_rows_checked"] > len(load_prepared(pipeline_runs.prepared.run_id).splits.test)
    local = Path(mlflow.artifacts.download_artifacts(converted.model_uri))
    assert sorted(p.name for p in local.glob("*.onnx")) == ["model.onnx"]
    assert not [p for p in local.iterdir() if p.suffix in {".data", ".bin"}], "external data must not be used"
    model = onnx.load_model(local / "model.onnx")
    assert len(model.graph.input) == 13
    info = mlflow.models.get_model_info(converted.model_uri)
    assert [spec.name for spec in info.signature.inputs.inputs][:2] == ["Seniority", "Home"]
    assert info.metadata["feature_schema"]["categorical"] == ["Home", "Marital", "Records", "Job"]
    assert info.metadata["precision"] == "fp32"


def test_onnx_model_scores_through_mlflow_pyfunc_with_its_input_example(pipeline_runs) -> None:
    converted = pipeline_runs.converted
    local = Path(mlflow.artifacts.download_artifacts(converted.model_uri))
    example = mlflow.models.Model.load(local).load_input_example(local)
    predictions = mlflow.pyfunc.load_model(converted.model_uri).predict(example)
    assert predictions["probabilities"].shape == (5, 2)


def test_convert_refuses_a_model_outside_tolerance_and_logs_no_model(pipeline_runs, settings) -> None:
    with pytest.raises(CheckFailedError, match="exceeds tolerance 1e-12"):
        convert(pipeline_runs.trained.run_id, tolerance=1e-12, settings=settings)
    run = latest_run(settings.experiment_name)
    assert run.info.status == "FAILED"
    assert "parity" in run.data.tags["failure_reason"]
    assert "model_uri" not in run.data.tags


def test_quantize_reports_size_accuracy_and_agreement(pipeline_runs) -> None:
    metrics = pipeline_runs.quantized.metrics
    # No "smaller" assertion: for a tiny MLP the quantization scaffolding can outweigh the saved weight bytes.
    assert metrics["size_ratio"] == pytest.approx(metrics["size_bytes_int8"] / metrics["size_bytes_fp32"])
    assert 0 <= metrics["mean_abs_diff"] <= metrics["max_abs_diff"] < 0.5
    assert metrics["test_roc_auc_delta"] == pytest.approx(metrics["test_roc_auc_int8"] - metrics["test_roc_auc_fp32"])
    assert 0.9 < metrics["decision_agreement"] <= 1.0
    info = mlflow.models.get_model_info(pipeline_runs.quantized.model_uri)
    assert info.metadata["precision"] == "int8"


def test_benchmark_logs_a_row_per_runtime_and_batch_size(pipeline_runs) -> None:
    table = pipeline_runs.benchmarked.table
    assert set(zip(table["runtime"], table["batch_size"], strict=True)) == {
        (runtime, size) for runtime in ("sklearn", "onnx_fp32", "onnx_int8") for size in (1, 8)
    }
    assert (table["p99_ms"] >= table["p50_ms"]).all()
    run = mlflow.get_run(pipeline_runs.benchmarked.run_id)
    assert run.data.metrics["onnx_fp32_b1_p50_ms"] > 0
    assert run.data.metrics["speedup_onnx_fp32_vs_sklearn_b1"] > 1
    assert {"benchmark/latency.csv", "benchmark/latency.txt", "plots/latency.png"} <= artifact_paths(run.info.run_id)
    logged = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="benchmark/latency.csv")
    )
    assert len(logged) == 6


def test_tune_runs_each_configuration_as_a_child_and_picks_the_best(pipeline_runs, settings) -> None:
    configurations = grid([(8,), (16,), (16, 8)], [0.01, 0.1], MLPParams(max_epochs=8, patience=3))
    result = tune(pipeline_runs.prepared.run_id, configurations, settings)
    children = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name(settings.experiment_name).experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'",
    )
    assert len(children) == result.trials == 6
    best = max(children, key=lambda run: run.data.metrics["validation_roc_auc_best"])
    assert best.info.run_id == result.best_run_id
    parent = mlflow.get_run(result.run_id)
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.params["best_hidden_layers"] == best.data.params["hidden_layers"]


def test_a_bad_file_ends_the_prepare_run_failed_with_the_reason(settings, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(UserInputError, match="does not exist"):
        prepare(missing, settings=settings)
    run = latest_run(settings.experiment_name)
    assert run.info.status == "FAILED"
    assert "nowhere.csv does not exist" in run.data.tags["failure_reason"]


@pytest.mark.parametrize("wrong", ["0" * 32, "not-a-run"])
def test_a_step_given_an_unknown_upstream_run_says_so(settings, wrong: str) -> None:
    with pytest.raises(UserInputError, match="not found"):
        train(wrong, settings=settings)


def test_a_step_given_the_wrong_kind_of_run_says_so(pipeline_runs, settings) -> None:
    with pytest.raises(UserInputError, match="is a prepare run, expected a convert run"):
        quantize(pipeline_runs.prepared.run_id, settings=settings)


def test_bad_batch_sizes_name_the_parameter() -> None:
    assert parse_batch_sizes("1, 32 1024") == [1, 32, 1024]
    for text in ("", "a b", "0 4"):
        with pytest.raises(UserInputError, match="batch-sizes"):
            parse_batch_sizes(text)


def test_quantizing_the_pipelines_graph_keeps_onnxruntimes_info_chatter_out_of_the_log(
    pipeline_runs, caplog: pytest.LogCaptureFixture
) -> None:
    mlflow.set_tracking_uri(pipeline_runs.settings.tracking_uri)
    graph = load_onnx_model(pipeline_runs.converted.model_uri)
    schema = load_prepared(pipeline_runs.prepared.run_id).schema
    caplog.set_level(logging.INFO)
    quantize_dynamic_model(graph, schema)
    assert not [r for r in caplog.records if "Quantization parameters" in r.getMessage()], caplog.text
    # What it filters: onnxruntime's INFO lines through the root logger; its warnings, and everyone else's INFO, pass.
    chatter = _QuantizerChatter()
    line = logging.makeLogRecord({"levelno": logging.INFO, "pathname": "/x/onnxruntime/quantization/onnx_quantizer.py"})
    assert not chatter.filter(line)
    assert chatter.filter(logging.makeLogRecord({**line.__dict__, "levelno": logging.WARNING}))
    assert chatter.filter(logging.makeLogRecord({"levelno": logging.INFO, "pathname": "/repo/steps/quantize.py"}))
