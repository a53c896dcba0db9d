"""Portfolio-job failures meant for a person: one line each, never a traceback."""

from __future__ import annotations


class PortfolioInputError(Exception):
    """A user mistake (a missing column, an unreadable file, an alias that points nowhere, an output folder holding
    another version's results): the CLI prints it as `error: ...` and exits with 2, before any part is written."""


class RejectRateExceededError(Exception):
    """The job scored everything it could, but more rows than `--max-reject-rate` allows were rejected: the output is
    complete (rejects included, with their reasons) and the job fails (exit code 1)."""
