"""shellcheck on every shell script of the repository (scripts/, .ci/run, docker/ and docker/local/, compose/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, run, tool


def shell_scripts() -> list[Path]:
    candidates = [
        *REPO.glob("scripts/*.sh"),
        REPO / ".ci" / "run",
        *REPO.glob("docker/**/*.sh"),
        *REPO.glob("compose/**/*.sh"),
    ]
    return sorted(path for path in candidates if path.read_text().startswith("#!/usr/bin/env bash"))


def test_every_shell_script_is_found() -> None:
    names = {str(path.relative_to(REPO)) for path in shell_scripts()}
    assert {"scripts/bootstrap.sh", "scripts/test.sh", "scripts/run-main.sh", ".ci/run"} <= names
    assert {"docker/trainer-entrypoint.sh", "docker/airflow-init.sh", "compose/postgres/init-databases.sh"} <= names
    assert {"scripts/compose-test.sh", "docker/build-venv.sh", "docker/byte-compile.sh"} <= names
    assert {"docker/local/build-python-base.sh", "docker/local/postgres-entrypoint.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda path: str(path.relative_to(REPO)))
def test_shellcheck_finds_nothing(script: Path) -> None:
    result = run(tool("shellcheck"), "--severity=style", "--external-sources", str(script))
    assert result.returncode == 0, result.stdout + result.stderr
