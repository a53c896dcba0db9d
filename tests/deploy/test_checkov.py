"""checkov (offline: --skip-download) on the Dockerfiles, the rendered Kubernetes overlays and Terraform: no failed
check but those accepted in .checkov.yaml, one line per check with its reason; and every accepted check must still
fail somewhere (a skip that is no longer needed is removed). checkov runs without the skip list here, so that both
directions can be checked from one run per framework."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO, TERRAFORM, tool

CONFIG = REPO / ".checkov.yaml"
FRAMEWORKS = ("dockerfile", "kubernetes", "terraform")


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
    }
    processes = {
        framework: subprocess.Popen(
            [checkov, "--framework", framework, *target, "--skip-download", "--compact", "--output", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Not from the repository: checkov would read .checkov.yaml there and skip the accepted checks itself.
            cwd=manifests,
        )
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
    found: list[dict[str, Any]] = report.get("results", {}).get(key, [])
    return found


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_no_check_fails_but_the_accepted_ones(reports: dict[str, Any], framework: str) -> None:
    report = reports[framework]
    assert report["check_type"] == framework
    accepted = skips()
    failed = [
        f"{c['check_id']} {c['check_name']} at {c['file_path']} {c['resource']}"
        for c in results(report, "failed_checks")
        if c["check_id"] not in accepted
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 50, f"checkov {framework} checked (almost) nothing"
    assert report["summary"]["parsing_errors"] == 0


def test_every_accepted_check_has_a_reason_and_is_still_needed(reports: dict[str, Any]) -> None:
    accepted = skips()
    assert accepted, "no skip list found in .checkov.yaml"
    for check, reason in accepted.items():
        assert len(reason) > 20, f"{check}: say why it is accepted"
    failing = {c["check_id"] for report in reports.values() for c in results(report, "failed_checks")}
    assert set(accepted) <= failing, f"skips no longer needed: {sorted(set(accepted) - failing)}"
