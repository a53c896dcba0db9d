"""What the deployment checks share: the repository's paths, the validators (a missing one fails under CI, skips
elsewhere), the overlays rendered by `kubectl kustomize`, and YAML loading."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose" / "docker-compose.yml"
WORKFLOW = REPO / ".github" / "workflows" / "ci-cd.yml"
KUBERNETES = REPO / "deploy" / "kubernetes"
OVERLAYS = sorted(path for path in (KUBERNETES / "overlays").iterdir() if path.is_dir())
TERRAFORM = REPO / "deploy" / "terraform"
DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))
VALIDATE_VENV = REPO / ".venv-validate"
SERVING_VENV = REPO / ".venv-serving"


def missing_tool(reason: str) -> None:
    """Skip here, fail under CI: a machine without the tool must not pass by skipping (.ci/run installs them)."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def tool(name: str) -> str:
    """A validator: from .venv-validate (checkov), the test's own environment (.venv/bin), or the machine."""
    for folder in (VALIDATE_VENV / "bin", Path(sys.executable).parent):
        candidate = folder / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        missing_tool(f"{name} is not installed (scripts/bootstrap.sh validate, or .ci/run's apt packages)")
        raise AssertionError("unreachable")
    return found


def run(*command: str, timeout: float = 120, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay rendered by `kubectl kustomize`: overlay name -> its manifests."""
    kubectl = tool("kubectl")
    manifests = {}
    for overlay in OVERLAYS:
        result = run(kubectl, "kustomize", str(overlay))
        assert result.returncode == 0, result.stderr
        manifests[overlay.name] = load_all(result.stdout)
    return manifests


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def dockerignore_patterns() -> list[tuple[bool, str]]:
    """.dockerignore's patterns in order: (is an exception `!...`, the pattern without leading/trailing slashes)."""
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            exception = line.startswith("!")
            patterns.append((exception, line.removeprefix("!").strip("/")))
    return patterns


def dockerignored(relative: str) -> bool:
    """Whether the build context leaves `relative` out: the last matching pattern decides (as Docker does); a pattern
    matching a parent folder excludes what is below it; `**/` matches any number of folders."""
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for exception, pattern in dockerignore_patterns():
        alternatives = {pattern, pattern.replace("**/", "")} if "**/" in pattern else {pattern}
        if any(fnmatch.fnmatch(prefix, alt) for prefix in prefixes for alt in alternatives):
            ignored = not exception
    return ignored


def copy_sources(dockerfile: Path) -> list[str]:
    """Every source of every COPY from the build context (not `--from=`), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    sources = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(word.startswith("--from") for word in words):
            sources += [word for word in words[1:-1] if not word.startswith("--")]
    return sources


def survives_the_build_context(source: str) -> bool:
    """`source` exists in the repository and reaches the build: itself, or for a folder some file below it."""
    path = REPO / source
    if not path.exists() or dockerignored(source):
        return False
    if path.is_file():
        return True
    return any(not dockerignored(str(file.relative_to(REPO))) for file in path.rglob("*") if file.is_file())
