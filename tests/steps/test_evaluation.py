"""Metrics and the documented threshold rule."""

from __future__ import annotations

import numpy as np
import pytest

from steps import evaluation


def test_threshold_maximises_youden_j_on_the_given_data() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    threshold = evaluation.choose_threshold(y, p)
    predicted = p >= threshold
    tpr = predicted[y == 1].mean()
    fpr = predicted[y == 0].mean()
    best = max((p >= t)[y == 1].mean() - (p >= t)[y == 0].mean() for t in np.unique(p))
    assert tpr - fpr == pytest.approx(best)
    assert threshold == pytest.approx(0.7)  # highest cut-off reaching the best J (J = 0.75)


def test_perfect_and_random_rankings() -> None:
    y = np.array([0, 0, 1, 1])
    perfect = evaluation.ranking_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect["roc_auc"] == 1.0 and perfect["gini"] == 1.0 and perfect["ks"] == 1.0
    inverted = evaluation.ranking_metrics(y, np.array([0.9, 0.8, 0.2, 0.1]))
    assert inverted["roc_auc"] == 0.0 and inverted["gini"] == -1.0


def test_threshold_metrics_count_the_confusion_matrix() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.2, 0.6, 0.7, 0.4, 0.9])
    metrics = evaluation.evaluation_metrics(y, p, threshold=0.5)
    assert (metrics["tn"], metrics["fp"], metrics["fn"], metrics["tp"]) == (1, 1, 1, 2)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_report_names_the_positive_label() -> None:
    text = evaluation.report_text(np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.6, 0.7]), 0.5, "bad")
    assert "not bad" in text and "bad" in text and "0.5000" in text
