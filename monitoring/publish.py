"""Persisting a computed drift report: one MLflow run (tags, metrics, HTML report, Evidently snapshot, results,
summary) in the
`monitoring` experiment, and the summary's gauges pushed to a Prometheus Pushgateway for alerting."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from monitoring.report import DriftReport, Thresholds
from monitoring.summary import Summary, number, numeric_part, psi_by_column
from monitoring.window import VersionWindow
from scoring.contract import FAILURE_REASON_TAG, PREPARE_RUN_ID, STEP_TAG, frame_sha256

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "drift"
REPORT_ARTIFACT = f"{ARTIFACT_DIR}/report.html"
SNAPSHOT_ARTIFACT = f"{ARTIFACT_DIR}/snapshot.json"  # Evidently's snapshot (Snapshot.loads reopens it)
RESULTS_ARTIFACT = f"{ARTIFACT_DIR}/results.json"  # its metric and test results as plain JSON
SUMMARY_ARTIFACT = f"{ARTIFACT_DIR}/summary.json"
STEP = "drift"


@dataclass(frozen=True)
class ComputedReport:
    """Everything a report run logs, computed before anything is logged."""

    window: VersionWindow
    reference_prepare_run_id: str
    reference_split_sha256: str
    report: DriftReport
    summary: Summary
    thresholds: Thresholds
    min_rows: int


def iso(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, tags={"purpose": "drift reports of the served model's traffic"})


def run_url(client: MlflowClient, experiment: str, run_id: str) -> str:
    base = str(client.tracking_uri or "")
    if base.startswith(("http://", "https://")):
        return f"{base.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
    return f"run {run_id} of experiment {experiment} at {base or 'the default tracking URI'}"


WINDOW_KEY_TAG = "window_key"


def window_key(window: VersionWindow) -> str:
    """What identifies a window's report: the model, version, source, bounds, row count and the sampled rows' content.
    A re-run over the same rows (a retried task, a scheduler's data interval again) finds the report it made."""
    identity = f"{window.model}|{window.version}|{window.source}|{window.start}|{window.end}|{window.rows}"
    return hashlib.sha256(f"{identity}|{frame_sha256(window.frame)}".encode()).hexdigest()


def existing_report(client: MlflowClient, experiment_name: str, window: VersionWindow) -> tuple[str, Summary] | None:
    """The FINISHED report run of this very window and its summary, if one was logged before."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.{WINDOW_KEY_TAG} = '{window_key(window)}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if not runs:
        return None
    with tempfile.TemporaryDirectory(prefix="credit-drift-") as folder:
        summary: Summary = json.loads(
            Path(client.download_artifacts(runs[0].info.run_id, SUMMARY_ARTIFACT, folder)).read_text()
        )
    return runs[0].info.run_id, summary


def run_tags(computed: ComputedReport) -> dict[str, str]:
    window, summary = computed.window, computed.summary
    return {
        STEP_TAG: STEP,
        WINDOW_KEY_TAG: window_key(window),
        "model": window.model,
        "version": window.version,
        "window_start": iso(window.start),
        "window_end": iso(window.end),
        "rows": str(window.rows),
        "rows_analysed": str(computed.report.current_rows),
        "sampled": str(window.sampled).lower(),
        "source": window.source,
        PREPARE_RUN_ID: computed.reference_prepare_run_id,
        "reference_split_sha256": computed.reference_split_sha256,
        "verdict": str(summary["verdict"]),
        "verdict_reason": str(summary["verdict_reason"]),
        "drifted_feature_names": json.dumps(summary["drifted_feature_names"]),
        "psi_max_column": str(summary["psi_max_column"]),
        "score_drift_method": str(summary["score_drift_method"]),
    }


def run_params(computed: ComputedReport) -> dict[str, str]:
    thresholds = computed.thresholds
    return {
        "psi_watch": str(thresholds.psi_watch),
        "psi_act": str(thresholds.psi_act),
        "drift_share_threshold": str(thresholds.drift_share),
        "sample_size": str(computed.window.sample_size),
        "sample_seed": str(computed.window.sample_seed),
        "min_rows": str(computed.min_rows),
        "reference_rows": str(computed.report.reference_rows),
    }


def push_summary(url: str, job: str, computed: ComputedReport, pushed_at: float) -> None:
    """Replace this model version's group on the Pushgateway with the report's gauges (one PUT)."""
    window, summary = computed.window, computed.summary
    registry = CollectorRegistry()
    labels = ["model", "version"]
    gauges = {
        "credit_drift_share": ("Share of features Evidently finds drifted", number(summary, "drift_share")),
        "credit_drift_drifted_features": ("Features Evidently finds drifted", number(summary, "drifted_features")),
        "credit_drift_verdict": ("0 stable, 1 watch, 2 act", number(summary, "verdict_level")),
        "credit_drift_rows": ("Rows of the version in the report's window", window.rows),
        "credit_drift_psi_threshold": ("PSI above which to act", computed.thresholds.psi_act),
        "credit_drift_share_threshold": ("Drift share from which to act", computed.thresholds.drift_share),
        "credit_drift_last_report_timestamp_seconds": ("When the last drift report was pushed", pushed_at),
    }
    for name, (help_text, value) in gauges.items():
        Gauge(name, help_text, labels, registry=registry).labels(window.model, window.version).set(float(value))
    psi = Gauge("credit_drift_psi", "Credit PSI of a feature or the score", [*labels, "feature"], registry=registry)
    for column, value in psi_by_column(summary).items():
        psi.labels(window.model, window.version, column).set(value)
    push_to_gateway(url, job=job, registry=registry, grouping_key={"model": window.model, "version": window.version})


def publish(
    client: MlflowClient, experiment_name: str, computed: ComputedReport, pushgateway_url: str | None, job: str
) -> tuple[str, str]:
    """Log one run and push the gauges; returns (run id, where to see it). Any failure ends the run FAILED."""
    experiment = experiment_id(client, experiment_name)
    window = computed.window
    run = client.create_run(
        experiment, tags=run_tags(computed), run_name=f"drift {window.model} v{window.version} {iso(window.end)}"
    )
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now, 0) for key, value in numeric_part(computed.summary).items()]
            + [
                Metric("rows", float(window.rows), now, 0),
                Metric("rows_analysed", float(computed.report.current_rows), now, 0),
            ],
            params=[Param(key, value) for key, value in run_params(computed).items()],
        )
        with tempfile.TemporaryDirectory(prefix="credit-drift-") as folder:
            computed.report.save_html(str(Path(folder) / Path(REPORT_ARTIFACT).name))
            (Path(folder) / Path(SNAPSHOT_ARTIFACT).name).write_text(computed.report.snapshot_json())
            (Path(folder) / Path(RESULTS_ARTIFACT).name).write_text(computed.report.results_json())
            (Path(folder) / Path(SUMMARY_ARTIFACT).name).write_text(json.dumps(computed.summary, indent=2))
            client.log_artifacts(run_id, folder, ARTIFACT_DIR)
        if pushgateway_url:
            push_summary(pushgateway_url, job, computed, time.time())
            logger.info("pushed %s version %s drift gauges to %s", window.model, window.version, pushgateway_url)
        else:
            logger.info("no Pushgateway configured (MONITORING_PUSHGATEWAY_URL): gauges not pushed")
    except BaseException as error:
        client.set_tag(run_id, FAILURE_REASON_TAG, f"{type(error).__name__}: {error}"[:5000])
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id, run_url(client, experiment, run_id)
