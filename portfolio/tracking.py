"""The portfolio job's MLflow run (experiment `portfolio-scoring`): opened before scoring so a crash leaves a FAILED
run behind, and given everything at the end: the version, the input files' hashes and rows, rejects by reason, where
the output is, rows/s, the score distribution as a plot, and the credit PSI of the scored population against the
version's training reference (`monitoring.psi`)."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from monitoring.psi import psi_of_counts, reading
from monitoring.publish import run_url
from monitoring.settings import MonitoringSettings
from portfolio.scorer import HISTOGRAM_BINS, PopulationBins, ScoringModel, ScoringStats
from scoring.contract import FAILURE_REASON_TAG, SCORE_COLUMN, STEP_TAG

STEP = "portfolio-score"
ARTIFACT_DIR = "portfolio"
PLOT_ARTIFACT = f"{ARTIFACT_DIR}/score_distribution.png"
# Credit risk's usual reading of PSI, as the drift job reads it: its settings' defaults (0.10 watch, 0.25 act).
PSI_WATCH = float(MonitoringSettings.model_fields["psi_watch"].default)
PSI_ACT = float(MonitoringSettings.model_fields["psi_act"].default)


@dataclass(frozen=True)
class JobRun:
    client: MlflowClient
    experiment_id: str
    run_id: str

    @property
    def url(self) -> str:
        return run_url(self.client, self.experiment_id, self.run_id)


def start_run(
    client: MlflowClient, experiment_name: str, model: ScoringModel, tags: dict[str, str], project_run_id: str | None
) -> JobRun:
    """A new run in `experiment_name`, or under `mlflow run -e score` the project run MLflow made for the entry point
    (`MLFLOW_RUN_ID`; its experiment is `--experiment-name`'s), so that one run holds it all."""
    run_tags = {STEP_TAG: STEP, "model": model.name, "version": model.version, "precision": model.precision, **tags}
    if project_run_id:
        run = client.get_run(project_run_id)
        for key, value in run_tags.items():
            client.set_tag(project_run_id, key, value)
        return JobRun(client, run.info.experiment_id, project_run_id)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(experiment_name, tags={"purpose": "portfolio scoring with a registered version"})
    )
    run = client.create_run(
        experiment_id,
        tags=run_tags,
        run_name=f"score {model.name} v{model.version} {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}",
    )
    return JobRun(client, experiment_id, run.info.run_id)


def fail_run(job_run: JobRun, error: BaseException) -> None:
    job_run.client.set_tag(job_run.run_id, FAILURE_REASON_TAG, str(error)[:5000] or type(error).__name__)
    job_run.client.set_terminated(job_run.run_id, RunStatus.to_string(RunStatus.FAILED))


def population_psi(bins: PopulationBins, stats: ScoringStats, categorical: list[str]) -> dict[str, float]:
    """Credit PSI per column (the score and every feature) of what was scored against the training reference."""
    return {
        column: psi_of_counts(bins.reference_counts[column], counts)
        for column, counts in stats.binned_psi_counts(categorical).items()
        if sum(counts.values()) and column in bins.reference_counts
    }


def finish_run(
    job_run: JobRun,
    params: dict[str, str],
    stats: ScoringStats,
    psi: dict[str, float],
    inputs: list[dict[str, object]],
    seconds: float,
    rows_this_run: int,
    reference_scores: np.ndarray,
    model: ScoringModel,
    failed: bool = False,
) -> None:
    client, run_id = job_run.client, job_run.run_id
    now = int(time.time() * 1000)
    metrics: dict[str, float] = {
        "rows_in": stats.rows_in,
        "rows_scored": stats.scored,
        "rows_rejected": stats.rejected,
        "reject_rate": stats.rejected / stats.rows_in if stats.rows_in else 0.0,
        "rows_scored_this_run": rows_this_run,
        "seconds": seconds,
        "rows_per_s": rows_this_run / seconds if seconds > 0 else 0.0,
        "mean_probability_of_default": stats.score_sum / stats.scored if stats.scored else 0.0,
        "predicted_default_rate": stats.predicted_default / stats.scored if stats.scored else 0.0,
        **{f"psi_{column}": value for column, value in psi.items()},
    }
    tags = {
        "psi_score_reading": reading(psi[SCORE_COLUMN], PSI_WATCH, PSI_ACT) if SCORE_COLUMN in psi else "n/a",
        "rejects_by_reason": json.dumps(dict(stats.rejects_by_reason.most_common(20)))[:5000],
    }
    # Under `mlflow run -e score` MLflow logged the entry point's parameters already (`input`, `output` as typed):
    # a logged param cannot change, so those are kept as they are.
    logged = client.get_run(run_id).data.params
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
        params=[Param(key, value[:6000]) for key, value in params.items() if key not in logged],
    )
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    with tempfile.TemporaryDirectory(prefix="credit-portfolio-") as folder:
        root = Path(folder)
        _write_json(root / "inputs.json", inputs)
        _write_json(root / "rejects_by_reason.json", dict(stats.rejects_by_reason.most_common()))
        _write_json(root / "psi.json", {column: round(value, 6) for column, value in sorted(psi.items())})
        _write_json(root / "score_histogram.json", {"bins": HISTOGRAM_BINS, "counts": stats.score_histogram})
        plot_score_distribution(root / Path(PLOT_ARTIFACT).name, stats, reference_scores, model, psi.get(SCORE_COLUMN))
        client.log_artifacts(run_id, folder, ARTIFACT_DIR)
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED))


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False))


def plot_score_distribution(
    path: Path, stats: ScoringStats, reference_scores: np.ndarray, model: ScoringModel, score_psi: float | None
) -> None:
    """The scored population's probability of default beside the training reference's, with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    counts = np.asarray(stats.score_histogram, dtype=np.float64)
    reference, _ = np.histogram(reference_scores, bins=edges)
    figure, axis = plt.subplots(figsize=(8, 4.5))
    width = edges[1] - edges[0]
    axis.bar(edges[:-1], counts / max(counts.sum(), 1), width=width, align="edge", alpha=0.7, label="portfolio")
    axis.step(edges[:-1], reference / max(reference.sum(), 1), where="post", color="black", label="training reference")
    axis.axvline(
        model.decision_threshold, color="tab:red", linestyle="--", label=f"threshold {model.decision_threshold:.3f}"
    )
    psi_text = f", score PSI {score_psi:.3f}" if score_psi is not None else ""
    axis.set_title(f"{model.name} v{model.version}: {stats.scored:,} rows scored{psi_text}")
    axis.set_xlabel("probability of default")
    axis.set_ylabel("share of rows")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
