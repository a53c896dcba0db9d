"""Fairness slices: how a version treats groups of applicants, with fairlearn's `MetricFrame`.

Per group of each slicing column (numbers cut into bands at given edges, e.g. age bands; categories as they are):
rows, ROC AUC, approval rate (share scored below the decision threshold), default rate among the approved, mean
predicted probability of default against the observed default rate and their difference (`calibration_bias`). A gap
is the largest difference between two groups with at least `min_rows` rows (smaller groups are shown, not compared:
their rates are mostly noise). Used by the train step (logged per version) and the promotion gate (`max_*_gap`).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from sklearn.metrics import roc_auc_score

from registry.slices import GAP_METRICS, MIN_GROUP_ROWS, SliceSpec
from scoring.onnx_runtime import decisions

logger = logging.getLogger(__name__)


def groups_of(values: pd.Series, spec: SliceSpec) -> pd.Series:
    """Each row's group label ("missing" where the value is)."""
    if not spec.edges:
        return values.astype(str).where(values.notna() & (values.astype(str) != ""), "missing")
    numbers = pd.to_numeric(values, errors="coerce")
    bounds = [-math.inf, *spec.edges, math.inf]
    labels = [_band_label(low, high) for low, high in zip(bounds[:-1], bounds[1:], strict=True)]
    banded = pd.cut(numbers, bins=bounds, right=False, labels=labels)
    return banded.astype(str).where(numbers.notna(), "missing")


def group_order(groups: pd.Series, spec: SliceSpec) -> list[str]:
    """Bands from the lowest up (categories alphabetically), "missing" last."""
    if spec.edges:
        bounds = [-math.inf, *spec.edges, math.inf]
        labels = [_band_label(low, high) for low, high in zip(bounds[:-1], bounds[1:], strict=True)]
    else:
        labels = sorted(set(groups) - {"missing"})
    return [*labels, "missing"]


def _band_label(low: float, high: float) -> str:
    if low == -math.inf:
        return f"<{high:g}"
    if high == math.inf:
        return f"{low:g}+"
    return f"{low:g}-{high:g}"


def _auc(y_true: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y_true, p)) if len(np.unique(y_true)) == 2 else float("nan")


@dataclass
class SliceResult:
    column: str
    spec: str
    table: pd.DataFrame  # one row per group: rows + the metrics
    gaps: dict[str, float]  # metric -> largest difference between groups with >= min_rows rows
    extremes: dict[str, tuple[str, str]]  # metric -> (lowest group, highest group)


@dataclass
class FairnessReport:
    slices: list[SliceResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # slicing column -> why it was skipped

    def to_dict(self) -> dict[str, object]:
        return {
            "slices": [
                {
                    "column": s.column,
                    "spec": s.spec,
                    "groups": s.table.reset_index().replace({np.nan: None}).to_dict(orient="records"),
                    "gaps": s.gaps,
                    "extremes": {metric: list(pair) for metric, pair in s.extremes.items()},
                }
                for s in self.slices
            ],
            "skipped": self.skipped,
        }

    def metrics(self) -> dict[str, float]:
        """Flat `fairness_<column>_<metric>_gap` values for `mlflow.log_metrics` (NaN gaps left out)."""
        return {
            f"fairness_{metric_safe(s.column)}_{metric}_gap": gap
            for s in self.slices
            for metric, gap in s.gaps.items()
            if gap == gap
        }

    def markdown(self) -> str:
        lines = []
        for s in self.slices:
            lines += [f"**{s.spec}**", "", _markdown_table(s.table), ""]
        lines += [f"- skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines).strip() + "\n"


def metric_safe(name: str) -> str:
    """A column name as MLflow accepts it in a metric or tag key (another data set's columns may hold anything)."""
    return re.sub(r"[^\w\-. /]", "_", name)


def _markdown_table(table: pd.DataFrame) -> str:
    header = ["group", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for group, row in table.iterrows():
        cells = [str(group)] + [
            f"{int(v)}" if name == "rows" else ("n/a" if v != v else f"{v:.3f}") for name, v in row.items()
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fairness_report(
    frame: pd.DataFrame,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    specs: list[SliceSpec],
    min_rows: int = MIN_GROUP_ROWS,
) -> FairnessReport:
    """Slice `frame`'s rows (scored `probabilities`, outcomes `y_true`) by each spec; absent columns are skipped."""
    report = FairnessReport()
    y = np.asarray(y_true).astype(int)
    p = np.asarray(probabilities, dtype=np.float64)
    approved = ~decisions(p, threshold)  # below the threshold: not predicted to default
    for spec in specs:
        if spec.column not in frame.columns:
            report.skipped[spec.column] = f"column {spec.column!r} is not in the data"
            logger.warning("fairness slice %s skipped: column %r is not in the data", spec.describe(), spec.column)
            continue
        groups = groups_of(frame[spec.column].reset_index(drop=True), spec)
        metric_frame = MetricFrame(
            metrics={
                "rows": lambda yt, yp: float(len(yt)),
                "roc_auc": _auc,
                "approval_rate": lambda yt, yp: float(np.mean(~decisions(yp, threshold))),
                "default_rate": lambda yt, yp: float(np.mean(yt)),
                "mean_pd": lambda yt, yp: float(np.mean(yp)),
            },
            y_true=y,
            y_pred=p,
            sensitive_features=groups.rename(spec.column),
        )
        table = metric_frame.by_group.astype(float)
        if approved.any():
            approved_frame = MetricFrame(
                metrics={"default_rate_approved": lambda yt, yp: float(np.mean(yt))},
                y_true=y[approved],
                y_pred=p[approved],
                sensitive_features=groups[approved].rename(spec.column),
            )
            table = table.join(approved_frame.by_group.astype(float), how="left")
        else:  # nobody approved (a threshold at 0): no default rate among the approved
            table["default_rate_approved"] = float("nan")
        table["calibration_bias"] = table["mean_pd"] - table["default_rate"]
        table = table.reindex([label for label in group_order(groups, spec) if label in table.index])
        compared = table[table["rows"] >= min_rows]
        gaps, extremes = {}, {}
        for metric in GAP_METRICS:
            values = compared[metric].dropna()
            if len(values) >= 2:
                gaps[metric] = float(values.max() - values.min())
                extremes[metric] = (str(values.idxmin()), str(values.idxmax()))
            else:
                gaps[metric] = float("nan")
        report.slices.append(SliceResult(spec.column, spec.describe(), table, gaps, extremes))
    return report
