"""The drift DAG's task: one drift report per served version over the DAG run's data interval, and whether (and why)
retraining should start. The verdict is the report summary's own (`monitoring.summary`): no threshold is re-read
here."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow.tracking import MlflowClient

from monitoring.job import DriftOutcome, run_drift
from monitoring.settings import MonitoringSettings
from monitoring.summary import drifted_feature_names, number
from monitoring.window import WindowSpec
from orchestration.settings import OrchestrationError, OrchestrationSettings

logger = logging.getLogger(__name__)

ACT = "act"


@dataclass(frozen=True)
class VersionDrift:
    version: str
    rows: int
    reported: bool
    verdict: str | None
    message: str
    report_run_id: str | None
    psi_max: float | None = None
    psi_max_column: str | None = None
    drift_share: float | None = None
    drifted_features: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DriftCheck:
    """What the drift DAG logs and, on drift, hands to retraining (an XCom and the Asset event's extra)."""

    model: str
    window_start: float
    window_end: float
    versions: list[VersionDrift]
    drifted: bool
    reason: str
    report_run_ids: list[str]

    def as_xcom(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(value: object, param: str) -> float | None:
    """A window bound Param: empty/None, Unix seconds, or an ISO 8601 time (with a zone, or taken as UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise OrchestrationError(f"Param {param}: expected Unix seconds or an ISO 8601 time, got {text!r}") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def window_of(
    interval_start: float | None, interval_end: float | None, start: object = None, end: object = None
) -> WindowSpec:
    """The rows scored in the DAG run's data interval, or in [start, end) when the Params name another window.

    A run triggered without a logical date (`airflow dags trigger` without `-l`, REST with `"logical_date": null`)
    has no data interval (None): it needs both Params. A re-run of the same DAG run has the same interval, so it
    reads the same rows (and finds the report it made).
    """
    window_start = parse_time(start, "window_start")
    window_end = parse_time(end, "window_end")
    spec_start = interval_start if window_start is None else window_start
    spec_end = interval_end if window_end is None else window_end
    if spec_start is None or spec_end is None:
        missing = " and ".join(p for p, v in (("window_start", spec_start), ("window_end", spec_end)) if v is None)
        raise OrchestrationError(
            f"this DAG run has no data interval (triggered without a logical date): give the Params {missing}"
        )
    if spec_start >= spec_end:
        raise OrchestrationError(
            f"the drift window is empty: start {spec_start} is not before end {spec_end} (data interval or the "
            "Params window_start/window_end)"
        )
    return WindowSpec(start=spec_start, end=spec_end)


def _version_drift(outcome: DriftOutcome) -> VersionDrift:
    summary = outcome.summary
    if summary is None:
        return VersionDrift(outcome.version, outcome.rows, outcome.reported, None, outcome.message, outcome.run_id)
    return VersionDrift(
        version=outcome.version,
        rows=outcome.rows,
        reported=outcome.reported,
        verdict=str(summary["verdict"]),
        message=outcome.message,
        report_run_id=outcome.run_id,
        psi_max=number(summary, "psi_max"),
        psi_max_column=str(summary["psi_max_column"]),
        drift_share=number(summary, "drift_share"),
        drifted_features=drifted_feature_names(summary),
    )


def describe(version: VersionDrift, settings: MonitoringSettings) -> str:
    """One line of numbers for the task log (and, on drift, the reason retraining starts)."""
    if version.verdict is None:
        return version.message
    return (
        f"version {version.version}: verdict {version.verdict}, {version.rows} rows, PSI max {version.psi_max:.3f} "
        f"({version.psi_max_column}; act above {settings.psi_act:g}), drift share {version.drift_share:.2f} "
        f"(act from {settings.drift_share:g}), drifted features {', '.join(version.drifted_features) or 'none'}; "
        f"report run {version.report_run_id}"
    )


def check_drift(settings: MonitoringSettings, window: WindowSpec) -> DriftCheck:
    """Run the drift job over `window`; drifted when any version's verdict is `act` (PSI over `psi_act` or the drift
    share at its threshold, as the summary decided)."""
    outcomes = run_drift(settings, window)
    versions = [_version_drift(outcome) for outcome in outcomes]
    for version in versions:
        logger.info("%s %s", settings.model_name, describe(version, settings))
    flagged = [version for version in versions if version.verdict == ACT]
    reason = "; ".join(f"{settings.model_name} {describe(version, settings)}" for version in flagged)
    return DriftCheck(
        model=settings.model_name,
        window_start=float(window.start or 0.0),
        window_end=float(window.end or 0.0),
        versions=versions,
        drifted=bool(flagged),
        reason=f"drift: {reason}" if flagged else "no drift",
        report_run_ids=[version.report_run_id for version in flagged if version.report_run_id],
    )


REQUESTED_BY_TAG = "retraining_requested_by"


def request_retraining(tracking_uri: str, report_run_ids: list[str], requester: str) -> str | None:
    """Mark the drift reports as having started retraining (tag `retraining_requested_by` = `requester`, the DAG
    run); returns the earlier requester instead when one of them has started it already, so the same reports (a
    re-run over the same window, a cleared task) never start a second retraining and a second sign-off."""
    client = MlflowClient(tracking_uri)
    for run_id in report_run_ids:
        earlier = client.get_run(run_id).data.tags.get(REQUESTED_BY_TAG)
        if earlier and earlier != requester:
            return str(earlier)
    for run_id in report_run_ids:
        client.set_tag(run_id, REQUESTED_BY_TAG, requester)
    return None


def monitoring_settings_for(registered_model: str = "") -> MonitoringSettings:
    """The drift job's settings for a DAG run: the tracking server resolved now, the Param's model, the rest from the
    environment (`REDIS_URL`, `MONITORING_*`)."""
    base = OrchestrationSettings()
    return MonitoringSettings().model_copy(
        update={"tracking_uri": base.resolved_tracking_uri(), "model_name": registered_model or base.model_name}
    )
