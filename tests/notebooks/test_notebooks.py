"""The notebooks: committed without outputs, and executed headlessly against a real tracking server that holds a
pipeline run, a tune sweep, a gated first deployment and a drift report (any cell error fails the test)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from monitoring.job import run_drift
from monitoring.settings import MonitoringSettings
from steps.main import main
from steps.model import MLPParams
from steps.settings import PipelineSettings
from steps.tune import grid, tune

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
FAST = MLPParams(hidden_layers=(16,), max_epochs=30, patience=5)


@dataclass(frozen=True)
class PopulatedServer:
    tracking_uri: str
    experiment: str
    model_name: str
    monitoring_experiment: str


def test_there_are_notebooks_and_none_carries_outputs() -> None:
    assert {path.name for path in NOTEBOOKS} == {"compare_runs.ipynb", "model_report.ipynb"}
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for number, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} cell {number}: strip outputs"
        assert "widgets" not in notebook.metadata, f"{path.name}: widget state in the metadata"
        parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
        assert len(parameters) == 1 and "os.environ.get" in parameters[0].source, path.name


@pytest.fixture(scope="module")
def populated_server(mlflow_server: str, small_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> PopulatedServer:
    name = f"credit-notebooks-{uuid.uuid4().hex[:8]}"
    settings = PipelineSettings(tracking_uri=mlflow_server, experiment_name=f"{name}-runs", model_name=name)
    result = main(small_csv, params=FAST, cv_folds=2, batch_sizes=[1, 8], benchmark_repeats=20, candidate="fp32",
                  settings=settings)  # fmt: skip
    assert result.first_deployment and "is now in production" in result.first_deployment
    prepare_run_id = next(iter(_children(mlflow_server, result.run_id, "prepare")))
    tune(prepare_run_id, grid([(8,), (16,)], [0.01, 0.1], FAST), settings)
    # A drift report of production's traffic: real applicants, income halved so that it shows.
    traffic = tmp_path_factory.mktemp("traffic") / "applicants.csv"
    applicants = pd.read_csv(small_csv).drop(columns=["Status"])
    applicants.assign(Income=applicants["Income"] / 2).to_csv(traffic, index=False)
    monitoring = MonitoringSettings(
        tracking_uri=mlflow_server, model_name=name, experiment_name=f"{name}-monitoring", pushgateway_url=None,
        model_cache_dir=tmp_path_factory.mktemp("models"),
    )  # fmt: skip
    (outcome,) = run_drift(monitoring, data_file=traffic)
    assert outcome.reported
    return PopulatedServer(mlflow_server, settings.experiment, name, monitoring.experiment_name)


def _children(tracking_uri: str, parent_run_id: str, step: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.step = '{step}'"
    )
    return [run.info.run_id for run in runs]


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_the_notebook_runs_top_to_bottom_against_the_tracking_server(
    path: Path, populated_server: PopulatedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel inherits this process's environment: the notebooks' parameters cell reads it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", populated_server.tracking_uri)
    monkeypatch.setenv("CREDIT_EXPERIMENT_NAME", populated_server.experiment)
    monkeypatch.setenv("CREDIT_REGISTERED_MODEL_NAME", populated_server.model_name)
    monkeypatch.setenv("MONITORING_EXPERIMENT_NAME", populated_server.monitoring_experiment)
    monkeypatch.setenv("REGISTRY_CACHE_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend turns plots into outputs
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    executed = tmp_path / path.name  # outside the repository: the committed notebook stays stripped
    nbformat.write(notebook, executed)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 3, f"{path.name}: expected its plots, got {len(images)} images"
    text = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", "")) for output in outputs
    )
    assert populated_server.model_name in text or path.stem == "compare_runs"
