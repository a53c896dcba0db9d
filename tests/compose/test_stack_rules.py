"""The container tier's rules without Docker: when a service counts as failed or up, which services start, which
variables are secrets. (tests/compose/test_stack.py runs the stack itself, in `make compose-test` only.)"""

from __future__ import annotations

import pytest

from scripts.container_images import STAND_INS, published_image
from tests.compose.conftest import NOT_STARTED
from tests.compose.stack import Container, is_up, services_to_start, what_failed


def container(service: str, state: str = "running", health: str = "healthy", code: int = 0, restarts: int = 0):
    return Container(service, f"x-{service}-1", state, health, code, restarts)


RESTARTED_ONCE = "crashed and was restarted 1 time(s) (exit code 0)"


@pytest.mark.parametrize(
    ("service", "found", "failure"),
    [
        ("gateway", None, "has no container"),
        ("trainer", container("trainer", "exited", "", 1), "exited with code 1"),
        ("gateway", container("gateway", "exited", "", 0), "exited with code 0"),  # a server must not exit at all
        ("gateway", container("gateway", "restarting", "", 3, 2), "crashed and was restarted 2 time(s) (exit code 3)"),
        ("mlflow", container("mlflow", health="starting", restarts=1), RESTARTED_ONCE),
        ("gateway", container("gateway", "running", "unhealthy"), "is unhealthy"),
    ],
)
def test_a_service_that_exited_crashed_or_turned_unhealthy_is_named(service, found, failure) -> None:
    assert what_failed(service, found) == failure


def test_starting_services_and_finished_one_shots_are_not_failures() -> None:
    assert what_failed("gateway", container("gateway", health="starting")) is None
    assert what_failed("trainer", container("trainer", "exited", "", 0)) is None
    # A one-shot that ran in an image with a health check of its own is not "unhealthy" for that.
    assert what_failed("trainer", container("trainer", "running", "unhealthy")) is None


def test_up_means_healthy_or_finished() -> None:
    assert is_up(container("gateway")) and is_up(container("redis", health=""))
    assert not is_up(container("gateway", health="starting"))
    assert is_up(container("trainer", "exited", "", 0)) and not is_up(container("trainer"))


def test_every_service_starts_but_those_without_an_image_here_and_those_behind_a_profile() -> None:
    started = services_to_start(NOT_STARTED)
    assert "drift" not in started and not NOT_STARTED & set(started)
    assert {"postgres", "mlflow", "redis", "trainer", "gateway", "prometheus", "pushgateway"} <= set(started)
    assert {"airflow-init", "airflow-scheduler", "airflow-api-server"} <= set(started)


def test_the_stand_ins_replace_images_the_compose_file_names() -> None:
    for variable in STAND_INS:
        assert ":" in published_image(variable)
