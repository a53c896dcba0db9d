"""Step `train`: fit the MLP pipeline (and a logistic-regression baseline run), calibrate it, evaluate, log plots,
fairness slices and the model.

Logs per-epoch `train_loss` and `validation_roc_auc` (learning curves in the UI); the calibration map fitted on the
validation split (`steps.calibration`: method, cross-validated log loss of each, `calibration/calibration.json`);
test metrics of the *calibrated* probabilities with prefix `test_`, the ECE before and after with bootstrap 95%
intervals and the noise floor of this many rows; the decision threshold chosen on calibrated validation probabilities
(`decision_threshold`); fairness slices of the test split (`fairness/`); optional k-fold CV; the score scaling and
reason-code texts (`risk/config.json`) that convert and quantize carry into the ONNX metadata; and the uncalibrated
sklearn model under artifact name `model` (its URI in tag `model_uri`; the ONNX graphs carry the calibration).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import click
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from registry.fairness import fairness_report, metric_safe
from scoring.calibration import ECE_BINS, Calibration, bootstrap_ece, ece_noise_floor
from scoring.contract import MODEL_URI_TAG, STEP_TAG
from scoring.progress import Progress
from steps import calibration, evaluation, plots
from steps.cli import run_id_file_option, run_step_cli
from steps.credit_risk import (
    RiskArguments,
    RiskOptions,
    check_calibration_choice,
    log_risk_config,
    risk_cli_options,
    risk_options,
)
from steps.data import features_and_target
from steps.model import (
    MLPParams,
    TrainingHistory,
    cross_validate_mlp,
    parse_hidden_layers,
    train_logistic_baseline,
    train_mlp,
)
from steps.prepare import PreparedData, load_prepared
from steps.settings import PipelineSettings
from steps.tracking import git_tags, lineage, log_metric_history, log_params, step_run

logger = logging.getLogger(__name__)

# Written out so that logging the model never spends seconds inferring requirements by importing it in a subprocess.
SKLEARN_MODEL_REQUIREMENTS = ["scikit-learn>=1.9,<1.10", "pandas>=2.2,<3", "numpy>=2"]
# skops refuses to load types it does not know; these two are plain data held by a fitted MLPClassifier.
SKOPS_TRUSTED_TYPES = ["numpy.dtype", "sklearn.neural_network._stochastic_optimizers.AdamOptimizer"]


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    threshold: float
    test_metrics: dict[str, float]
    baseline_run_id: str | None
    calibration: Calibration


BOOTSTRAP_RESAMPLES = 1000


def train(
    prepare_run_id: str,
    params: MLPParams | None = None,
    cv_folds: int = 5,
    baseline: bool = True,
    settings: PipelineSettings | None = None,
    calibration_method: str = "auto",
    risk: RiskOptions | None = None,
) -> TrainResult:
    settings = settings or PipelineSettings()
    params = params or MLPParams()
    risk = risk or risk_options()
    check_calibration_choice(calibration_method)
    with step_run("train", settings) as run:
        upstream = lineage(prepare_run_id, "prepare")
        log_params(
            {
                **params.as_params(),
                **upstream,
                "cv_folds": cv_folds,
                "calibration": calibration_method,
                "calibration_seed": params.seed,
                **risk.as_params(),
            }
        )
        prepared = load_prepared(prepare_run_id)
        schema = prepared.schema
        x_train, y_train = features_and_target(prepared.splits.train, schema)
        x_validation, y_validation = features_and_target(prepared.splits.validation, schema)
        x_test, y_test = features_and_target(prepared.splits.test, schema)

        with Progress(params.max_epochs, description="train MLP", unit="epochs") as progress:

            def on_epoch(epoch: int, loss: float, validation_auc: float) -> None:
                progress.update(1, loss=f"{loss:.4f}", val_auc=f"{validation_auc:.4f}")

            model, history = train_mlp(schema, x_train, y_train, x_validation, y_validation, params, on_epoch)
        log_metric_history(run.info.run_id, "train_loss", history.loss)
        log_metric_history(run.info.run_id, "validation_roc_auc", history.validation_auc)

        raw_validation = model.predict_proba(x_validation)[:, 1]
        calibrated = _calibrate(y_validation, raw_validation, calibration_method, params.seed)
        validation_probabilities = calibrated.apply(raw_validation)
        threshold = evaluation.choose_threshold(y_validation, validation_probabilities)
        raw_test = model.predict_proba(x_test)[:, 1]
        test_probabilities = calibrated.apply(raw_test)
        test_metrics = evaluation.evaluation_metrics(y_test, test_probabilities, threshold)
        _log_calibration(y_test, raw_test, test_probabilities, params.seed)
        log_risk_config(risk, calibrated)
        _log_fairness(prepared.splits.test, y_test, test_probabilities, threshold, risk)
        mlflow.log_metrics(
            {
                **{f"test_{k}": v for k, v in test_metrics.items()},
                "decision_threshold": threshold,
                "best_epoch": history.best_epoch,
                "epochs_run": history.epochs,
                "validation_roc_auc_best": max(history.validation_auc),
            }
        )
        if cv_folds >= 2:
            _log_cross_validation(prepared, params, cv_folds)

        curves = {"MLP (calibrated)" if calibrated.method != "none" else "MLP": test_probabilities}
        baseline_run_id = None
        if baseline:
            baseline_run_id, curves["logistic baseline"] = _log_baseline(prepared)
        _log_plots(y_test, curves, test_metrics, threshold, schema.positive_label, history)
        mlflow.log_text(
            evaluation.report_text(y_test, test_probabilities, threshold, schema.positive_label),
            "reports/classification_report.txt",
        )
        input_example = x_train.head(5)
        model_info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(input_example, model.predict_proba(input_example)[:, 1]),
            input_example=input_example,
            pip_requirements=SKLEARN_MODEL_REQUIREMENTS,
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
        mlflow.set_tag(MODEL_URI_TAG, model_info.model_uri)
        logger.info(
            "MLP test ROC AUC %.4f (threshold %.3f); model %s", test_metrics["roc_auc"], threshold, model_info.model_uri
        )
        return TrainResult(
            run_id=run.info.run_id,
            model_uri=model_info.model_uri,
            threshold=threshold,
            test_metrics=test_metrics,
            baseline_run_id=baseline_run_id,
            calibration=calibrated,
        )


def _calibrate(y_validation: np.ndarray, raw: np.ndarray, method: str, seed: int) -> Calibration:
    """The calibration map ("auto": chosen by cross-validated log loss within the validation split)."""
    if method == "auto":
        choice = calibration.choose(y_validation, raw, seed)
        mlflow.log_metrics({f"calibration_cv_log_loss_{m}": loss for m, loss in choice.cv_log_loss.items()})
        chosen = choice.calibration
    else:
        chosen = calibration.fit(method, y_validation, raw)
    mlflow.set_tag("calibration_method", chosen.method)
    return chosen


def _log_calibration(y_test: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, seed: int) -> None:
    """ECE (equal-mass bins) with bootstrap 95% intervals on the test split, before and after, the noise floor of
    this many rows, and the reliability diagram."""
    before = bootstrap_ece(y_test, raw, seed, BOOTSTRAP_RESAMPLES, ECE_BINS)
    after = bootstrap_ece(y_test, calibrated, seed, BOOTSTRAP_RESAMPLES, ECE_BINS)
    mlflow.log_metrics(
        {
            "test_ece": after.estimate,
            "test_ece_ci_low": after.low,
            "test_ece_ci_high": after.high,
            "test_ece_uncalibrated": before.estimate,
            "test_ece_uncalibrated_ci_low": before.low,
            "test_ece_uncalibrated_ci_high": before.high,
            "test_ece_noise_floor": ece_noise_floor(calibrated, seed, bins=ECE_BINS),
        }
    )
    eces = {
        name: f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"
        for name, interval in (("uncalibrated", before), ("calibrated", after))
    }
    figure = plots.reliability_figure(y_test, {"uncalibrated": raw, "calibrated": calibrated}, eces, ECE_BINS)
    mlflow.log_figure(figure, "plots/reliability_diagram.png")
    plots.close(figure)


def _log_fairness(
    test: pd.DataFrame, y_test: np.ndarray, probabilities: np.ndarray, threshold: float, risk: RiskOptions
) -> None:
    report = fairness_report(test, y_test, probabilities, threshold, risk.slice_specs)
    mlflow.log_dict(report.to_dict(), "fairness/fairness.json")
    mlflow.log_text(report.markdown(), "fairness/fairness.md")
    mlflow.log_metrics(report.metrics())
    for column, why in report.skipped.items():
        mlflow.set_tag(f"fairness_skipped_{metric_safe(column)}", why)
    if report.slices:
        figure = plots.fairness_figure([(s.spec, s.table) for s in report.slices], threshold)
        mlflow.log_figure(figure, "plots/fairness_slices.png")
        plots.close(figure)


def _log_cross_validation(prepared: PreparedData, params: MLPParams, folds: int) -> None:
    """k-fold CV on train + validation (the test split stays untouched)."""
    combined = pd.concat([prepared.splits.train, prepared.splits.validation], ignore_index=True)
    features, target = features_and_target(combined, prepared.schema)
    scores = cross_validate_mlp(prepared.schema, features, target, params, folds)
    log_metric_history(mlflow.active_run().info.run_id, "cv_roc_auc_fold", scores)
    mlflow.log_metrics({"cv_roc_auc_mean": float(np.mean(scores)), "cv_roc_auc_std": float(np.std(scores, ddof=1))})
    logger.info("%d-fold CV ROC AUC %.4f ± %.4f", folds, np.mean(scores), np.std(scores, ddof=1))


def _log_baseline(prepared: PreparedData) -> tuple[str, np.ndarray]:
    """A logistic-regression run beside the MLP, with the same split, threshold rule and test metrics."""
    schema = prepared.schema
    x_train, y_train = features_and_target(prepared.splits.train, schema)
    x_validation, y_validation = features_and_target(prepared.splits.validation, schema)
    x_test, y_test = features_and_target(prepared.splits.test, schema)
    with mlflow.start_run(run_name="logistic-baseline", nested=True, tags={STEP_TAG: "baseline", **git_tags()}) as run:
        model = train_logistic_baseline(schema, x_train, y_train, seed=0)
        threshold = evaluation.choose_threshold(y_validation, model.predict_proba(x_validation)[:, 1])
        probabilities = model.predict_proba(x_test)[:, 1]
        metrics = evaluation.evaluation_metrics(y_test, probabilities, threshold)
        log_params({"model": "logistic_regression", "C": 1.0})
        mlflow.log_metrics({**{f"test_{k}": v for k, v in metrics.items()}, "decision_threshold": threshold})
        return run.info.run_id, probabilities


def _log_plots(
    y_test: np.ndarray,
    curves: dict[str, np.ndarray],
    test_metrics: dict[str, float],
    threshold: float,
    positive_label: str,
    history: TrainingHistory,
) -> None:
    figures = {
        "plots/roc_curve.png": plots.roc_figure(y_test, curves),
        "plots/precision_recall_curve.png": plots.precision_recall_figure(y_test, curves),
        "plots/calibration_curve.png": plots.calibration_figure(y_test, curves),
        "plots/confusion_matrix.png": plots.confusion_figure(
            int(test_metrics["tn"]),
            int(test_metrics["fp"]),
            int(test_metrics["fn"]),
            int(test_metrics["tp"]),
            threshold,
            positive_label,
        ),
        "plots/learning_curve.png": plots.learning_curve_figure(
            history.loss, history.validation_auc, history.best_epoch
        ),
    }
    for artifact_file, figure in figures.items():
        mlflow.log_figure(figure, artifact_file)
        plots.close(figure)


@click.command(help="Train the MLP pipeline on a prepare run's splits; log metrics, plots and the model.")
@click.option("--prepare-run-id", required=True, help="Run id of the prepare step whose splits to use.")
@click.option("--hidden-layers", default="128-64", show_default=True, help="Hidden layer sizes, e.g. 64-32.")
@click.option("--alpha", type=float, default=0.1, show_default=True, help="L2 penalty.")
@click.option("--learning-rate", type=float, default=0.001, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--max-epochs", type=int, default=200, show_default=True)
@click.option("--patience", type=int, default=15, show_default=True, help="Epochs without validation gain.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--cv-folds", type=int, default=5, show_default=True, help="k-fold CV on train+validation; 0 = off.")
@click.option("--baseline", type=click.BOOL, default=True, show_default=True, help="Also log a logistic baseline run.")
@risk_cli_options
@run_id_file_option
def cli(
    prepare_run_id: str,
    hidden_layers: str,
    alpha: float,
    learning_rate: float,
    batch_size: int,
    max_epochs: int,
    patience: int,
    seed: int,
    cv_folds: int,
    baseline: bool,
    risk_arguments: RiskArguments,
    run_id_file: Path | None,
) -> None:
    def work(settings: PipelineSettings) -> TrainResult:
        params = MLPParams(
            hidden_layers=parse_hidden_layers(hidden_layers),
            alpha=alpha,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_epochs=max_epochs,
            patience=patience,
            seed=seed,
        )
        return train(
            prepare_run_id, params, cv_folds, baseline, settings, risk_arguments.calibration, risk_arguments.options()
        )

    result = run_step_cli("train", work, run_id_file)
    click.echo(
        f"train run {result.run_id}: test ROC AUC {result.test_metrics['roc_auc']:.4f}, "
        f"threshold {result.threshold:.3f}, model {result.model_uri}"
    )


if __name__ == "__main__":
    cli()
