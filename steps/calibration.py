"""Fitting the calibration map on the validation split and choosing its method.

Each method ("none", "sigmoid", "isotonic") is scored by stratified k-fold cross-validated log loss *within* the
validation split (fitted on k-1 folds, scored on the held-out one), so isotonic regression cannot win by memorising
the rows it is scored on; the method with the lowest mean wins (ties: the simpler one, in `METHODS` order) and is then
fitted on the whole validation split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from scoring.calibration import METHODS, PROBABILITY_EPSILON, Calibration, log_odds

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationChoice:
    calibration: Calibration
    cv_log_loss: dict[str, float]  # method -> mean held-out log loss within the validation split


def fit(method: str, y_true: np.ndarray, probabilities: np.ndarray) -> Calibration:
    if method == "none":
        return Calibration()
    if method == "sigmoid":
        # Platt scaling on the log-odds; practically unpenalised (a 1-D fit on hundreds of rows).
        regression = LogisticRegression(C=1e6, max_iter=1000).fit(log_odds(probabilities).reshape(-1, 1), y_true)
        return Calibration("sigmoid", slope=float(regression.coef_[0, 0]), intercept=float(regression.intercept_[0]))
    if method == "isotonic":
        isotonic = IsotonicRegression(
            y_min=PROBABILITY_EPSILON, y_max=1 - PROBABILITY_EPSILON, out_of_bounds="clip"
        ).fit(probabilities, y_true)
        return Calibration(
            "isotonic",
            x=tuple(float(v) for v in isotonic.X_thresholds_),
            y=tuple(float(v) for v in isotonic.y_thresholds_),
        )
    raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")


def _held_out_log_loss(method: str, y_true: np.ndarray, probabilities: np.ndarray, folds: int, seed: int) -> float:
    losses = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, score_rows in splitter.split(probabilities.reshape(-1, 1), y_true):
        calibration = fit(method, y_true[fit_rows], probabilities[fit_rows])
        predicted = np.clip(calibration.apply(probabilities[score_rows]), PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
        losses.append(float(log_loss(y_true[score_rows], predicted, labels=[0, 1])))
    return float(np.mean(losses))


def choose(
    y_true: np.ndarray, probabilities: np.ndarray, seed: int, folds: int = 5, methods: tuple[str, ...] = METHODS
) -> CalibrationChoice:
    """The method with the lowest cross-validated log loss on the validation rows, fitted on all of them."""
    y, p = np.asarray(y_true).astype(int), np.asarray(probabilities, dtype=np.float64)
    folds = min(folds, int(np.bincount(y, minlength=2).min()))
    if folds < 2:
        logger.warning("calibration: too few validation rows of one class to cross-validate; left uncalibrated")
        return CalibrationChoice(Calibration(), {})
    losses = {method: _held_out_log_loss(method, y, p, folds, seed) for method in methods}
    best = min(methods, key=lambda method: (round(losses[method], 6), methods.index(method)))
    logger.info(
        "calibration: %s chosen (cross-validated log loss %s)",
        best,
        ", ".join(f"{method} {loss:.4f}" for method, loss in losses.items()),
    )
    return CalibrationChoice(fit(best, y, p), losses)
