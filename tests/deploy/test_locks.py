"""The lock files: the gateway's holds no training stack and no Airflow, every subset pins what requirements.lock
pins, and checkov stays out of the main environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO

FORBIDDEN_IN_SERVING = {
    "pandas", "scikit-learn", "scipy", "matplotlib", "evidently", "skl2onnx", "pyarrow", "mlflow", "apache-airflow",
}  # fmt: skip


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


@pytest.fixture(scope="module")
def full() -> dict[str, str]:
    return pins(REPO / "requirements.lock")


def test_the_serving_lock_holds_the_client_and_no_training_stack(full: dict[str, str]) -> None:
    serving = pins(REPO / "requirements-serving.lock")
    assert {"mlflow-skinny", "onnxruntime", "flask", "granian", "gunicorn", "redis"} <= set(serving)
    assert not FORBIDDEN_IN_SERVING & set(serving), FORBIDDEN_IN_SERVING & set(serving)
    assert len(serving) < len(full) / 2


@pytest.mark.parametrize("lock", ["requirements-serving.lock", "requirements-pipeline.lock"])
def test_every_subset_pins_the_versions_the_suite_runs_with(full: dict[str, str], lock: str) -> None:
    subset = pins(REPO / lock)
    different = {name: (version, full.get(name)) for name, version in subset.items() if full.get(name) != version}
    assert not different, f"{lock} differs from requirements.lock: {different} (scripts/lock.sh re-resolves both)"


def test_the_pipeline_lock_has_what_the_trainer_mlflow_and_airflow_images_run(full: dict[str, str]) -> None:
    pipeline = pins(REPO / "requirements-pipeline.lock")
    assert {"mlflow", "scikit-learn", "skl2onnx", "psycopg", "boto3", "evidently"} <= set(pipeline)
    assert not {"pytest", "ruff", "jupyterlab"} & set(pipeline), "dev and notebook tools are not for the images"
    # The Airflow image runs the DAGs (the `airflow` extra): Airflow itself and the standard provider (HITL approval).
    assert {"apache-airflow", "apache-airflow-core", "apache-airflow-providers-standard"} <= set(pipeline)


def test_checkov_lives_in_its_own_lock(full: dict[str, str]) -> None:
    assert "checkov" not in full
    assert "checkov" in pins(REPO / "requirements-validate.lock")
    assert "python-hcl2" in full  # the tests parse Terraform in the main environment


def test_pyyaml_is_declared_for_the_gateway(full: dict[str, str]) -> None:
    # registry/resolve.py imports yaml itself (MLmodel files): declared, not left to mlflow-skinny.
    pyproject = (REPO / "pyproject.toml").read_text()
    base = pyproject.split("[project.optional-dependencies]", 1)[0]
    assert '"pyyaml>=6,<7"' in base
    assert "pyyaml" in pins(REPO / "requirements-serving.lock")


def test_one_uv_everywhere_and_every_venv_synced(full: dict[str, str]) -> None:
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    pinned = re.search(r"^uv_version=(\S+)$", bootstrap, re.M)
    assert pinned, "scripts/bootstrap.sh pins no uv"
    # The images install their lock with docker/build-venv.sh: one uv pin for all three.
    assert re.findall(r'"uv==([^"]+)"', (REPO / "docker" / "build-venv.sh").read_text()) == [pinned.group(1)]
    for dockerfile in sorted((REPO / "docker").glob("*.Dockerfile")):
        assert "/tmp/build-venv.sh /tmp/requirements" in dockerfile.read_text(), dockerfile.name
    assert full.get("uv") == pinned.group(1), "requirements.lock's uv (kept by `uv pip sync`) differs"
    # `uv pip install` never removes a package dropped from a lock: .venv-serving would drift from the image.
    assert "uv pip sync" in bootstrap and not re.search(r"uv pip install\b", bootstrap)
