"""The monthly portfolio DAG's tasks: score the configured book with a registered version (the `production` alias,
resolved when the task runs) into one output folder per month, with the month's record as the task's result.

The month's folder is `<output_root>/<YYYY-MM>/`, the month of the DAG run's data interval start: a retry or a re-run
of the same month resumes in the same folder (the job skips its finished parts), and a new month never writes into
the last one's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from orchestration.settings import DagParams, OrchestrationError, OrchestrationSettings
from portfolio.job import ScoringOutcome, ScoringRequest, score_portfolio
from portfolio.settings import DEFAULT_VERSION, PortfolioSettings
from registry.errors import validation_problems
from scoring.contract import SCORE_COLUMN

logger = logging.getLogger(__name__)

BOOK_PATH_ENV = "PORTFOLIO_BOOK_PATH"
OUTPUT_ROOT_ENV = "PORTFOLIO_OUTPUT_ROOT"
MONTH_FORMAT = "%Y-%m"
MONTH_PATTERN = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
REJECT_REASONS_KEPT = 10  # the record travels as an XCom and an Asset event: the full table is in the MLflow run


class MonthlyPortfolioSettings(PortfolioSettings):
    """The portfolio job's settings (`PORTFOLIO_*`) plus where the monthly DAG reads the book and writes the months,
    the defaults of its Params `book_path` and `output_root`."""

    book_path: str = ""  # PORTFOLIO_BOOK_PATH
    output_root: str = ""  # PORTFOLIO_OUTPUT_ROOT


class PortfolioParams(DagParams):
    """The portfolio DAG's Params, checked once: a bad value names its Param."""

    book_path: str = ""  # empty: PORTFOLIO_BOOK_PATH
    output_root: str = ""  # empty: PORTFOLIO_OUTPUT_ROOT
    id_columns: str = "account_id"  # comma-separated, passed through to the output
    version: str = DEFAULT_VERSION  # an alias or a version number, resolved when the task runs
    max_reject_rate: float | None = Field(default=None, ge=0, le=1)  # None: PORTFOLIO_MAX_REJECT_RATE, else 0.01
    registered_model: str = ""  # empty: CREDIT_REGISTERED_MODEL_NAME
    month: str = ""  # empty: the month of the data interval's start; else YYYY-MM

    @field_validator("id_columns")
    @classmethod
    def _some_id_column(cls, value: str) -> str:
        if not id_column_list(value):
            raise ValueError("name at least one id column (comma-separated), e.g. account_id")
        return value

    @field_validator("version")
    @classmethod
    def _some_version(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("an alias (production) or a version number")
        return value.strip()

    @field_validator("month")
    @classmethod
    def _month(cls, value: str) -> str:
        value = value.strip()
        if value and not MONTH_PATTERN.fullmatch(value):
            raise ValueError(f"expected YYYY-MM, got {value!r}")
        return value


def id_column_list(text: str) -> list[str]:
    return list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def month_of(interval_start: datetime | None, month: str = "") -> str:
    """The month a run scores, `YYYY-MM`: the Param when given, else the month of the data interval's start (a
    monthly run on the 2nd covers the month before it). A run triggered without a logical date has no interval."""
    if month:
        return month
    if interval_start is None:
        raise OrchestrationError(
            "this DAG run has no data interval (triggered without a logical date): give the Param month (YYYY-MM)"
        )
    return interval_start.strftime(MONTH_FORMAT)


def month_folder(output_root: Path, month: str) -> Path:
    """Where a month's scores go: one folder per month, so a re-run resumes and a new month starts afresh."""
    return output_root / month


@dataclass(frozen=True)
class MonthScores:
    """What a month's scoring hands on: the task's XCom and the extra of the Asset event (plain values only)."""

    month: str
    model: str
    version: str  # the version scored (the alias resolved when the task ran)
    version_requested: str  # the Param: an alias or a number
    precision: str
    input: str
    output: str
    rows: int
    scored: int
    rejected: int
    reject_rate: float
    rows_scored_this_run: int  # 0: every part was finished by an earlier run (nothing new)
    rows_per_s: float
    seconds: float
    score_psi: float | None  # the probability of default's PSI against the version's training reference
    psi: dict[str, float]
    mlflow_run_id: str
    mlflow_run_url: str
    rejects_by_reason: dict[str, int] = field(default_factory=dict)  # the most frequent reasons

    def as_xcom(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One log line of what was scored, with what and where."""
        psi = "n/a" if self.score_psi is None else f"{self.score_psi:.4f}"
        resumed = "" if self.rows_scored_this_run == self.rows else f", {self.rows_scored_this_run:,} of them this run"
        return (
            f"portfolio {self.month}: {self.model} version {self.version} ({self.precision}, requested "
            f"{self.version_requested}) scored {self.scored:,} of {self.rows:,} rows{resumed}, {self.rejected:,} "
            f"rejected ({self.reject_rate:.2%}), {self.rows_per_s:,.0f} rows/s, score PSI {psi}; output {self.output}; "
            f"MLflow run {self.mlflow_run_url}"
        )

    @classmethod
    def of(cls, month: str, requested: str, book: Path, outcome: ScoringOutcome) -> MonthScores:
        return cls(
            month=month,
            model=outcome.model,
            version=outcome.version,
            version_requested=requested,
            precision=outcome.precision,
            input=str(book),
            output=str(outcome.output),
            rows=outcome.rows_in,
            scored=outcome.scored,
            rejected=outcome.rejected,
            reject_rate=outcome.reject_rate,
            rows_scored_this_run=outcome.rows_this_run,
            rows_per_s=outcome.rows_per_s,
            seconds=outcome.seconds,
            score_psi=outcome.psi.get(SCORE_COLUMN),
            psi=dict(sorted(outcome.psi.items())),
            mlflow_run_id=outcome.run_id,
            mlflow_run_url=outcome.run_url,
            rejects_by_reason=dict(list(outcome.rejects_by_reason.items())[:REJECT_REASONS_KEPT]),
        )


def _configured_path(param_value: str, env_value: str, param: str, variable: str, what: str) -> tuple[Path, str]:
    """The path a Param gives, else its variable, and which of the two gave it (for the messages)."""
    param_value, env_value = param_value.strip(), env_value.strip()
    if not (param_value or env_value):
        raise OrchestrationError(f"Param {param} is empty and {variable} is not set: give {what}")
    source = f"Param {param}" if param_value else variable
    path = Path(param_value or env_value)
    if not path.is_absolute():
        raise OrchestrationError(f"{source}: '{path}' is not an absolute path (a worker's working folder is arbitrary)")
    return path, source


def book_of(params: PortfolioParams, settings: MonthlyPortfolioSettings) -> Path:
    """The book to score (a Parquet/CSV file or a folder of them): the Param, else PORTFOLIO_BOOK_PATH."""
    book, source = _configured_path(
        params.book_path, settings.book_path, "book_path", BOOK_PATH_ENV, "the book to score (a file or folder)"
    )
    if not book.exists():
        raise OrchestrationError(f"{source}: no such file or folder on this worker: {book}")
    return book


def output_root_of(params: PortfolioParams, settings: MonthlyPortfolioSettings) -> Path:
    """The folder holding one folder per month: the Param, else PORTFOLIO_OUTPUT_ROOT. It must exist: created here,
    a missing mount would put the scores on the worker's own disk."""
    root, source = _configured_path(
        params.output_root, settings.output_root, "output_root", OUTPUT_ROOT_ENV, "the folder of the months' scores"
    )
    if not root.is_dir():
        raise OrchestrationError(f"{source}: no such folder on this worker (is its volume mounted?): {root}")
    return root


def portfolio_settings(params: PortfolioParams, base: OrchestrationSettings | None = None) -> MonthlyPortfolioSettings:
    """The job's settings for a DAG run: the tracking server resolved now (env or Airflow connection), the Params'
    model and reject rate, the rest from the environment (`PORTFOLIO_*`)."""
    base = base or OrchestrationSettings()
    try:
        settings = MonthlyPortfolioSettings()
    except ValidationError as error:  # e.g. PORTFOLIO_BATCH_ROWS=lots: the same answer on every retry
        raise OrchestrationError(f"the portfolio job's settings (PORTFOLIO_*): {validation_problems(error)}") from error
    update: dict[str, Any] = {
        "tracking_uri": base.resolved_tracking_uri(),
        "model_name": params.registered_model or base.model_name,
    }
    if params.max_reject_rate is not None:
        update["max_reject_rate"] = params.max_reject_rate
    return settings.model_copy(update=update)


def score_month(
    params: PortfolioParams, interval_start: datetime | None, settings: MonthlyPortfolioSettings
) -> MonthScores:
    """Score the configured book into its month's folder (resuming an earlier attempt's finished parts) and return
    the record. Every configuration mistake is found before anything is read or written."""
    month = month_of(interval_start, params.month)
    book = book_of(params, settings)
    output = month_folder(output_root_of(params, settings), month)
    request = ScoringRequest(
        input_path=book,
        output_path=output,
        version=params.version,
        id_columns=tuple(id_column_list(params.id_columns)),
        engine="local",
        overwrite=False,  # never: another version's results in the month's folder are a person's decision
    )
    logger.info("portfolio %s: scoring %s with %s@%s into %s", month, book, settings.model_name, params.version, output)
    record = MonthScores.of(month, params.version, book, score_portfolio(request, settings))
    logger.info("%s", record.summary())
    return record
