"""Step `quantize`: INT8 version of the converted ONNX model, with honest accuracy and size numbers.

Logs size before/after, max and mean |Δp| against fp32, test ROC AUC of both and its delta, the share of test
decisions (at the train step's threshold) on which INT8 agrees with fp32, and how often both give a test row the same
top-3 reason codes (as a set, and in order). The fp32 graph is the calibrated one: every figure is after calibration.
Speed is measured by `benchmark`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import click
import mlflow
import numpy as np
from sklearn.metrics import roc_auc_score

from scoring.calibration import expected_calibration_error
from scoring.contract import MODEL_URI_TAG, PREPARE_RUN_ID, TRAIN_RUN_ID
from scoring.onnx_runtime import decisions, inference_session, onnx_inputs, predict_default_probability
from scoring.reasons import Explainer, agreement
from steps.cli import run_id_file_option, run_step_cli
from steps.credit_risk import risk_metadata
from steps.data import features_and_target
from steps.errors import CheckFailedError, UserInputError
from steps.onnx_model import load_onnx_model, log_onnx_model, operator_counts
from steps.onnx_model import quantize as quantize_model
from steps.prepare import load_prepared
from steps.settings import PipelineSettings
from steps.tracking import lineage, log_params, step_run

logger = logging.getLogger(__name__)

METHODS = ("dynamic", "static")
REASONS_COMPARED = 3


@dataclass(frozen=True)
class QuantizeResult:
    run_id: str
    model_uri: str
    metrics: dict[str, float]


def quantize(convert_run_id: str, method: str = "dynamic", settings: PipelineSettings | None = None) -> QuantizeResult:
    settings = settings or PipelineSettings()
    if method not in METHODS:
        raise UserInputError(f"parameter method must be one of {', '.join(METHODS)}, got {method!r}")
    with step_run("quantize", settings) as run:
        upstream = lineage(convert_run_id, "convert")
        log_params({**upstream, "method": method, "weight_type": "int8"})
        prepared = load_prepared(upstream[PREPARE_RUN_ID])
        schema = prepared.schema
        threshold = mlflow.get_run(upstream[TRAIN_RUN_ID]).data.metrics["decision_threshold"]
        fp32 = load_onnx_model(mlflow.get_run(convert_run_id).data.tags[MODEL_URI_TAG])
        int8 = quantize_model(fp32, schema, method, calibration_frame=prepared.splits.validation[schema.features])
        operators = operator_counts(int8)
        if not {"MatMulInteger", "QuantizeLinear", "DynamicQuantizeLinear"} & operators.keys():
            raise CheckFailedError(f"quantization produced no integer operators (operators: {sorted(operators)})")

        x_test, y_test = features_and_target(prepared.splits.test, schema)
        inputs = onnx_inputs(x_test, schema)
        sessions = {"fp32": inference_session(fp32), "int8": inference_session(int8)}
        p_fp32 = predict_default_probability(sessions["fp32"], inputs)
        p_int8 = predict_default_probability(sessions["int8"], inputs)
        risk = risk_metadata(upstream[TRAIN_RUN_ID], prepared.splits.train, schema)
        reasons = {
            precision: Explainer(session, schema, risk.explanation).explain(inputs, REASONS_COMPARED)
            for precision, session in sessions.items()
        }
        reasons_agree = agreement(reasons["fp32"], reasons["int8"])
        difference = np.abs(p_int8 - p_fp32)
        auc_fp32, auc_int8 = float(roc_auc_score(y_test, p_fp32)), float(roc_auc_score(y_test, p_int8))
        flipped = int(np.sum(decisions(p_fp32, threshold) != decisions(p_int8, threshold)))
        metrics = {
            "size_bytes_fp32": float(fp32.ByteSize()),
            "size_bytes_int8": float(int8.ByteSize()),
            "size_ratio": int8.ByteSize() / fp32.ByteSize(),
            "max_abs_diff": float(difference.max()),
            "mean_abs_diff": float(difference.mean()),
            "test_roc_auc_fp32": auc_fp32,
            "test_roc_auc_int8": auc_int8,
            "test_roc_auc_delta": auc_int8 - auc_fp32,
            "decisions_flipped": float(flipped),
            "decision_agreement": 1.0 - flipped / len(y_test),
            "test_ece_fp32": expected_calibration_error(y_test, p_fp32),
            "test_ece_int8": expected_calibration_error(y_test, p_int8),
            "reason_top3_agreement": reasons_agree["set"],
            "reason_top3_order_agreement": reasons_agree["order"],
        }
        mlflow.log_metrics(metrics)
        mlflow.log_dict(operators, "onnx/operators_int8.json")
        model_uri = log_onnx_model(
            int8, "onnx_model_int8", schema, prepared.splits.train.head(5), threshold, "int8", risk
        )
        logger.info(
            "INT8 (%s): %d -> %d bytes, max |Δp| %.3f, AUC delta %+.4f, %d of %d decisions flipped",
            method,
            fp32.ByteSize(),
            int8.ByteSize(),
            metrics["max_abs_diff"],
            metrics["test_roc_auc_delta"],
            flipped,
            len(y_test),
        )
        return QuantizeResult(run_id=run.info.run_id, model_uri=model_uri, metrics=metrics)


@click.command(help="Quantize a convert run's ONNX model to INT8 and measure what it costs in accuracy.")
@click.option("--convert-run-id", required=True, help="Run id of the convert step whose ONNX model to quantize.")
@click.option("--method", type=click.Choice(METHODS), default="dynamic", show_default=True)
@run_id_file_option
def cli(convert_run_id: str, method: str, run_id_file: Path | None) -> None:
    result = run_step_cli("quantize", lambda settings: quantize(convert_run_id, method, settings), run_id_file)
    m = result.metrics
    click.echo(
        f"quantize run {result.run_id}: size {m['size_bytes_fp32']:.0f} -> {m['size_bytes_int8']:.0f} bytes, "
        f"max |Δp| {m['max_abs_diff']:.3f}, AUC delta {m['test_roc_auc_delta']:+.4f}, "
        f"agreement {m['decision_agreement']:.3%}"
    )


if __name__ == "__main__":
    cli()
