"""The container tier's stack: every image built here (scripts.container_images), the compose stack started from an
env file with generated secrets and free host ports, waited for, and torn down afterwards whatever happened (a failed
check, a timeout, Ctrl-C).

Grafana, Loki and Alloy cannot be had where nothing can be pulled (no Debian package), so they are not started there
(their configurations are checked statically in tests/deploy and tests/monitoring); every other service is.
A failure of the stack itself is one line naming it, then a log's tail; `scripts/compose-test.sh` repeats that line
last (COMPOSE_TEST_FAILURE_FILE).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.container_images import BuiltImage, ImageError, StackImages, build_stack_images, docker, table
from scripts.tracking_server import free_port
from tests.compose.stack import ComposeProject, StackError, generated_secrets, services_to_start

PROJECT = "credit-scoring-e2e"
# Without a registry: no image for these (tests/deploy/test_compose.py checks that nothing else needs them).
NOT_STARTED = {"grafana", "loki", "loki-volume-init", "alloy"}
# From nothing: PostgreSQL, MLflow, the whole MLproject in the trainer, then the gateway; Airflow starts beside it.
UP_SECONDS = 900
# service -> (the host port variable of compose/.env, the container port)
PUBLISHED = {
    "gateway": ("GATEWAY_HOST_PORT", 8000),
    "mlflow": ("MLFLOW_HOST_PORT", 5000),
    "airflow-api-server": ("AIRFLOW_HOST_PORT", 8080),
    "prometheus": ("PROMETHEUS_HOST_PORT", 9090),
}
# What this session built and how long each phase took, for the summary at its end (CI's log keeps them).
BUILT: list[BuiltImage] = []
PHASES: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BUILT:
        terminalreporter.write_sep("-", "images")
        terminalreporter.write_line(table(BUILT, "built (or found in the layer cache) by this session"))
    if PHASES:
        terminalreporter.write_sep("-", "phases")
        for phase, seconds in PHASES.items():
            terminalreporter.write_line(f"{phase:<40} {seconds:>7.1f} s")


def record_failure(line: str) -> None:
    """The first failure of the session, in one line, for scripts/compose-test.sh to print last."""
    failure_file = os.environ.get("COMPOSE_TEST_FAILURE_FILE")
    if failure_file and not Path(failure_file).read_text():
        Path(failure_file).write_text(line.splitlines()[0] + "\n")


def fail_stack(message: str) -> None:
    """Fail the session's stack: one line naming what failed, then a log's tail."""
    record_failure(message.removeprefix("compose-test: ").split("; last lines")[0])
    pytest.fail(message, pytrace=False)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        reason = report.longreprtext.strip().splitlines()[-1:] or [""]
        record_failure(f"{report.nodeid} failed ({report.when}): {reason[0]}")


def dangling_images() -> set[str]:
    return set(docker("images", "--quiet", "--filter", "dangling=true", check=True).stdout.split())


@dataclass(frozen=True)
class Stack:
    project: ComposeProject
    images: StackImages
    new_dangling_images: set[str]  # untagged images that appeared while building (the builds must leave none)
    ports: dict[str, int]  # service -> host port on 127.0.0.1

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = time.monotonic()
    failure = None
    try:
        dangling_before = dangling_images()
        images = build_stack_images()
        new_dangling = dangling_images() - dangling_before
    except ImageError as error:
        failure = f"compose-test: {error}"
    if failure:  # outside the except block: one message, not a chain of tracebacks
        fail_stack(failure)
    BUILT.extend(images.built)
    PHASES["images (base, stand-ins, project)"] = time.monotonic() - started

    ports = {service: free_port() for service in PUBLISHED}
    variables = {
        "COMPOSE_PROJECT_NAME": PROJECT,
        **generated_secrets(),
        **images.variables,
        **{PUBLISHED[service][0]: str(port) for service, port in ports.items()},
    }
    project = ComposeProject(tmp_path_factory.mktemp("compose") / ".env", variables)
    project.down()  # what a killed earlier run may have left
    try:
        started = time.monotonic()
        try:
            project.up(services_to_start(NOT_STARTED), UP_SECONDS)
        except StackError as error:
            failure = f"compose-test: {error}"
        PHASES["compose up until healthy"] = time.monotonic() - started
        if failure:
            fail_stack(failure)
        started = time.monotonic()
        yield Stack(project, images, new_dangling, ports)
        PHASES["checks"] = time.monotonic() - started
    finally:  # whatever ended the session: a failure, a timeout, Ctrl-C
        started = time.monotonic()
        left = project.down()
        PHASES["compose down"] = time.monotonic() - started
    assert not left, f"compose-test: left behind after `down`: {left}"
