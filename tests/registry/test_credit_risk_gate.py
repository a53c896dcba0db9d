"""The gate's calibration and fairness checks, and the model card, on real registered versions (real MLflow server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from registry.card import card_location
from registry.gate import GateRefusedError
from registry.promotion import gate_report, promote
from registry.resolve import version_for_alias
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS
from tests.conftest import Served, mlflow_cli_environment

REPO_ROOT = Path(__file__).resolve().parents[2]


def settings_for(served: Served, tmp_path: Path, **gate: object) -> RegistrySettings:
    return RegistrySettings(
        tracking_uri=served.url, model_name=served.model_name, cache_dir=tmp_path / "models", **gate
    )


def test_calibration_and_fairness_checks_are_off_unless_configured(served: Served, tmp_path: Path) -> None:
    report = gate_report(settings=settings_for(served, tmp_path)).report
    assert report is not None
    assert not [c for c in report.checks if c.name == "ece" or "_gap[" in c.name]


def test_the_gate_refuses_a_calibration_error_above_max_ece(served: Served, tmp_path: Path) -> None:
    report = gate_report(settings=settings_for(served, tmp_path, max_ece=1e-6)).report
    assert report is not None
    (ece,) = [c for c in report.checks if c.name == "ece"]
    assert not ece.passed and ece.threshold == "<= 1e-06" and float(ece.observed) > 0
    loose = gate_report(settings=settings_for(served, tmp_path, max_ece=0.5)).report
    assert loose is not None and [c.passed for c in loose.checks if c.name == "ece"] == [True]


def test_a_fairness_gap_refuses_promotion_naming_the_slice(served: Served, tmp_path: Path) -> None:
    settings = settings_for(served, tmp_path, max_approval_rate_gap=0.0, fairness_min_group_rows=5)
    client = MlflowClient(served.url)
    production_before = version_for_alias(client, served.model_name, PRODUCTION_ALIAS)
    staging = version_for_alias(client, served.model_name, STAGING_ALIAS)
    assert production_before is not None and staging is not None
    with pytest.raises(GateRefusedError) as refused:
        promote(staging.version, reason="fairness check test", actor="test", settings=settings)
    failed = {check.name: check for check in refused.value.report.failed_checks}
    assert {"approval_rate_gap[Age]", "approval_rate_gap[Marital]"} & failed.keys(), failed
    named = next(iter(check for name, check in failed.items() if name.startswith("approval_rate_gap[")))
    assert named.detail.split(":")[0] in ("Age", "Marital") and " vs " in named.detail
    assert version_for_alias(client, served.model_name, PRODUCTION_ALIAS).version == production_before.version
    # the refusal is on the version's model card
    markdown = _card_text(client, served.model_name, staging.version)
    assert "refused" in markdown and "fairness check test" in markdown


def test_a_bad_slicing_column_is_skipped_by_the_gate_not_a_crash(served: Served, tmp_path: Path) -> None:
    settings = settings_for(served, tmp_path, max_auc_gap=1.0, fairness_slices="Region,Age:40")
    report = gate_report(settings=settings).report
    assert report is not None
    checks = {check.name: check for check in report.checks}
    assert checks["roc_auc_gap[Region]"].passed and "not in the data" in checks["roc_auc_gap[Region]"].detail
    assert "roc_auc_gap[Age]" in checks


def test_every_registered_version_has_a_model_card_and_the_cli_says_where(served: Served, tmp_path: Path) -> None:
    client = MlflowClient(served.url)
    for version in ("1", "2"):
        tags = client.get_model_version(served.model_name, version).tags
        location = card_location(tags)
        assert location and location.startswith("runs:/") and location.endswith(f"v{version}_model_card.md")
    markdown = _card_text(client, served.model_name, "1")
    for heading in (
        "## Intended use", "## Data", "## Performance", "## Calibration", "## Score scaling",
        "## Fairness slices", "## Slice Age:25/35/50/65", "## Slice Marital",
        "## INT8 agreement", "## Promotion gate verdicts", "## Limitations",
    ):  # fmt: skip
        assert heading in markdown, heading
    assert "first deployment" in markdown and "passed" in markdown  # version 1's gate verdict
    output = tmp_path / "card"
    environment = mlflow_cli_environment(served.url, CREDIT_REGISTERED_MODEL_NAME=served.model_name)
    shown = subprocess.run(
        [sys.executable, "-m", "registry", "card", "--version", "1", "--output", str(output)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=environment, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "markdown runs:/" in shown.stdout and "html     runs:/" in shown.stdout
    saved = [Path(line.split("saved", 1)[1].strip()) for line in shown.stdout.splitlines() if "saved" in line]
    assert {path.name for path in saved} >= {"v1_model_card.md", "v1_model_card.html", "v1_reliability_diagram.png"}
    assert all(path.is_file() and output in path.parents for path in saved)
    html = next(path for path in saved if path.suffix == ".html").read_text()
    assert html.startswith("<!doctype html>") and "data:image/png;base64," in html and "<table>" in html
    missing = subprocess.run(
        [sys.executable, "-m", "registry", "card", "--version", "999"],
        capture_output=True, text=True, cwd=REPO_ROOT, env=environment, timeout=120, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "has no version 999" in missing.stderr and "Traceback" not in missing.stderr


def _card_text(client: MlflowClient, name: str, version: str) -> str:
    location = card_location(client.get_model_version(name, version).tags)
    assert location is not None
    return str(mlflow.artifacts.load_text(location))
