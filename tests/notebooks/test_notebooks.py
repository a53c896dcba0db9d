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
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from nbclient import NotebookClient

from monitoring.job import run_drift
from monitoring.settings import MonitoringSettings
from registry.versions import PRODUCTION_ALIAS
from scoring.contract import PREPARE_RUN_ID, STEP_TAG
from steps.model import MLPParams
from steps.settings import PipelineSettings
from steps.tracking import REGISTERED_MODEL_TAG
from steps.tune import grid, tune
from tests.readme_blocks import readme_block, run_readme_text

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
FAST = MLPParams(hidden_layers=(16,), max_epochs=30, patience=5)
ANOTHER_MODEL = "another-model"  # its runs' names


@dataclass(frozen=True)
class PopulatedServer:
    tracking_uri: str
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
    # README's "Running the pipeline yourself" block as written (on this session's server, for another model name):
    # `mlflow run . -e main` without --experiment-name, so MLflow puts the runs in `Default`; the notebooks must find
    # them without being told.
    made = run_readme_text(
        readme_block("pipeline-main").text, tracking_uri=mlflow_server, env={"CREDIT_REGISTERED_MODEL_NAME": name}
    )
    assert made.returncode == 0, made.stderr[-3000:]
    assert "is now in production" in made.stdout
    client = MlflowClient(mlflow_server)
    production = client.get_model_version_by_alias(name, PRODUCTION_ALIAS)
    assert client.get_experiment(client.get_run(production.run_id).info.experiment_id).name == "Default"
    # A tune sweep as `python -m steps.tune` makes it: outside `mlflow run`, in the experiment named like the model.
    settings = PipelineSettings(tracking_uri=mlflow_server, model_name=name, experiment_name=None)
    tune(production.tags[PREPARE_RUN_ID], grid([(8,), (16,)], [0.01, 0.1], FAST), settings)
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
    add_another_models_runs(client, f"{name}-other")
    return PopulatedServer(mlflow_server, name, monitoring.experiment_name)


def add_another_models_runs(client: MlflowClient, model_name: str) -> None:
    """Another model's runs in `Default`, newer than the notebooks' model's: its main run with its prepare run, and a
    train run and a tune sweep made from that prepare run by hand. Tags and params only: all it takes to be shown."""
    made: dict[str, str] = {}
    for step, parent, upstream in [
        ("main", None, None),
        ("prepare", "main", None),
        ("train", None, "prepare"),
        ("tune", None, "prepare"),
        ("tune-trial", "tune", None),
    ]:
        tags = {STEP_TAG: step, REGISTERED_MODEL_TAG: model_name} if step == "main" else {STEP_TAG: step}
        if parent:
            tags[MLFLOW_PARENT_RUN_ID] = made[parent]
        run_id = client.create_run("0", run_name=f"{ANOTHER_MODEL}-{step}", tags=tags).info.run_id
        if upstream:
            client.log_param(run_id, PREPARE_RUN_ID, made[upstream])
        if step == "tune-trial":  # a cell of its own in the sweep, were it shown
            params = [Param("hidden_layers", "99"), Param("alpha", "0.5")]
            client.log_batch(run_id, metrics=[Metric("validation_roc_auc_best", 0.99, 0, 0)], params=params)
        client.set_terminated(run_id)
        made[step] = run_id


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_the_notebook_runs_top_to_bottom_against_the_tracking_server(
    path: Path, populated_server: PopulatedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel inherits this process's environment: the notebooks' parameters cell reads it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", populated_server.tracking_uri)
    monkeypatch.delenv("CREDIT_EXPERIMENT_NAME", raising=False)  # as a user has it: the runs are found, not named
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
    if path.stem == "compare_runs":  # main's runs where `mlflow run` put them, the tune sweep where steps put theirs
        name = populated_server.model_name
        assert f"runs of the {name!r} pipeline in experiment(s) 'Default', {name!r} on " in text
        assert ANOTHER_MODEL not in text  # the newest runs of `Default` (first in the runs table) are not the model's
    else:
        assert populated_server.model_name in text
