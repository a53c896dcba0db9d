"""Which errors are a person's mistake or a decision (a bad Param, a refused gate, a schema change) rather than a
flaky server: a DAG task fails on them at once instead of retrying."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from monitoring.errors import MonitoringInputError
from orchestration.settings import OrchestrationError
from portfolio.errors import PortfolioInputError, RejectRateExceededError
from registry.errors import RegistryError
from steps.errors import StepError

# StepError: a user mistake or a failed check of a step (parity, say). RegistryError covers GateRefusedError and
# SchemaChangeError: retrying would only record the refusal again. PortfolioInputError (a missing column, an alias
# pointing nowhere, the month's folder holding another version's results) and RejectRateExceededError (the output is
# complete; a retry would score nothing and reject the same rows) give the same answer on every try.
USER_ERRORS: tuple[type[Exception], ...] = (
    OrchestrationError,
    StepError,
    RegistryError,
    MonitoringInputError,
    PortfolioInputError,
    RejectRateExceededError,
)


@contextmanager
def fail_fast() -> Iterator[None]:
    """Inside a task: a user mistake or a decision (USER_ERRORS) fails the task at once, without retries; anything else
    (a dropped connection) propagates and is retried. Airflow is imported only when it is needed."""
    try:
        yield
    except USER_ERRORS as error:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(error)) from error
