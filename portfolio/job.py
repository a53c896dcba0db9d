"""The portfolio job as one plain function (what the CLI, the MLproject entry point and the monthly DAG call):
resolve the version, check every input and the output folder before anything is written, score with the chosen
engine, log the MLflow run, and fail only above the allowed reject rate."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from mlflow.tracking import MlflowClient

from monitoring.errors import MonitoringInputError
from monitoring.psi import DecileBins, category_counts
from monitoring.reference import Reference, load_reference
from portfolio.errors import PortfolioInputError, RejectRateExceededError
from portfolio.features import ArrowFeatures
from portfolio.local_engine import score_locally
from portfolio.output import OutputFolder
from portfolio.scorer import BatchScorer, PopulationBins, ScoringModel
from portfolio.settings import DEFAULT_VERSION, PortfolioSettings
from portfolio.sources import InputFile, discover, open_inputs
from portfolio.tracking import fail_run, finish_run, population_psi, start_run
from registry.errors import RegistryError
from registry.resolve import ResolvedModel, resolve
from registry.session import open_session
from registry.settings import RegistrySettings
from scoring.contract import SCORE_COLUMN
from scoring.progress import Progress

logger = logging.getLogger(__name__)

Engine = Literal["local", "spark"]


@dataclass(frozen=True)
class ScoringRequest:
    input_path: Path
    output_path: Path
    version: str = DEFAULT_VERSION  # an alias or a version number
    id_columns: tuple[str, ...] = ("account_id",)
    engine: Engine = "local"
    overwrite: bool = False


@dataclass(frozen=True)
class ScoringOutcome:
    model: str
    version: str
    precision: str
    output: Path
    rows_in: int
    scored: int
    rejected: int
    rows_this_run: int  # read by this run (a resumed run skips the parts an earlier one finished)
    rows_per_s: float
    seconds: float
    psi: dict[str, float]
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    run_id: str = ""
    run_url: str = ""

    @property
    def reject_rate(self) -> float:
        return self.rejected / self.rows_in if self.rows_in else 0.0


def resolve_version(settings: PortfolioSettings, version: str) -> ResolvedModel:
    try:
        return resolve(version, RegistrySettings.of(settings, settings.model_cache_dir))
    except RegistryError as error:
        raise PortfolioInputError(str(error)) from error


def scoring_model(resolved: ResolvedModel) -> ScoringModel:
    if resolved.decision_threshold is None:
        raise PortfolioInputError(f"{resolved.name} version {resolved.version} carries no decision threshold")
    return ScoringModel(
        resolved.name, resolved.version, resolved.precision, resolved.decision_threshold, resolved.feature_schema
    )


def population_bins(reference: Reference) -> PopulationBins:
    """PSI bins cut on the training reference (monitoring.psi's rules) and the reference's counts in them."""
    frame, schema = reference.frame, reference.model.feature_schema
    score = DecileBins.of(frame[SCORE_COLUMN])
    numeric = {name: DecileBins.of(frame[name]) for name in schema.numeric}
    counts: dict[str, dict[str, int]] = {SCORE_COLUMN: dict(score.counts(frame[SCORE_COLUMN].to_numpy()))}
    counts |= {name: dict(bins.counts(frame[name].to_numpy())) for name, bins in numeric.items()}
    counts |= {name: dict(category_counts(Counter(frame[name].tolist()))) for name in schema.categorical}
    return PopulationBins(score=score, numeric=numeric, reference_counts=counts)


def id_fields(inputs: list[InputFile], id_columns: tuple[str, ...]) -> list[pa.Field]:
    """The id columns' types, the same in every file (they are passed through to one dataset)."""
    first = inputs[0]
    for file in inputs[1:]:
        for name in id_columns:
            if file.arrow_schema.field(name).type != first.arrow_schema.field(name).type:
                raise PortfolioInputError(
                    f"input {file.path}: id column {name!r} is {file.arrow_schema.field(name).type}, "
                    f"but {first.arrow_schema.field(name).type} in {first.path}"
                )
    return [first.arrow_schema.field(name) for name in id_columns]


def job_identity(
    model: ScoringModel, request: ScoringRequest, inputs: list[InputFile], settings: PortfolioSettings
) -> dict[str, object]:
    """What the output's parts are results of: a run started again with the same identity resumes."""
    identity: dict[str, object] = {
        "model": {"name": model.name, "version": model.version, "precision": model.precision},
        "inputs": [{"path": str(file.path.resolve()), "sha256": file.sha256} for file in inputs],
        "id_columns": list(request.id_columns),
        "engine": request.engine,
    }
    if request.engine == "local":  # part boundaries depend on them; Spark writes its output in one commit
        identity["partitioning"] = {"batch_rows": settings.batch_rows, "rows_per_part": settings.rows_per_part}
    return identity


def score_portfolio(request: ScoringRequest, settings: PortfolioSettings) -> ScoringOutcome:
    if not request.id_columns:
        raise PortfolioInputError("--id-column: name at least one id column (passed through to the output)")
    resolved = resolve_version(settings, request.version)
    model = scoring_model(resolved)
    features = ArrowFeatures(model.schema, list(request.id_columns))
    inputs = open_inputs(discover(request.input_path), features.columns)
    ids = id_fields(inputs, request.id_columns)
    output = OutputFolder(request.output_path)
    client = MlflowClient(settings.tracking_uri)
    try:
        reference: Reference | None = load_reference(client, resolved)
    except MonitoringInputError as error:
        # PSI is reported, not required: a version whose training split cannot be found is still scored.
        logger.warning("no PSI against the training reference: %s", error)
        reference = None
    bins = population_bins(reference) if reference is not None else None
    manifest = output.prepare(job_identity(model, request, inputs, settings), request.overwrite)
    logger.info(
        "scoring %s with %s version %s (%s) into %s, engine %s",
        request.input_path, model.name, model.version, model.precision, request.output_path, request.engine,
    )  # fmt: skip
    job_run = start_run(
        client, settings.experiment_name, model, {"engine": request.engine}, os.environ.get("MLFLOW_RUN_ID")
    )
    try:
        started = time.perf_counter()
        total_rows = sum(file.rows for file in inputs if file.rows is not None)
        known = all(file.rows is not None for file in inputs)
        with Progress(total_rows if known else None, settings.progress_interval_s) as progress:
            if request.engine == "spark":
                from portfolio.spark_engine import score_with_spark

                stats = score_with_spark(resolved, model, bins, inputs, ids, output, manifest, settings)
                progress.update(stats.rows_in)
                rows_this_run = stats.rows_in
            else:
                session, warmup_ms = open_session(resolved, threads=settings.threads)
                logger.info("session open, warm-up %.1f ms", warmup_ms)
                scorer = BatchScorer(model, session, features, bins, ids)
                stats, rows_this_run = score_locally(
                    scorer, inputs, output, manifest, settings.batch_rows, settings.rows_per_part, progress
                )
        seconds = time.perf_counter() - started
        psi = population_psi(bins, stats, model.schema.categorical) if bins is not None else {}
        outcome = ScoringOutcome(
            model=model.name,
            version=model.version,
            precision=model.precision,
            output=request.output_path,
            rows_in=stats.rows_in,
            scored=stats.scored,
            rejected=stats.rejected,
            rows_this_run=rows_this_run,
            rows_per_s=rows_this_run / seconds if seconds > 0 else 0.0,
            seconds=seconds,
            psi=psi,
            rejects_by_reason=dict(stats.rejects_by_reason.most_common()),
            run_id=job_run.run_id,
            run_url=job_run.url,
        )
        too_many = outcome.reject_rate > settings.max_reject_rate
        finish_run(
            job_run,
            _params(request, settings, model),
            stats,
            psi,
            [file.describe() | {"rows": _rows_of(i, file, manifest.parts)} for i, file in enumerate(inputs)],
            seconds,
            rows_this_run,
            reference.frame[SCORE_COLUMN].to_numpy() if reference is not None else np.empty(0),
            model,
            failed=too_many,
        )
    except BaseException as error:
        if job_run.client.get_run(job_run.run_id).info.status == "RUNNING":
            fail_run(job_run, error)
        raise
    if too_many:
        raise RejectRateExceededError(
            f"{outcome.rejected:,} of {outcome.rows_in:,} rows rejected ({outcome.reject_rate:.2%}), above the "
            f"maximum reject rate {settings.max_reject_rate:.2%}: reasons in {request.output_path / 'rejected'} "
            f"and {outcome.run_url}"
        )
    return outcome


def _rows_of(index: int, file: InputFile, parts: dict[str, dict[str, object]]) -> int | None:
    """A file's rows: from its footer (Parquet) or as its finished parts counted them (CSV; unknown under Spark)."""
    if file.rows is not None:
        return file.rows
    counted = [int(str(stats["rows_in"])) for key, stats in parts.items() if key.startswith(f"{index:05d}-")]
    return sum(counted) if counted else None


def _params(request: ScoringRequest, settings: PortfolioSettings, model: ScoringModel) -> dict[str, str]:
    return {
        "model_name": model.name,
        "model_version": model.version,
        "precision": model.precision,
        "decision_threshold": str(model.decision_threshold),
        "version_requested": request.version,
        "input": str(request.input_path),
        "output": str(request.output_path.resolve()),
        "id_columns": ",".join(request.id_columns),
        "engine": request.engine,
        "threads": str(settings.threads),
        "batch_rows": str(settings.batch_rows),
        "rows_per_part": str(settings.rows_per_part),
        "max_reject_rate": str(settings.max_reject_rate),
    }
