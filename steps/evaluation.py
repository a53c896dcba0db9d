"""Credit-scoring metrics and the decision-threshold rule.

Threshold rule (documented in docs/pipeline.md): the threshold is the validation-set cut-off that maximises Youden's
J = TPR - FPR, i.e. the point where the KS distance between the score distributions of defaulters and payers is
largest. It is chosen on validation data only, then applied unchanged to the test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    brier_score_loss,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from scoring.onnx_runtime import decisions


@dataclass(frozen=True)
class ThresholdMetrics:
    threshold: float
    precision: float
    recall: float
    f1: float
    true_negatives: int
    false_positives: int
    false_negatives: int
    true_positives: int


def choose_threshold(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Cut-off maximising TPR - FPR (Youden's J); ties go to the highest cut-off (fewest rejections)."""
    fpr, tpr, thresholds = roc_curve(y_true, probabilities)
    youden = tpr - fpr
    best = int(np.flatnonzero(youden == youden.max())[0])
    # roc_curve's first threshold is +inf (reject nobody); clip into the probability range.
    return float(np.clip(thresholds[best], 0.0, 1.0))


def ks_statistic(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y_true, probabilities)
    return float(np.max(tpr - fpr))


def ranking_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    auc = float(roc_auc_score(y_true, probabilities))
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return {
        "roc_auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(y_true, probabilities),
        "brier": float(brier_score_loss(y_true, probabilities)),
        "log_loss": float(log_loss(y_true, clipped, labels=[0, 1])),
    }


def threshold_metrics(y_true: np.ndarray, probabilities: np.ndarray, threshold: float) -> ThresholdMetrics:
    predicted = decisions(probabilities, threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel()
    return ThresholdMetrics(
        threshold=threshold,
        precision=float(precision_score(y_true, predicted, zero_division=0)),
        recall=float(recall_score(y_true, predicted, zero_division=0)),
        f1=float(f1_score(y_true, predicted, zero_division=0)),
        true_negatives=int(tn),
        false_positives=int(fp),
        false_negatives=int(fn),
        true_positives=int(tp),
    )


def evaluation_metrics(y_true: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """All test metrics as a flat dict ready for `mlflow.log_metrics`."""
    at_threshold = threshold_metrics(y_true, probabilities, threshold)
    metrics = ranking_metrics(y_true, probabilities)
    metrics.update(
        {
            "threshold": threshold,
            "precision": at_threshold.precision,
            "recall": at_threshold.recall,
            "f1": at_threshold.f1,
            "tn": at_threshold.true_negatives,
            "fp": at_threshold.false_positives,
            "fn": at_threshold.false_negatives,
            "tp": at_threshold.true_positives,
        }
    )
    return metrics


def report_text(y_true: np.ndarray, probabilities: np.ndarray, threshold: float, positive_label: str) -> str:
    predicted = decisions(probabilities, threshold).astype(int)
    names = [f"not {positive_label}", positive_label]
    return f"Decision threshold {threshold:.4f} (max Youden J on validation)\n\n" + classification_report(
        y_true, predicted, labels=[0, 1], target_names=names, digits=4, zero_division=0
    )
