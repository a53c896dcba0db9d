"""checkov (offline: --skip-download) on the Dockerfiles, the rendered Kubernetes overlays, Terraform and the
workflow: no failed check. What is accepted is skipped in .checkov.yaml, one line per check with its reason, and
every skip there must still be needed (a check that no longer fails is removed from the list)."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO, TERRAFORM, WORKFLOW, tool

CONFIG = REPO / ".checkov.yaml"
FRAMEWORKS = ("dockerfile", "kubernetes", "terraform", "github_actions")


def skips() -> dict[str, str]:
    """Skipped check id -> its reason (the comment on its line)."""
    found = {}
    for line in CONFIG.read_text().splitlines():
        match = re.match(r"\s*-\s*(CKV\w+)\s*(?:#\s*(.*))?$", line)
        if match:
            found[match.group(1)] = (match.group(2) or "").strip()
    return found


@pytest.fixture(scope="module")
def reports(rendered: dict[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov process per framework, all started at once (checkov takes seconds to start): framework -> report."""
    checkov = tool("checkov")
    manifests = tmp_path_factory.mktemp("rendered")
    for overlay, docs in rendered.items():
        (manifests / f"{overlay}.yaml").write_text(yaml.safe_dump_all(docs))
    targets = {
        "dockerfile": ["-d", str(REPO / "docker")],
        "kubernetes": ["-d", str(manifests)],
        "terraform": ["-d", str(TERRAFORM)],
        "github_actions": ["-d", str(WORKFLOW.parent.parent.parent)],
    }
    processes = {
        framework: subprocess.Popen(
            [
                checkov,
                "--config-file",
                str(CONFIG),
                "--framework",
                framework,
                *target,
                "--skip-download",
                "--quiet",
                "--compact",
                "--output",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        for framework, target in targets.items()
    }
    found = {}
    for framework, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert out.strip(), f"checkov {framework} printed nothing: {err[-2000:]}"
        report = json.loads(out)
        found[framework] = report[0] if isinstance(report, list) else report
    return found


def results(report: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return report.get("results", {}).get(key, []) if "results" in report else []


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_no_check_fails(reports: dict[str, Any], framework: str) -> None:
    report = reports[framework]
    assert report.get("check_type") == framework or report.get("summary", {}).get("passed", 0) >= 0
    failed = [
        f"{c['check_id']} {c['check_name']} at {c['file_path']}:{c['resource']}"
        for c in results(report, "failed_checks")
    ]
    assert not failed, "\n".join(failed)
    assert results(report, "passed_checks"), f"checkov {framework} checked nothing"


def test_every_skip_has_a_reason_and_is_still_needed(reports: dict[str, Any]) -> None:
    configured = skips()
    assert configured, "no skip list found in .checkov.yaml"
    for check, reason in configured.items():
        assert len(reason) > 20, f"{check}: say why it is accepted"
    skipped = {c["check_id"] for report in reports.values() for c in results(report, "skipped_checks")}
    assert set(configured) <= skipped, f"skips no longer needed: {sorted(set(configured) - skipped)}"
