"""The step command lines: one clear line and a non-zero exit for a user mistake, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from registry.versions import STAGING_ALIAS
from steps.main import main
from steps.model import MLPParams
from steps.prepare import load_schema
from steps.settings import PipelineSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    module: str, *arguments: str, tracking_uri: str, module_flag: bool = True
) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_EXPERIMENT", "MLFLOW_RUN_ID"))}
    env = {**inherited, "MLFLOW_TRACKING_URI": tracking_uri, "CREDIT_EXPERIMENT_NAME": "test-cli"}
    return subprocess.run(
        [sys.executable, *(["-m", module] if module_flag else [module]), *arguments],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize(
    ("module", "arguments", "expected"),
    [
        (
            "steps.prepare",
            ["--data-path", "no/such/file.csv"],
            "error: prepare: data file no/such/file.csv does not exist",
        ),
        ("steps.prepare", ["--target", "Outcome"], "error: prepare: "),
        ("steps.train", ["--prepare-run-id", "0" * 32], "error: train: prepare run '" + "0" * 32 + "' not found"),
        ("steps.train", ["--prepare-run-id", "x", "--hidden-layers", "64-x"], "error: train: parameter hidden-layers"),
        (
            "steps.benchmark",
            ["--quantize-run-id", "x", "--batch-sizes", "one"],
            "error: benchmark: parameter batch-sizes",
        ),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(mlflow_server: str, module, arguments, expected) -> None:
    result = run_cli(module, *arguments, tracking_uri=mlflow_server)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and error_lines[0].startswith(expected), result.stderr


def test_prepare_cli_names_the_missing_target_column(mlflow_server: str) -> None:
    result = run_cli("steps.prepare", "--target", "Outcome", tracking_uri=mlflow_server)
    assert "target column 'Outcome' not found" in result.stderr


def test_a_failed_check_exits_1_with_one_line(mlflow_server: str, pipeline_runs) -> None:
    result = run_cli(
        "steps.convert",
        "--train-run-id",
        pipeline_runs.trained.run_id,
        "--tolerance",
        "1e-15",
        tracking_uri=mlflow_server,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: convert failed: ONNX parity check failed" in result.stderr


def test_prepare_cli_succeeds_and_reports_its_run(mlflow_server: str, small_csv: Path) -> None:
    result = run_cli("steps.prepare", "--data-path", str(small_csv), tracking_uri=mlflow_server)
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("prepare run ") for line in result.stdout.splitlines())


# `main` run as its CLI against the real server, with the first deployment's promotion raising a RegistryError (what
# promote raises when, say, the version was deleted in between): the only stand-in is that one failure.
FIRST_DEPLOYMENT_FAILS = """
import sys
import steps.registration
from registry.errors import RegistryError


def refuse(*arguments, **options):
    raise RegistryError("credit-cli-test has no version 1")


steps.registration.promote = refuse
from steps.main import cli

cli(sys.argv[1:])
"""


def test_a_registry_error_in_the_first_deployment_is_one_line_and_exit_2(
    mlflow_server: str, small_csv: Path, settings: PipelineSettings
) -> None:
    arguments = ["--data-path", str(small_csv), "--registered-model", settings.model_name, "--cv-folds", "0"]
    arguments += ["--max-epochs", "5", "--batch-sizes", "1", "--benchmark-repeats", "20"]
    result = run_cli("-c", FIRST_DEPLOYMENT_FAILS, *arguments, tracking_uri=mlflow_server, module_flag=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line == "error: main: credit-cli-test has no version 1"
    client = MlflowClient(mlflow_server)
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    assert len(versions) == 2  # registered and staged before the deployment failed; nothing is lost
    assert STAGING_ALIAS in client.get_registered_model(settings.model_name).aliases
    (failed,) = client.search_runs(
        [mlflow.get_experiment_by_name("test-cli").experiment_id],
        f"tags.step = 'main' and attributes.status = 'FAILED' and params.registered_model = '{settings.model_name}'",
    )
    assert "RegistryError" in failed.data.tags["failure_reason"]


def test_main_cli_refuses_another_schema_in_one_line(
    mlflow_server: str, small_csv: Path, settings, tmp_path: Path
) -> None:
    first = main(small_csv, params=MLPParams(hidden_layers=(16,), max_epochs=40, patience=5), cv_folds=0,
                 batch_sizes=[1], benchmark_repeats=20, settings=settings)  # fmt: skip
    assert first.first_deployment and "is now in production" in first.first_deployment
    other = tmp_path / "other.csv"
    pd.read_csv(small_csv).drop(columns=["Price"]).to_csv(other, index=False)
    arguments = ["--data-path", str(other), "--registered-model", settings.model_name, "--cv-folds", "0"]
    result = run_cli("steps.main", *arguments, tracking_uri=mlflow_server)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: main: the new model takes other inputs than {settings.model_name}'s production")
    assert "(-Price)" in line


def test_prepare_cli_takes_categorical_and_dropped_columns(mlflow_server: str, small_csv: Path) -> None:
    arguments = ["--data-path", str(small_csv), "--categorical-columns", "Seniority, Time", "--drop-columns", "Price"]
    result = run_cli("steps.prepare", *arguments, tracking_uri=mlflow_server)
    assert result.returncode == 0, result.stderr
    (summary,) = [line for line in result.stdout.splitlines() if line.startswith("prepare run ")]
    run_id = summary.split()[2].rstrip(":")
    schema = load_schema(run_id)
    assert {"Seniority", "Time"} <= set(schema.categorical) and "Price" not in schema.features
    assert mlflow.get_run(run_id).data.params["categorical_columns"] == "Seniority,Time"
