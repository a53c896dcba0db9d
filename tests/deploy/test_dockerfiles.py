"""docker/*.Dockerfile: hadolint-clean, multi-stage, non-root, pinned base, installed from a lock file with uv, a
health check, no build tools and no build CA bundle in the final stage, no `# syntax=` line (BuildKit would pull a
frontend image), every project package the image's code imports; the gateway image holds the serving packages only.
The local stand-ins (docker/local/) are hadolint-clean and non-root too."""

from __future__ import annotations

import re

import pytest

from tests.deploy.conftest import DOCKERFILES, REPO, copy_sources, run, survives_the_build_context, tool

SERVING_ONLY = {"scoring", "registry", "serving"}
STAND_INS = sorted((REPO / "docker" / "local").glob("*.Dockerfile"))
BUILD_VENV = REPO / "docker" / "build-venv.sh"


def instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(path) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(path):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_there_are_the_three_images() -> None:
    assert [path.name for path in DOCKERFILES] == ["airflow.Dockerfile", "gateway.Dockerfile", "trainer.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES + STAND_INS, ids=lambda path: path.name)
def test_hadolint_finds_nothing(dockerfile) -> None:
    result = run(tool("hadolint"), "--failure-threshold", "info", str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_multi_stage_non_root_pinned_locked_and_health_checked(dockerfile) -> None:
    args = dict(instruction[1].split("=", 1) for instruction in instructions(dockerfile) if instruction[0] == "ARG")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", args["PYTHON_IMAGE"])
    build, final = stages(dockerfile)
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build") and final[0] == ("FROM", "${PYTHON_IMAGE} AS runtime")
    build_text = " ".join(rest for _, rest in build)
    lock = re.search(r"/tmp/build-venv\.sh /tmp/(requirements[\w-]*\.lock)", build_text)
    assert lock and (REPO / lock.group(1)).is_file()
    venv_script = BUILD_VENV.read_text()
    assert re.search(r'uv pip install --python /opt/venv/bin/python .*--only-binary :all: -r "\$lock"', venv_script)
    assert not dockerfile.read_text().startswith("# syntax="), "BuildKit would pull the syntax frontend"
    final_text = " ".join(f"{keyword} {rest}" for keyword, rest in final)
    assert "build-ca" not in final_text, "the build CA bundle must stay in the build stage"
    assert not re.search(r"\buv\b|pip install|apt-get install|gcc|build-essential", final_text), (
        "build tools in the final stage"
    )
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert any(keyword == "HEALTHCHECK" for keyword, _ in final)
    for source in copy_sources(dockerfile):
        assert survives_the_build_context(source), f"{dockerfile.name} copies {source}: missing or .dockerignore'd"


def test_the_gateway_image_carries_neither_training_code_nor_the_training_lock() -> None:
    dockerfile = REPO / "docker" / "gateway.Dockerfile"
    copied = {rest.split()[0].rstrip("/") for keyword, rest in instructions(dockerfile) if keyword == "COPY"}
    packages = {name for name in copied if (REPO / name / "__init__.py").is_file()}
    assert packages == SERVING_ONLY
    assert "requirements-serving.lock" in dockerfile.read_text()
    assert "requirements.lock" not in dockerfile.read_text().replace("requirements-serving.lock", "")


def test_the_build_context_check_sees_dockerignore_and_every_source() -> None:
    # What the COPY check relies on: .dockerignore's exclusions, folder patterns and the sources after the first.
    assert survives_the_build_context("registry") and survives_the_build_context("MLproject")
    assert not survives_the_build_context("tests") and not survives_the_build_context("docs/deployment.md")
    assert not survives_the_build_context("registry/__pycache__/x.pyc")
    assert not survives_the_build_context("compose/.env")
    sources = copy_sources(REPO / "docker" / "trainer.Dockerfile")
    assert {"MLproject", "python_env.yaml", "conda.yaml", "requirements.lock"} <= set(sources)


def imported_project_packages(sources: list) -> set[str]:
    """The repository's packages that `sources` import, directly or through each other (names at any indentation:
    the heavy imports of steps/ and orchestration/ sit inside functions)."""
    found: set[str] = set()
    pending = list(sources)
    while pending:
        for name in re.findall(r"^\s*(?:from|import) (\w+)", pending.pop().read_text(), re.M):
            if name not in found and (REPO / name / "__init__.py").is_file():
                found.add(name)
                pending += (REPO / name).glob("*.py")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_every_image_holds_every_project_package_its_code_imports(dockerfile) -> None:
    # What once broke: monitoring/ reads the prediction stream through serving.prediction_log, and the pipeline images
    # had no serving/. The Airflow image's DAGs are mounted; what they import must be in it.
    copied = {source.rstrip("/") for source in copy_sources(dockerfile)}
    packages = {name for name in copied if (REPO / name / "__init__.py").is_file()}
    sources = [file for package in packages for file in (REPO / package).glob("*.py")]
    if dockerfile.name == "airflow.Dockerfile":
        sources += (REPO / "airflow" / "dags").glob("*.py")
        assert "orchestration" in imported_project_packages(list((REPO / "airflow" / "dags").glob("*.py")))
    missing = imported_project_packages(sources) - packages
    assert not missing, f"{dockerfile.name} lacks {missing}"
