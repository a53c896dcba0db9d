"""The container tier's stack: every image built here (scripts.container_images), the compose stack started from an
env file with generated secrets and free host ports, waited for, and torn down afterwards, also when anything failed.

Grafana, Loki and Alloy have no Debian package, so where nothing can be pulled they are not started (their
configurations are checked statically in tests/deploy and tests/monitoring); everything else is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from scripts.container_images import BuiltImage, ImageError, StackImages, build_stack_images, table
from scripts.tracking_server import free_port
from tests.compose.stack import ComposeProject, StackError, generated_secrets

PROJECT = "credit-scoring-e2e"
STARTED = (
    "postgres", "mlflow", "redis", "trainer", "gateway", "pushgateway", "prometheus", "airflow-init",
    "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
)  # fmt: skip
# From nothing: PostgreSQL, MLflow, the whole MLproject in the trainer, then the gateway; Airflow starts beside it.
UP_SECONDS = 900
# service -> (the host port variable of compose/.env, the container port)
PUBLISHED = {
    "gateway": ("GATEWAY_HOST_PORT", 8000),
    "mlflow": ("MLFLOW_HOST_PORT", 5000),
    "airflow-api-server": ("AIRFLOW_HOST_PORT", 8080),
    "prometheus": ("PROMETHEUS_HOST_PORT", 9090),
}


# The images this session built, for the summary at its end (sizes and build times in CI's log).
BUILT: list[BuiltImage] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BUILT:
        terminalreporter.write_sep("-", "images")
        terminalreporter.write_line(table(BUILT, "built (or found in the layer cache) by this session"))


@dataclass(frozen=True)
class Stack:
    project: ComposeProject
    images: StackImages
    ports: dict[str, int]  # service -> host port on 127.0.0.1

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    failure = None
    try:
        images = build_stack_images()
    except ImageError as error:
        failure = f"compose-test: {error}"
    if failure:  # outside the except block: one message, not a chain of tracebacks
        pytest.fail(failure, pytrace=False)
    BUILT.extend(images.built)
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
        project.up(STARTED, UP_SECONDS)
    except StackError as error:
        left = project.down()
        failure = f"compose-test: {error}" + (f"\nleft behind: {left}" if left else "")
    if failure:
        pytest.fail(failure, pytrace=False)
    try:
        yield Stack(project, images, ports)
    finally:
        left = project.down()
        assert not left, f"compose-test: left behind after `down`: {left}"
