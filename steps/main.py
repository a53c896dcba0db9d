"""Entry point `main`: prepare → train → convert → quantize → benchmark as child runs, then registration.

Registration (`steps.registration`) happens only after every step succeeded: the fp32 and INT8 ONNX models become two
versions of one registered model, and alias `staging` points at the candidate. A model whose inputs differ from the
registered model's production version is refused right after `prepare`, before any training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import click
import mlflow
from mlflow.tracking import MlflowClient

from steps.benchmark import benchmark, parse_batch_sizes
from steps.cli import run_step_cli
from steps.convert import convert
from steps.credit_risk import RiskArguments, RiskOptions, check_calibration_choice, risk_cli_options
from steps.errors import UserInputError
from steps.model import MLPParams, parse_hidden_layers
from steps.prepare import DEFAULT_DATA_PATH, parse_column_list, prepare
from steps.quantize import METHODS, quantize
from steps.registration import CANDIDATE_CHOICES, check_schema, choose_candidate, pipeline_output, register_candidate
from steps.settings import PipelineSettings
from steps.tracking import REGISTERED_MODEL_TAG, log_params, step_run
from steps.train import train

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MainResult:
    run_id: str
    model_name: str
    versions: dict[str, str]
    candidate: str
    summary: dict[str, float]
    first_deployment: str | None = None  # what happened to `production` when none existed before
    aliases: dict[str, list[str]] = field(default_factory=dict)  # version -> its aliases at the end of the run


def main(
    data_path: Path = DEFAULT_DATA_PATH,
    target: str = "Status",
    positive_label: str = "bad",
    seed: int = 42,
    params: MLPParams | None = None,
    cv_folds: int = 5,
    quantization: str = "dynamic",
    batch_sizes: list[int] | None = None,
    benchmark_repeats: int = 2000,
    candidate: str = "auto",
    register: bool = True,
    promote_first: bool = True,
    categorical_columns: list[str] | None = None,
    drop_columns: list[str] | None = None,
    allow_schema_change: bool = False,
    settings: PipelineSettings | None = None,
    calibration: str = "auto",
    risk: RiskOptions | None = None,
) -> MainResult:
    settings = settings or PipelineSettings()
    params = params or MLPParams(seed=seed)
    if candidate not in CANDIDATE_CHOICES:
        raise UserInputError(f"parameter candidate must be one of {', '.join(CANDIDATE_CHOICES)}, got {candidate!r}")
    check_calibration_choice(calibration)
    if quantization not in METHODS:
        raise UserInputError(f"parameter quantization must be one of {', '.join(METHODS)}, got {quantization!r}")
    with step_run("main", settings) as parent:
        log_params(
            {
                "data_path": str(data_path),
                "target": target,
                "positive_label": positive_label,
                "seed": seed,
                "cv_folds": cv_folds,
                "quantization": quantization,
                "candidate": candidate,
                "registered_model": settings.model_name,
                "allow_schema_change": allow_schema_change,
                "calibration": calibration,
            }
        )
        # Also a tag: under `mlflow run` the param keeps what was typed (an empty string for "the default model").
        mlflow.set_tag(REGISTERED_MODEL_TAG, settings.model_name)
        prepared = prepare(
            data_path,
            target,
            positive_label,
            seed=seed,
            categorical_columns=categorical_columns or [],
            drop_columns=drop_columns or [],
            settings=settings,
        )
        if register:
            check_schema(prepared.schema, settings, allow_schema_change)
        trained = train(
            prepared.run_id, params, cv_folds=cv_folds, settings=settings, calibration_method=calibration, risk=risk
        )
        converted = convert(trained.run_id, settings=settings)
        quantized = quantize(converted.run_id, quantization, settings=settings)
        bench = benchmark(quantized.run_id, batch_sizes, benchmark_repeats, settings=settings)
        run = mlflow.get_run(trained.run_id)
        summary = {
            "test_roc_auc": trained.test_metrics["roc_auc"],
            "test_gini": trained.test_metrics["gini"],
            "test_ks": trained.test_metrics["ks"],
            "test_ece": run.data.metrics["test_ece"],
            "parity_max_abs_diff": converted.max_abs_diff,
            "int8_decision_agreement": quantized.metrics["decision_agreement"],
            "int8_test_roc_auc_delta": quantized.metrics["test_roc_auc_delta"],
            "int8_reason_top3_agreement": quantized.metrics["reason_top3_agreement"],
            **{key: run.data.metrics[key] for key in ("cv_roc_auc_mean", "cv_roc_auc_std") if key in run.data.metrics},
        }
        if trained.baseline_run_id:
            summary["baseline_test_roc_auc"] = mlflow.get_run(trained.baseline_run_id).data.metrics["test_roc_auc"]
        mlflow.log_metrics(summary)
        if not register:
            chosen = choose_candidate(
                candidate, pipeline_output(MlflowClient(settings.tracking_uri), bench.run_id).int8
            )
            mlflow.set_tag("candidate_precision", chosen)
            return MainResult(parent.info.run_id, settings.model_name, {}, chosen, summary)
        registered = register_candidate(
            bench.run_id,
            candidate,
            allow_schema_change,
            promote_first,
            actor=f"main run {parent.info.run_id}",
            settings=settings,
        )
        mlflow.set_tag("candidate_precision", registered.candidate)
        mlflow.set_tags({f"registered_version_{k}": v for k, v in registered.versions.items()})
        return MainResult(
            parent.info.run_id,
            settings.model_name,
            registered.versions,
            registered.candidate,
            summary,
            registered.first_deployment,
            registered.aliases,
        )


@click.command(help="Run the whole pipeline as child runs of one parent run, then register the ONNX models.")
@click.option("--data-path", type=click.Path(path_type=Path), default=DEFAULT_DATA_PATH, show_default=True)
@click.option("--target", default="Status", show_default=True)
@click.option("--positive-label", default="bad", show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--hidden-layers", default="128-64", show_default=True)
@click.option("--alpha", type=float, default=0.1, show_default=True)
@click.option("--max-epochs", type=int, default=200, show_default=True)
@click.option("--cv-folds", type=int, default=5, show_default=True, help="0 turns cross-validation off.")
@click.option("--quantization", type=click.Choice(METHODS), default="dynamic", show_default=True)
@click.option("--batch-sizes", default="1 32 1024", show_default=True)
@click.option("--benchmark-repeats", type=int, default=2000, show_default=True)
@click.option("--candidate", type=click.Choice(CANDIDATE_CHOICES), default="auto", show_default=True)
@click.option("--register", type=click.BOOL, default=True, show_default=True, help="Register the ONNX models.")
@click.option(
    "--promote-first",
    type=click.BOOL,
    default=True,
    show_default=True,
    help="With no production version yet, promote the candidate through the gate.",
)
@click.option("--categorical-columns", default="", help="Comma-separated columns that are categories (integer codes).")
@click.option("--drop-columns", default="", help="Comma-separated columns that are not features (an id, say).")
@click.option(
    "--registered-model",
    default="",
    help="Registered model for the versions [env CREDIT_REGISTERED_MODEL_NAME]; outside `mlflow run` also the runs' "
    "experiment, unless CREDIT_EXPERIMENT_NAME is set.",
)
@click.option(
    "--allow-schema-change",
    type=click.BOOL,
    default=False,
    show_default=True,
    help="Register even though the inputs differ from the registered model's production version.",
)
@risk_cli_options
def cli(
    data_path: Path,
    target: str,
    positive_label: str,
    seed: int,
    hidden_layers: str,
    alpha: float,
    max_epochs: int,
    cv_folds: int,
    quantization: str,
    batch_sizes: str,
    benchmark_repeats: int,
    candidate: str,
    register: bool,
    promote_first: bool,
    categorical_columns: str,
    drop_columns: str,
    registered_model: str,
    allow_schema_change: bool,
    risk_arguments: RiskArguments,
) -> None:
    def work(settings: PipelineSettings) -> MainResult:
        if registered_model:
            settings = settings.model_copy(update={"model_name": registered_model})
        params = MLPParams(
            hidden_layers=parse_hidden_layers(hidden_layers), alpha=alpha, max_epochs=max_epochs, seed=seed
        )
        return main(
            data_path,
            target,
            positive_label,
            seed,
            params,
            cv_folds,
            quantization,
            parse_batch_sizes(batch_sizes),
            benchmark_repeats,
            candidate,
            register,
            promote_first,
            parse_column_list(categorical_columns),
            parse_column_list(drop_columns),
            allow_schema_change,
            settings,
            risk_arguments.calibration,
            risk_arguments.options(),
        )

    result = run_step_cli("main", work)
    lines = [f"main run {result.run_id} finished"]
    lines += [f"  {key:<26} {value:.4f}" for key, value in result.summary.items()]
    for precision, version in result.versions.items():
        aliases = result.aliases.get(version, [])
        marker = f"  <- alias {', '.join(aliases)}" if aliases else ""
        lines.append(f"  registered {result.model_name} version {version} ({precision}){marker}")
    if result.first_deployment:
        lines.append(f"  first deployment: {result.first_deployment}")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    cli()
