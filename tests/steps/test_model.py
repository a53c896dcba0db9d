"""Epoch-by-epoch MLP training with early stopping and best-weight restore."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from steps import data
from steps.errors import UserInputError
from steps.model import MLPParams, cross_validate_mlp, parse_hidden_layers, train_logistic_baseline, train_mlp


@pytest.fixture(scope="module")
def split(credit_frame):
    frame, schema, _ = data.validate_table(credit_frame, "Status", "bad", 100, "credit_data.csv")
    return schema, data.split_frame(frame, "Status", seed=42, validation_fraction=0.15, test_fraction=0.2)


def test_training_records_every_epoch_and_restores_the_best_one(split) -> None:
    schema, splits = split
    x_train, y_train = data.features_and_target(splits.train, schema)
    x_validation, y_validation = data.features_and_target(splits.validation, schema)
    seen = []
    model, history = train_mlp(
        schema,
        x_train,
        y_train,
        x_validation,
        y_validation,
        MLPParams(hidden_layers=(32, 16), max_epochs=60, patience=5),
        on_epoch=lambda epoch, loss, auc: seen.append(epoch),
    )
    assert seen == list(range(1, history.epochs + 1))
    assert len(history.loss) == len(history.validation_auc) == history.epochs
    assert history.epochs < 60, "patience 5 should stop well before 60 epochs"
    assert history.epochs == history.best_epoch + 5
    assert history.loss[-1] < history.loss[0]
    restored_auc = roc_auc_score(y_validation, model.predict_proba(x_validation)[:, 1])
    assert restored_auc == pytest.approx(max(history.validation_auc), abs=1e-9)


def test_mlp_beats_chance_and_baseline_trains(split) -> None:
    schema, splits = split
    x_train, y_train = data.features_and_target(splits.train, schema)
    x_test, y_test = data.features_and_target(splits.test, schema)
    baseline = train_logistic_baseline(schema, x_train, y_train, seed=0)
    assert roc_auc_score(y_test, baseline.predict_proba(x_test)[:, 1]) > 0.8


def test_unseen_and_missing_categories_do_not_break_prediction(split) -> None:
    schema, splits = split
    x_train, y_train = data.features_and_target(splits.train, schema)
    x_validation, y_validation = data.features_and_target(splits.validation, schema)
    model, _ = train_mlp(schema, x_train, y_train, x_validation, y_validation, MLPParams(max_epochs=3))
    odd = x_validation.head(3).copy()
    odd["Home"] = ["", "spaceship", "rent"]
    odd["Income"] = np.nan
    probabilities = model.predict_proba(odd)[:, 1]
    assert np.all((probabilities > 0) & (probabilities < 1))


def test_cross_validation_returns_one_score_per_fold(split) -> None:
    schema, splits = split
    features, target = data.features_and_target(splits.train, schema)
    scores = cross_validate_mlp(schema, features, target, MLPParams(hidden_layers=(16,), max_epochs=10, patience=3), 3)
    assert len(scores) == 3 and all(0.6 < s <= 1.0 for s in scores)


@pytest.mark.parametrize(("text", "expected"), [("64-32", (64, 32)), ("128", (128,)), ("64,32,16", (64, 32, 16))])
def test_hidden_layers_parse(text: str, expected: tuple[int, ...]) -> None:
    assert parse_hidden_layers(text) == expected


@pytest.mark.parametrize("text", ["", "64-x", "0-32", "-5"])
def test_bad_hidden_layers_name_the_parameter(text: str) -> None:
    with pytest.raises(UserInputError, match="hidden-layers"):
        parse_hidden_layers(text)


@pytest.mark.parametrize(
    ("field", "value", "name"),
    [("alpha", -1.0, "alpha"), ("max_epochs", 0, "max-epochs"), ("learning_rate", 0.0, "learning-rate")],
)
def test_bad_hyper_parameters_name_the_parameter(field: str, value: float, name: str) -> None:
    with pytest.raises(UserInputError, match=name):
        MLPParams(**{field: value})
