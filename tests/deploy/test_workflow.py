""".github/workflows/ci-cd.yml: valid against GitHub's workflow schema, and the pipeline the issue asks for: lint,
tests with a PostgreSQL service container, images built from the repository's Dockerfiles and pushed to
GHCR, a tag deploying an overlay that exists with image names that overlay knows."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.conftest import DOCKERFILES, KUBERNETES, REPO, WORKFLOW, load_yaml, run, tool


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(WORKFLOW)
    return loaded


def test_the_workflow_is_valid_against_githubs_schema() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW))
    assert result.returncode == 0, result.stdout + result.stderr


def test_tests_run_with_a_postgres_service_container_and_terraform(workflow: dict[str, Any]) -> None:
    test = workflow["jobs"]["test"]
    # No Redis service: the tests start their own redis-server (.ci/run installs it), nothing would use one.
    assert set(test["services"]) == {"postgres"}
    assert "redis-server" in (REPO / ".ci" / "run").read_text()
    assert any(step.get("uses", "").startswith("hashicorp/setup-terraform@") for step in test["steps"])
    assert test["services"]["postgres"]["ports"] == ["5432:5432"]  # tests/registry/conftest.py's 127.0.0.1:5432
    assert any(step.get("run") == "bash .ci/run" for step in test["steps"])
    lint = " ".join(step.get("run", "") for step in workflow["jobs"]["lint"]["steps"])
    assert "ruff check" in lint and "ruff format --check" in lint and "mypy" in lint


def test_every_dockerfile_is_built_and_pushed_to_ghcr(workflow: dict[str, Any]) -> None:
    images = workflow["jobs"]["images"]
    assert images["needs"] == ["lint", "test"]
    assert sorted(images["strategy"]["matrix"]["image"]) == sorted(
        p.name.removesuffix(".Dockerfile") for p in DOCKERFILES
    )
    build = next(step for step in images["steps"] if step.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["file"] == "docker/${{ matrix.image }}.Dockerfile"
    # GHCR wants lowercase names: the prefix is the repository lowercased, in every job that names images.
    assert "IMAGE_PREFIX" not in WORKFLOW.read_text()
    prefix = next(step for step in images["steps"] if step.get("id") == "prefix")
    assert "ghcr.io/${GITHUB_REPOSITORY,,}" in prefix["run"]
    meta = next(step for step in images["steps"] if step.get("id") == "meta")
    assert meta["with"]["images"] == "${{ steps.prefix.outputs.lowercase }}/${{ matrix.image }}"
    assert images["permissions"]["packages"] == "write"


def test_a_tag_deploys_an_existing_overlay_with_its_image_names(workflow: dict[str, Any]) -> None:
    deploy = workflow["jobs"]["deploy-canary"]
    assert deploy["if"] == "startsWith(github.ref, 'refs/tags/v')"
    for job in ("deploy-canary", "promote"):
        steps = workflow["jobs"][job]["steps"]
        applying = [step for step in steps if "kubectl apply -k ." in step.get("run", "")]
        assert len(applying) == 1, job
        overlay = REPO / applying[0]["working-directory"]
        assert (overlay / "kustomization.yaml").is_file(), overlay
        known = {image["name"] for image in load_yaml(overlay / "kustomization.yaml")["images"]}
        names = re.findall(r'set image "([^=]+)=', applying[0]["run"])
        for name in names:
            assert name in known, f"{job} sets {name}, which {overlay.relative_to(KUBERNETES)} does not use"
        # Every image set explicitly: an image left out would roll back to the overlay's committed placeholder.
        assert set(names) == known, f"{job} leaves {known - set(names)} on the committed placeholder"
        assert 'prefix="ghcr.io/${GITHUB_REPOSITORY,,}"' in applying[0]["run"], job
    canary = next(step["run"] for step in deploy["steps"] if "kubectl apply -k ." in step.get("run", ""))
    # The tag deploys the canary only: stable keeps the image the cluster runs (the last promoted tag).
    assert 'get deployment "$1"' in canary and "credit-scoring/gateway=${stable:-$new}" in canary
    secret_keys = set(re.findall(r"--from-literal=([A-Z_]+)=", str(deploy["steps"])))
    template = load_yaml(KUBERNETES / "base" / "secrets.example.yaml")
    assert secret_keys == set(template["stringData"])
