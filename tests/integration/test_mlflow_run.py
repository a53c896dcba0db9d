"""`mlflow run . -e <entry point> --env-manager local` against a real tracking server, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import onnx
import pytest
from mlflow.tracking import MlflowClient

from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS
from steps.settings import PipelineSettings
from steps.tracking import pipeline_experiments
from tests.conftest import mlflow_run
from tests.readme_blocks import readme_block, run_readme_text

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ProjectRun:
    result: subprocess.CompletedProcess[str]
    experiment_name: str
    model_name: str


def project_run(tracking_uri: str, entry_point: str, *parameters: str, experiment: str, model: str) -> ProjectRun:
    result = mlflow_run(tracking_uri, entry_point, *parameters, model=model, experiment=experiment)
    return ProjectRun(result, experiment, model)


def runs_of(experiment_name: str) -> list[mlflow.entities.Run]:
    experiment = mlflow.get_experiment_by_name(experiment_name)
    return MlflowClient().search_runs([experiment.experiment_id])


def artifact_files(run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in MlflowClient().list_artifacts(run_id, path):
        found |= artifact_files(run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture(scope="module")
def main_run(mlflow_server: str) -> ProjectRun:
    """The main entry point on the shipped data set, with CV and benchmark shortened to keep the suite quick."""
    suffix = uuid.uuid4().hex[:8]
    return project_run(
        mlflow_server,
        "main",
        "cv_folds=2",
        "benchmark_repeats=200",
        experiment=f"it-main-{suffix}",
        model=f"credit-it-{suffix}",
    )


def test_main_entry_point_succeeds_and_prints_where_to_look(main_run: ProjectRun) -> None:
    assert main_run.result.returncode == 0, main_run.result.stderr[-3000:]
    assert "main run " in main_run.result.stdout
    assert f"registered {main_run.model_name} version 1 (fp32)  <- alias production" in main_run.result.stdout
    assert "first deployment: " in main_run.result.stdout


def test_main_logs_every_step_as_child_runs_tagged_with_the_commit(main_run: ProjectRun) -> None:
    runs = runs_of(main_run.experiment_name)
    by_step = {run.data.tags["step"]: run for run in runs}
    assert {"main", "prepare", "train", "baseline", "convert", "quantize", "benchmark"} == set(by_step)
    parent = by_step["main"]
    for step in ("prepare", "train", "convert", "quantize", "benchmark"):
        assert by_step[step].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert by_step["baseline"].data.tags["mlflow.parentRunId"] == by_step["train"].info.run_id
    assert all(run.info.status == "FINISHED" for run in runs)
    commits = {run.data.tags.get("git_commit") for run in runs if run.data.tags["step"] != "baseline"}
    assert len(commits) == 1 and None not in commits
    assert len(parent.data.tags["mlflow.source.git.commit"]) == 40


def test_main_reaches_the_quality_targets_on_the_shipped_data(main_run: ProjectRun) -> None:
    by_step = {run.data.tags["step"]: run for run in runs_of(main_run.experiment_name)}
    train_metrics = by_step["train"].data.metrics
    assert train_metrics["test_roc_auc"] >= 0.83
    assert by_step["baseline"].data.metrics["test_roc_auc"] > 0.8
    assert 0.75 < train_metrics["cv_roc_auc_mean"] < 0.95
    assert by_step["convert"].data.metrics["parity_max_abs_diff"] <= 1e-4
    assert by_step["quantize"].data.metrics["decision_agreement"] > 0.95
    assert by_step["benchmark"].data.metrics["speedup_onnx_fp32_vs_sklearn_b1"] > 1


def test_main_logs_plots_reports_and_onnx_files(main_run: ProjectRun, tmp_path: Path) -> None:
    by_step = {run.data.tags["step"]: run for run in runs_of(main_run.experiment_name)}
    train_files = artifact_files(by_step["train"].info.run_id)
    assert {f"plots/{name}.png" for name in ("roc_curve", "calibration_curve", "learning_curve")} <= train_files
    assert "reports/classification_report.txt" in train_files
    assert "plots/latency.png" in artifact_files(by_step["benchmark"].info.run_id)
    assert "plots/data_profile.png" in artifact_files(by_step["prepare"].info.run_id)
    for step in ("convert", "quantize"):
        local = mlflow.artifacts.download_artifacts(by_step[step].data.tags["model_uri"], dst_path=str(tmp_path / step))
        graph = onnx.load_model(Path(local) / "model.onnx")
        assert [o.name for o in graph.graph.output] == ["label", "probabilities"]


def test_main_registers_both_and_deploys_the_candidate_with_the_other_staged(main_run: ProjectRun) -> None:
    client = MlflowClient()
    versions = {v.tags["precision"]: v for v in client.search_model_versions(f"name = '{main_run.model_name}'")}
    assert set(versions) == {"fp32", "int8"}
    by_step = {run.data.tags["step"]: run for run in runs_of(main_run.experiment_name)}
    candidate = by_step["main"].data.tags["candidate_precision"]
    # The model had no production version: main promoted its candidate through the gate and staged the other one.
    deployed = client.get_model_version_by_alias(main_run.model_name, PRODUCTION_ALIAS)
    assert deployed.version == versions[candidate].version
    assert deployed.tags["gate_verdict"] == "passed"
    staged = client.get_model_version_by_alias(main_run.model_name, STAGING_ALIAS)
    assert staged.version == versions["int8" if candidate == "fp32" else "fp32"].version
    data_hash = by_step["prepare"].data.tags["data_sha256"]
    for version in versions.values():
        assert version.tags["data_sha256"] == data_hash
        assert float(version.tags["test_roc_auc"]) >= 0.83
        assert float(version.tags["parity_max_abs_diff"]) >= 0
        assert version.tags["git_commit"] == by_step["main"].data.tags["git_commit"]


def test_a_single_step_runs_alone_from_its_upstream_run_id(main_run: ProjectRun, mlflow_server: str) -> None:
    by_step = {run.data.tags["step"]: run for run in runs_of(main_run.experiment_name)}
    experiment = f"it-quantize-{uuid.uuid4().hex[:8]}"
    alone = project_run(
        mlflow_server,
        "quantize",
        f"convert_run_id={by_step['convert'].info.run_id}",
        "method=static",
        experiment=experiment,
        model=main_run.model_name,
    )
    assert alone.result.returncode == 0, alone.result.stderr[-3000:]
    (run,) = runs_of(experiment)
    assert run.data.tags["step"] == "quantize" and run.info.status == "FINISHED"
    assert run.data.params["method"] == "static"
    assert run.data.params["convert_run_id"] == by_step["convert"].info.run_id


def test_the_readmes_step_by_step_commands_run_each_from_the_run_before(
    main_run: ProjectRun, mlflow_server: str
) -> None:
    """README's "one step at a time" block as written, `<run id>` filled in as a user does: the id `mlflow run`
    printed for the step the parameter names (the first from main's prepare run)."""
    by_step = {run.data.tags["step"]: run for run in runs_of(main_run.experiment_name)}
    latest = {"prepare": by_step["prepare"].info.run_id}
    for command in readme_block("pipeline-steps").commands:
        step = re.search(r" -e (\w+)", command)
        upstream = re.search(r"-P (\w+)_run_id=<run id>", command)
        assert step and upstream, command
        result = run_readme_text(command.replace("<run id>", latest[upstream.group(1)]), tracking_uri=mlflow_server)
        assert result.returncode == 0, result.stderr[-3000:]
        succeeded = re.search(r"=== Run \(ID '(\w+)'\) succeeded ===", result.stderr)
        assert succeeded, result.stderr[-2000:]
        run = MlflowClient().get_run(succeeded.group(1))
        assert run.data.tags["step"] == step.group(1) and run.info.status == "FINISHED"
        assert run.data.params[f"{upstream.group(1)}_run_id"] == latest[upstream.group(1)]
        latest[step.group(1)] = run.info.run_id
    assert set(latest) == {"prepare", "train", "tune", "convert", "quantize", "benchmark"}


def test_a_failing_entry_point_exits_non_zero_with_one_clear_line_and_registers_nothing(mlflow_server: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    failed = project_run(
        mlflow_server, "main", "target=Outcome", experiment=f"it-fail-{suffix}", model=f"credit-fail-{suffix}"
    )
    assert failed.result.returncode != 0
    output = failed.result.stdout + failed.result.stderr
    assert "error: main: " in output and "target column 'Outcome' not found" in output
    assert "Traceback" not in output
    statuses = {run.data.tags["step"]: run.info.status for run in runs_of(failed.experiment_name)}
    assert statuses == {"main": "FAILED", "prepare": "FAILED"}
    assert MlflowClient().search_registered_models(f"name = '{failed.model_name}'") == []


def test_the_notebooks_find_the_runs_through_the_registered_model(main_run: ProjectRun, mlflow_server: str) -> None:
    """The experiment is named neither like the model nor by CREDIT_EXPERIMENT_NAME: its versions lead to it."""
    settings = PipelineSettings(tracking_uri=mlflow_server, model_name=main_run.model_name, experiment_name=None)
    experiments = pipeline_experiments(MlflowClient(mlflow_server), settings)
    assert [experiment.name for experiment in experiments] == [main_run.experiment_name]
