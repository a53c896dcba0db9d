"""The credit-scoring model: preprocessing + MLP as one scikit-learn Pipeline, trained epoch by epoch.

Training runs `partial_fit` one epoch at a time (Adam state is kept between calls, unlike `warm_start`), records the
training loss and validation ROC AUC of every epoch, stops after `patience` epochs without improvement and restores
the best epoch's weights.
"""

from __future__ import annotations

import copy
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from scoring.schema import MISSING_CATEGORY, FeatureSchema
from steps.errors import UserInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MLPParams:
    hidden_layers: tuple[int, ...] = (128, 64)
    alpha: float = 0.1
    learning_rate: float = 0.001
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 15
    seed: int = 42

    def __post_init__(self) -> None:
        checks = {
            "hidden-layers": bool(self.hidden_layers) and all(n > 0 for n in self.hidden_layers),
            "alpha": self.alpha >= 0,
            "learning-rate": self.learning_rate > 0,
            "batch-size": self.batch_size > 0,
            "max-epochs": self.max_epochs > 0,
            "patience": self.patience > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise UserInputError(f"parameter {name} has an invalid value: {getattr(self, name.replace('-', '_'))}")

    def as_params(self) -> dict[str, object]:
        return {
            "hidden_layers": "-".join(map(str, self.hidden_layers)),
            "alpha": self.alpha,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "seed": self.seed,
            "activation": "relu",
            "solver": "adam",
        }


def parse_hidden_layers(text: str) -> tuple[int, ...]:
    """'64-32' or '64,32' -> (64, 32)."""
    if not re.fullmatch(r"\s*\d+(\s*[-,]\s*\d+)*\s*", text):
        raise UserInputError(f"parameter hidden-layers must look like 64-32, got {text!r}")
    sizes = tuple(int(part) for part in re.split(r"[-,]", text))
    if any(size <= 0 for size in sizes):
        raise UserInputError(f"parameter hidden-layers must be positive sizes like 64-32, got {text!r}")
    return sizes


@dataclass
class TrainingHistory:
    loss: list[float] = field(default_factory=list)
    validation_auc: list[float] = field(default_factory=list)
    best_epoch: int = 0

    @property
    def epochs(self) -> int:
        return len(self.loss)


def build_preprocessor(schema: FeatureSchema) -> ColumnTransformer:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            # Missing categories become their own level: in credit data "not stated" often carries signal.
            (
                "impute",
                SimpleImputer(missing_values=MISSING_CATEGORY, strategy="constant", fill_value="__missing__"),
            ),
            ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    transformers = []
    if schema.numeric:
        transformers.append(("numeric", numeric, list(schema.numeric)))
    if schema.categorical:
        transformers.append(("categorical", categorical, list(schema.categorical)))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def train_mlp(
    schema: FeatureSchema,
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_validation: pd.DataFrame,
    y_validation: np.ndarray,
    params: MLPParams,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> tuple[Pipeline, TrainingHistory]:
    """Fit preprocessing once, then the MLP epoch by epoch with early stopping on validation ROC AUC."""
    preprocessor = build_preprocessor(schema).fit(x_train)
    train_matrix = preprocessor.transform(x_train)
    validation_matrix = preprocessor.transform(x_validation)
    classifier = MLPClassifier(
        hidden_layer_sizes=params.hidden_layers,
        alpha=params.alpha,
        learning_rate_init=params.learning_rate,
        batch_size=min(params.batch_size, len(x_train)),
        random_state=params.seed,
        shuffle=True,
    )
    history = TrainingHistory()
    best_auc, best_state, stale = -np.inf, None, 0
    classes = np.array([0, 1])
    for epoch in range(1, params.max_epochs + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.partial_fit(train_matrix, y_train, classes=classes)
        validation_auc = float(roc_auc_score(y_validation, classifier.predict_proba(validation_matrix)[:, 1]))
        history.loss.append(float(classifier.loss_))
        history.validation_auc.append(validation_auc)
        if on_epoch is not None:
            on_epoch(epoch, float(classifier.loss_), validation_auc)
        if validation_auc > best_auc + 1e-5:
            best_auc, stale, history.best_epoch = validation_auc, 0, epoch
            best_state = (copy.deepcopy(classifier.coefs_), copy.deepcopy(classifier.intercepts_))
        else:
            stale += 1
            if stale >= params.patience:
                break
    assert best_state is not None  # at least one epoch ran
    classifier.coefs_, classifier.intercepts_ = best_state
    logger.info("MLP best epoch %d of %d, validation ROC AUC %.4f", history.best_epoch, history.epochs, best_auc)
    return Pipeline([("preprocess", preprocessor), ("classifier", classifier)]), history


def train_logistic_baseline(schema: FeatureSchema, x_train: pd.DataFrame, y_train: np.ndarray, seed: int) -> Pipeline:
    model = Pipeline(
        [("preprocess", build_preprocessor(schema)), ("classifier", LogisticRegression(max_iter=2000, C=1.0))]
    )
    return model.fit(x_train, y_train)


def cross_validate_mlp(
    schema: FeatureSchema, features: pd.DataFrame, target: np.ndarray, params: MLPParams, folds: int
) -> list[float]:
    """Stratified k-fold ROC AUC of the MLP; each fold's early stopping uses a slice of its own training part."""
    scores = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=params.seed)
    for fit_index, score_index in splitter.split(features, target):
        inner = StratifiedKFold(n_splits=5, shuffle=True, random_state=params.seed)
        train_index, stop_index = next(inner.split(fit_index, target[fit_index]))
        train_rows, stop_rows = fit_index[train_index], fit_index[stop_index]
        model, _ = train_mlp(
            schema,
            features.iloc[train_rows],
            target[train_rows],
            features.iloc[stop_rows],
            target[stop_rows],
            params,
        )
        probabilities = model.predict_proba(features.iloc[score_index])[:, 1]
        scores.append(float(roc_auc_score(target[score_index], probabilities)))
    return scores
