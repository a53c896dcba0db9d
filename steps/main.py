"""Entry point `main`: prepare → train → convert → quantize → benchmark as child runs, then register.

Registration happens only after every step succeeded: the fp32 and INT8 ONNX models become two versions of one
registered model, and alias `staging` points at the candidate (rule in `choose_candidate`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import click
import mlflow
from mlflow.tracking import MlflowClient

from registry.errors import GateRefusedError
from registry.promotion import promote
from registry.resolve import version_for_alias
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS, VersionSpec, register_versions, set_alias
from steps.benchmark import BenchmarkResult, benchmark, parse_batch_sizes
from steps.cli import run_step_cli
from steps.convert import ConvertResult, convert
from steps.errors import UserInputError
from steps.model import MLPParams, parse_hidden_layers
from steps.prepare import DEFAULT_DATA_PATH, PrepareResult, prepare
from steps.quantize import METHODS, QuantizeResult, quantize
from steps.settings import PipelineSettings
from steps.tracking import git_tags, log_params, step_run
from steps.train import TrainResult, train

logger = logging.getLogger(__name__)

CANDIDATE_CHOICES = ("auto", "fp32", "int8")
# INT8 becomes the candidate under "auto" only if it costs (almost) nothing and actually buys speed.
INT8_MIN_AGREEMENT = 0.99
INT8_MAX_AUC_LOSS = 0.002
INT8_MIN_SPEEDUP = 1.1


@dataclass(frozen=True)
class MainResult:
    run_id: str
    model_name: str
    versions: dict[str, str]
    candidate: str
    summary: dict[str, float]
    first_deployment: str | None = None  # what happened to `production` when none existed before
    aliases: dict[str, list[str]] = field(default_factory=dict)  # version -> its aliases at the end of the run


def choose_candidate(requested: str, quantized: QuantizeResult, bench: BenchmarkResult) -> str:
    """fp32 unless asked for int8, or "auto" and INT8 agrees with fp32, keeps AUC and is faster on one row."""
    if requested != "auto":
        return requested
    single = bench.table[bench.table["batch_size"] == bench.table["batch_size"].min()].set_index("runtime")
    speedup = single.at["onnx_fp32", "p50_ms"] / single.at["onnx_int8", "p50_ms"]
    metrics = quantized.metrics
    good_enough = (
        metrics["decision_agreement"] >= INT8_MIN_AGREEMENT
        and metrics["test_roc_auc_delta"] >= -INT8_MAX_AUC_LOSS
        and speedup >= INT8_MIN_SPEEDUP
    )
    return "int8" if good_enough else "fp32"


def version_specs(
    prepared: PrepareResult,
    trained: TrainResult,
    converted: ConvertResult,
    quantized: QuantizeResult,
    bench: BenchmarkResult,
) -> list[VersionSpec]:
    single = bench.table[bench.table["batch_size"] == bench.table["batch_size"].min()].set_index("runtime")
    common = {
        "prepare_run_id": prepared.run_id,
        "train_run_id": trained.run_id,
        "benchmark_run_id": bench.run_id,
        "data_sha256": prepared.data_sha256,
        "decision_threshold": f"{trained.threshold:.6f}",
        "git_commit": git_tags()["git_commit"],
    }
    fp32 = VersionSpec(
        converted.model_uri,
        {
            **common,
            "precision": "fp32",
            "source_run_id": converted.run_id,
            "test_roc_auc": f"{trained.test_metrics['roc_auc']:.6f}",
            "parity_max_abs_diff": f"{converted.max_abs_diff:.3g}",
            "latency_p99_ms_single_row": f"{single.at['onnx_fp32', 'p99_ms']:.4f}",
        },
    )
    q = quantized.metrics
    int8 = VersionSpec(
        quantized.model_uri,
        {
            **common,
            "precision": "int8",
            "source_run_id": quantized.run_id,
            "fp32_source_run_id": converted.run_id,
            "test_roc_auc": f"{q['test_roc_auc_int8']:.6f}",
            "parity_max_abs_diff": f"{q['max_abs_diff']:.3g}",
            "decision_agreement": f"{q['decision_agreement']:.6f}",
            "latency_p99_ms_single_row": f"{single.at['onnx_int8', 'p99_ms']:.4f}",
        },
    )
    return [fp32, int8]


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
    settings: PipelineSettings | None = None,
) -> MainResult:
    settings = settings or PipelineSettings()
    params = params or MLPParams(seed=seed)
    if candidate not in CANDIDATE_CHOICES:
        raise UserInputError(f"parameter candidate must be one of {', '.join(CANDIDATE_CHOICES)}, got {candidate!r}")
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
                "registered_model_name": settings.registered_model_name,
            }
        )
        prepared = prepare(data_path, target, positive_label, seed=seed, settings=settings)
        trained = train(prepared.run_id, params, cv_folds=cv_folds, settings=settings)
        converted = convert(trained.run_id, settings=settings)
        quantized = quantize(converted.run_id, quantization, settings=settings)
        bench = benchmark(quantized.run_id, batch_sizes, benchmark_repeats, settings=settings)
        chosen = choose_candidate(candidate, quantized, bench)
        run = mlflow.get_run(trained.run_id)
        summary = {
            "test_roc_auc": trained.test_metrics["roc_auc"],
            "test_gini": trained.test_metrics["gini"],
            "test_ks": trained.test_metrics["ks"],
            "parity_max_abs_diff": converted.max_abs_diff,
            "int8_decision_agreement": quantized.metrics["decision_agreement"],
            "int8_test_roc_auc_delta": quantized.metrics["test_roc_auc_delta"],
            **{key: run.data.metrics[key] for key in ("cv_roc_auc_mean", "cv_roc_auc_std") if key in run.data.metrics},
        }
        if trained.baseline_run_id:
            summary["baseline_test_roc_auc"] = mlflow.get_run(trained.baseline_run_id).data.metrics["test_roc_auc"]
        mlflow.log_metrics(summary)
        mlflow.set_tag("candidate_precision", chosen)
        versions: dict[str, str] = {}
        first_deployment = None
        if register:
            specs = version_specs(prepared, trained, converted, quantized, bench)
            alias_index = [spec.tags["precision"] for spec in specs].index(chosen)
            registered = register_versions(settings.registered_model_name, specs, STAGING_ALIAS, alias_index)
            versions = {spec.tags["precision"]: mv.version for spec, mv in zip(specs, registered, strict=True)}
            mlflow.set_tags({f"registered_version_{k}": v for k, v in versions.items()})
            if promote_first:
                first_deployment = deploy_if_first(settings, versions, chosen, parent.info.run_id)
        client = MlflowClient(settings.tracking_uri)
        aliases = {v: client.get_model_version(settings.registered_model_name, v).aliases for v in versions.values()}
        return MainResult(
            parent.info.run_id, settings.registered_model_name, versions, chosen, summary, first_deployment, aliases
        )


def deploy_if_first(settings: PipelineSettings, versions: dict[str, str], chosen: str, run_id: str) -> str | None:
    """With no `production` yet, promote the candidate through the gate and stage the other precision as challenger.

    Returns what happened (None when a production version already existed: promotion is then the gate's job, run by
    `python -m registry promote` or the scheduled DAG). A refused gate is reported, not raised: the versions are
    registered correctly, they just are not good enough to serve.
    """
    registry_settings = RegistrySettings(tracking_uri=settings.tracking_uri, model_name=settings.registered_model_name)
    client = MlflowClient(settings.tracking_uri)
    if version_for_alias(client, settings.registered_model_name, PRODUCTION_ALIAS) is not None:
        return None
    try:
        result = promote(
            versions[chosen], reason="first deployment by the main job", actor=f"main run {run_id}",
            settings=registry_settings,
        )  # fmt: skip
    except GateRefusedError as error:
        logger.warning("first deployment refused by the gate: %s", error)
        mlflow.set_tag("first_deployment", f"refused: {error}"[:5000])
        return f"refused: {error}"
    challenger = next((version for precision, version in versions.items() if precision != chosen), None)
    if challenger is not None:
        set_alias(settings.registered_model_name, STAGING_ALIAS, challenger)
    mlflow.set_tag("first_deployment", f"production -> version {result.to_version}")
    return result.message


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
) -> None:
    def work(settings: PipelineSettings) -> MainResult:
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
            settings,
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
