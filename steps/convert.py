"""Step `convert`: the trained sklearn pipeline to ONNX with the train run's calibration appended, checked against
sklearn + the same calibration, logged with `mlflow.onnx` (metadata: score scaling, reason-code reference and texts).

Parity is checked on the test split and on rows generated from it with missing values and unseen categories; the
step fails (and logs nothing as a model) when max |Δp| exceeds the tolerance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import click
import mlflow
import numpy as np
import pandas as pd

from scoring.contract import MODEL_URI_TAG, PREPARE_RUN_ID
from scoring.onnx_runtime import inference_session, onnx_inputs, predict_default_probability
from scoring.schema import MISSING_CATEGORY, FeatureSchema
from steps.cli import run_id_file_option, run_step_cli
from steps.credit_risk import risk_metadata
from steps.errors import CheckFailedError, UserInputError
from steps.onnx_model import log_onnx_model, operator_counts, to_onnx
from steps.prepare import load_prepared
from steps.settings import PipelineSettings
from steps.tracking import lineage, log_params, step_run

logger = logging.getLogger(__name__)

UNSEEN_CATEGORY = "__unseen_in_training__"


@dataclass(frozen=True)
class ConvertResult:
    run_id: str
    model_uri: str
    max_abs_diff: float


def perturbed_rows(frame: pd.DataFrame, schema: FeatureSchema, seed: int) -> pd.DataFrame:
    """Copies of real rows with missing numerics, missing categories and categories never seen in training."""
    generator = np.random.default_rng(seed)
    rows = frame[schema.features].sample(n=min(len(frame), 300), random_state=seed).reset_index(drop=True)
    variants = []
    for replacement in ("missing", "unseen"):
        variant = rows.copy()
        for column in schema.features:
            mask = generator.random(len(variant)) < 0.3
            if column in schema.numeric:
                variant.loc[mask, column] = np.nan
            else:
                variant.loc[mask, column] = MISSING_CATEGORY if replacement == "missing" else UNSEEN_CATEGORY
        variants.append(variant)
    return pd.concat(variants, ignore_index=True)


def convert(
    train_run_id: str,
    tolerance: float = 1e-4,
    seed: int = 7,
    settings: PipelineSettings | None = None,
) -> ConvertResult:
    settings = settings or PipelineSettings()
    if not tolerance > 0:
        raise UserInputError(f"parameter tolerance must be positive, got {tolerance}")
    with step_run("convert", settings) as run:
        upstream = lineage(train_run_id, "train")
        train_run = mlflow.get_run(train_run_id)
        log_params({**upstream, "parity_tolerance": tolerance, "seed": seed})
        prepared = load_prepared(upstream[PREPARE_RUN_ID])
        schema = prepared.schema
        pipeline = mlflow.sklearn.load_model(train_run.data.tags[MODEL_URI_TAG])
        threshold = train_run.data.metrics["decision_threshold"]

        risk = risk_metadata(train_run_id, prepared.splits.train, schema)
        onnx_model = risk.calibration.append_to_graph(to_onnx(pipeline, schema))
        session = inference_session(onnx_model)
        checks = {
            "test": prepared.splits.test[schema.features],
            "perturbed": perturbed_rows(prepared.splits.test, schema, seed),
        }
        differences = {}
        for name, frame in checks.items():
            expected = risk.calibration.apply(pipeline.predict_proba(frame)[:, 1])
            actual = predict_default_probability(session, onnx_inputs(frame, schema))
            differences[name] = np.abs(expected - actual)
        every = np.concatenate(list(differences.values()))
        max_abs_diff = float(every.max())
        mlflow.log_metrics(
            {
                "parity_max_abs_diff": max_abs_diff,
                "parity_mean_abs_diff": float(every.mean()),
                **{f"parity_max_abs_diff_{name}": float(d.max()) for name, d in differences.items()},
                "parity_rows_checked": len(every),
                "onnx_size_bytes": onnx_model.ByteSize(),
            }
        )
        mlflow.log_dict(operator_counts(onnx_model), "onnx/operators.json")
        if max_abs_diff > tolerance:
            raise CheckFailedError(
                f"ONNX parity check failed: max |Δp| {max_abs_diff:.3g} exceeds tolerance {tolerance:g}"
            )
        model_uri = log_onnx_model(
            onnx_model, "onnx_model", schema, prepared.splits.train.head(5), threshold, "fp32", risk
        )
        logger.info("ONNX parity max |Δp| %.2e over %d rows; model %s", max_abs_diff, len(every), model_uri)
        return ConvertResult(run_id=run.info.run_id, model_uri=model_uri, max_abs_diff=max_abs_diff)


@click.command(help="Convert a train run's pipeline to ONNX, check parity with sklearn, log it with mlflow.onnx.")
@click.option("--train-run-id", required=True, help="Run id of the train step whose model to convert.")
@click.option("--tolerance", type=float, default=1e-4, show_default=True, help="Max allowed |Δp| vs sklearn.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the perturbed parity rows.")
@run_id_file_option
def cli(train_run_id: str, tolerance: float, seed: int, run_id_file: Path | None) -> None:
    result = run_step_cli("convert", lambda settings: convert(train_run_id, tolerance, seed, settings), run_id_file)
    click.echo(f"convert run {result.run_id}: parity max |Δp| {result.max_abs_diff:.2e}, model {result.model_uri}")


if __name__ == "__main__":
    cli()
