"""The drift job as one plain function (what the CLI and the drift DAG call): read the window, compute every
version's report and summary, and only then log and push them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import redis
from mlflow.tracking import MlflowClient

from monitoring.errors import MonitoringInputError
from monitoring.publish import ComputedReport, existing_report, publish
from monitoring.reference import Reference, load_reference, normalized_features, resolve_model, score
from monitoring.report import Thresholds, compute_report
from monitoring.settings import MonitoringSettings
from monitoring.summary import Summary, summarize
from monitoring.window import SCORE_COLUMN, VersionWindow, WindowSpec, read_file_window, read_stream_window
from registry.errors import RegistryError
from registry.resolve import ResolvedModel, require_model, version_for_alias
from registry.settings import RegistrySettings
from scoring.schema import FeatureSchema

logger = logging.getLogger(__name__)

DEFAULT_FILE_VERSION = "production"


@dataclass(frozen=True)
class DriftOutcome:
    model: str
    version: str
    rows: int
    reported: bool  # False: skipped (too few rows), with the reason in `message`
    message: str
    summary: Summary | None = None
    run_id: str | None = None
    run_url: str | None = None


def thresholds_of(settings: MonitoringSettings) -> Thresholds:
    return Thresholds(psi_watch=settings.psi_watch, psi_act=settings.psi_act, drift_share=settings.drift_share)


def version_number(client: MlflowClient, name: str, alias_or_version: str) -> str:
    if alias_or_version.isdigit():
        return alias_or_version
    found = version_for_alias(client, name, alias_or_version)
    if found is None:
        raise MonitoringInputError(f"{name} has no alias {alias_or_version!r}: give --version N")
    return str(found.version)


def check_columns(window: VersionWindow, schema: FeatureSchema, allowed_extra: set[str]) -> None:
    """The window's columns must be the version's features (a file may also carry the target)."""
    expected = set(schema.features)
    missing = [name for name in schema.features if name not in window.feature_names]
    unexpected = sorted(window.feature_names - expected - allowed_extra)
    if missing or unexpected:
        problems = [f"missing column(s) {', '.join(missing)}"] * bool(missing)
        problems += [f"unexpected column(s) {', '.join(unexpected)}"] * bool(unexpected)
        raise MonitoringInputError(
            f"{window.source} does not match {window.model} version {window.version}'s schema: {'; '.join(problems)}"
        )


def current_data(window: VersionWindow, model: ResolvedModel, scored_by_gateway: bool) -> pd.DataFrame:
    """The window's rows in the model's dtypes with the score, after checking its columns against the schema."""
    schema = model.feature_schema
    check_columns(window, schema, set() if scored_by_gateway else {schema.target, SCORE_COLUMN})
    current = normalized_features(window.frame, schema, window.source)
    # The stream holds the probability the gateway answered; a file is scored here by the same version.
    current[SCORE_COLUMN] = window.frame[SCORE_COLUMN].to_numpy() if scored_by_gateway else score(model, current)
    return current


def compute(
    window: VersionWindow, current: pd.DataFrame, reference: Reference, thresholds: Thresholds, min_rows: int
) -> ComputedReport:
    schema = reference.model.feature_schema
    report = compute_report(reference.frame, current, schema, thresholds)
    summary = summarize(report.snapshot_dict, schema.features, thresholds)
    return ComputedReport(
        window, reference.prepare_run_id, reference.split_sha256, report, summary, thresholds, min_rows
    )


def run_drift(
    settings: MonitoringSettings | None = None,
    window_spec: WindowSpec | None = None,
    data_file: Path | None = None,
    version: str | None = None,
    on_rows: Callable[[int], None] = lambda rows: None,
) -> list[DriftOutcome]:
    """One drift report per model version in the window (or of `version` for `data_file`), logged to MLflow.

    Windows with fewer than `settings.min_rows` rows are skipped (an outcome that says so); a window whose columns
    do not match the version's schema is a MonitoringInputError naming them. Nothing is logged before every report
    is computed; a failure while logging ends that run FAILED. A window reported before (the same rows: a retried
    task) is not reported again: its outcome is the earlier run's. `on_rows` follows the stream's reading.
    """
    settings = settings or MonitoringSettings()
    client = MlflowClient(settings.tracking_uri)
    name = settings.model_name
    try:
        require_model(client, name)
    except RegistryError as error:
        raise MonitoringInputError(str(error)) from error
    if data_file is not None:
        number = version_number(client, name, version or DEFAULT_FILE_VERSION)
        windows = [read_file_window(Path(data_file), name, number, settings.sample_size, settings.sample_seed)]
    else:
        if version is not None:
            raise MonitoringInputError(
                "--version applies to --file only: the stream records which version scored a row"
            )
        connection = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
        windows = read_stream_window(
            connection,
            settings.prediction_stream,
            name,
            window_spec or WindowSpec(),
            settings.sample_size,
            settings.sample_seed,
            settings.stream_page_entries,
            on_rows=on_rows,
        )
        if not windows:
            message = f"skipped: no rows of {name} in the window of stream {settings.prediction_stream}"
            logger.warning(message)
            return [DriftOutcome(name, "-", 0, False, message)]
    thresholds = thresholds_of(settings)
    outcomes: dict[str, DriftOutcome] = {}
    computed: list[ComputedReport] = []
    for window in windows:
        if window.rows < settings.min_rows:
            message = (
                f"skipped: {name} version {window.version} has {window.rows} row(s) in the window "
                f"({window.source}), at least {settings.min_rows} are needed (MONITORING_MIN_ROWS)"
            )
            logger.warning(message)
            outcomes[window.version] = DriftOutcome(name, window.version, window.rows, False, message)
            continue
        before = existing_report(client, settings.experiment_name, window)
        if before is not None:
            run_id, summary = before
            message = f"{name} version {window.version}: {summary['verdict']} ({window.rows} rows), reported before"
            logger.info("%s: run %s", message, run_id)
            outcomes[window.version] = DriftOutcome(name, window.version, window.rows, True, message, summary, run_id)
            continue
        # The window is checked before the reference is fetched: a mistake in a file fails in seconds.
        model = resolve_model(client, RegistrySettings.of(settings, settings.model_cache_dir), name, window.version)
        current = current_data(window, model, scored_by_gateway=data_file is None)
        reference = load_reference(client, model)
        computed.append(compute(window, current, reference, thresholds, settings.min_rows))
    failures: list[BaseException] = []
    for report in computed:
        window = report.window
        try:
            run_id, url = publish(
                client, settings.experiment_name, report, settings.pushgateway_url, settings.pushgateway_job
            )
        except Exception as error:  # the other versions' reports are still published; the first failure is raised
            logger.error("%s version %s: the report could not be published: %s", name, window.version, error)
            failures.append(error)
            continue
        message = f"{name} version {window.version}: {report.summary['verdict']} ({window.rows} rows)"
        logger.info("%s; report %s", message, url)
        outcomes[window.version] = DriftOutcome(
            name, window.version, window.rows, True, message, report.summary, run_id, url
        )
    if failures:
        raise failures[0]
    return [outcomes[window.version] for window in windows]
