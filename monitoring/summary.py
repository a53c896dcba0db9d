"""A drift report flattened into a small dict (drift share, drifted features, PSI per column, verdict): what is logged
as MLflow metrics, pushed to Prometheus and printed. Pure: it reads the snapshot's JSON, nothing else."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monitoring.psi import reading
from monitoring.report import CREDIT_PSI, PSI_BINS_SUFFIX, Thresholds
from monitoring.window import SCORE_COLUMN

Summary = dict[str, float | int | str | list[str]]
VERDICT_LEVELS = {"stable": 0, "watch": 1, "act": 2}
PSI_PREFIX = "psi."


def _kind(config: Mapping[str, Any]) -> str:
    return str(config.get("type", "")).rsplit(":", 1)[-1]


def summarize(snapshot: Mapping[str, Any], features: Sequence[str], thresholds: Thresholds) -> Summary:
    """The summary of a snapshot made by `monitoring.report.compute_report` for these features.

    verdict: `act` when a PSI (of a feature or the score) is above `psi_act` or the drift share reaches
    `drift_share` (Evidently's dataset drift); `watch` when a PSI is at least `psi_watch`; else `stable`. Evidently's
    verdict on a single column is reported but does not move the verdict: with a reference of up to 1,000 rows it
    is a significance test at 5%, which flags one of 14 undrifted columns about half the time.
    """
    drift_share: float | None = None
    psi: dict[str, float] = {}
    score_drift: tuple[str, float] | None = None
    for metric in snapshot["metrics"]:
        config, value = metric["config"], metric["value"]
        kind = _kind(config)
        if kind == "DriftedColumnsCount":
            drift_share = float(value["share"])
        elif kind == "ValueDrift" and config.get("method") == CREDIT_PSI:
            psi[str(config["column"]).removesuffix(PSI_BINS_SUFFIX)] = float(value)
        elif kind == "ValueDrift" and config.get("column") == SCORE_COLUMN:
            score_drift = (str(config.get("method")), float(value))
    failed = {
        str(test["metric_config"]["params"]["column"])
        for test in snapshot.get("tests", [])
        if _kind(test["metric_config"]["params"]) == "ValueDrift"
        and test["metric_config"]["params"].get("method") != CREDIT_PSI
        and test["status"] == "FAIL"
    }
    columns = [*features, SCORE_COLUMN]
    absent = [column for column in columns if column not in psi]
    if drift_share is None or score_drift is None or absent:
        what = ["the drift share"] * (drift_share is None) + ["the score's drift"] * (score_drift is None)
        what += [f"the PSI of {column}" for column in absent]
        raise ValueError(f"the snapshot lacks {', '.join(what)}: not made by monitoring.report?")
    drifted = [feature for feature in features if feature in failed]
    worst = max(columns, key=lambda column: psi[column])
    readings = [reading(psi[column], thresholds.psi_watch, thresholds.psi_act) for column in columns]
    dataset_drift = drift_share >= thresholds.drift_share
    if "act" in readings or dataset_drift:
        verdict = "act"
    elif "watch" in readings:
        verdict = "watch"
    else:
        verdict = "stable"
    by_reading = {
        level: [c for c, r in zip(columns, readings, strict=True) if r == level] for level in ("watch", "act")
    }
    return {
        "verdict": verdict,
        "verdict_reason": _reason(verdict, by_reading, drift_share, dataset_drift, thresholds),
        "verdict_level": VERDICT_LEVELS[verdict],
        "drift_share": drift_share,
        "drifted_features": len(drifted),
        "drifted_feature_names": drifted,
        # Evidently's dataset-level test alone (share of drifted features >= drift_share): one of the verdict's two
        # triggers, so 0 here beside verdict "act" means a PSI set it (verdict_reason says which).
        "evidently_dataset_drift": int(dataset_drift),
        "score_drift_method": score_drift[0],
        "score_drift_score": score_drift[1],
        "score_drifted": int(SCORE_COLUMN in failed),
        "psi_max": psi[worst],
        "psi_max_column": worst,
        "psi_columns_watch": readings.count("watch"),
        "psi_columns_act": readings.count("act"),
        **{f"{PSI_PREFIX}{column}": psi[column] for column in columns},
    }


def _reason(
    verdict: str, by_reading: dict[str, list[str]], drift_share: float, dataset_drift: bool, thresholds: Thresholds
) -> str:
    """What set the verdict, in words (the PSI readings and Evidently's dataset drift are its two triggers)."""
    share = f"Evidently finds {drift_share:.0%} of features drifted"
    if verdict == "stable":
        return f"every PSI below {thresholds.psi_watch:g}; {share} (dataset drift from {thresholds.drift_share:.0%})"
    reasons = []
    if by_reading["act"]:
        reasons.append(f"PSI above {thresholds.psi_act:g} for {', '.join(by_reading['act'])}")
    if dataset_drift:
        reasons.append(f"{share}, at least {thresholds.drift_share:.0%} (Evidently's dataset drift)")
    if verdict == "watch":
        reasons.append(
            f"PSI from {thresholds.psi_watch:g} to {thresholds.psi_act:g} for {', '.join(by_reading['watch'])}"
        )
    return "; ".join(reasons)


def number(summary: Summary, key: str) -> float:
    value = summary[key]
    if not isinstance(value, int | float):
        raise TypeError(f"summary entry {key!r} is not a number: {value!r}")
    return float(value)


def drifted_feature_names(summary: Summary) -> list[str]:
    names = summary["drifted_feature_names"]
    if not isinstance(names, list):
        raise TypeError(f"summary entry 'drifted_feature_names' is not a list: {names!r}")
    return names


def numeric_part(summary: Summary) -> dict[str, float]:
    """The summary's numbers (MLflow metrics); its strings become tags."""
    return {key: float(value) for key, value in summary.items() if isinstance(value, int | float)}


def psi_by_column(summary: Summary) -> dict[str, float]:
    return {
        key.removeprefix(PSI_PREFIX): float(value)
        for key, value in summary.items()
        if key.startswith(PSI_PREFIX) and isinstance(value, int | float)
    }
