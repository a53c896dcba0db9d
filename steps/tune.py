"""Step `tune`: a small grid of MLP configurations as child runs of one parent, best by validation ROC AUC.

The parent run logs the winning configuration's parameters with prefix `best_` and tag `best_run_id`, so
`mlflow run . -e train -P hidden_layers=...` can retrain it; the UI's "compare runs" shows the whole grid.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace

import click
import mlflow

from scoring.contract import STEP_TAG
from scoring.progress import Progress
from steps.cli import run_step_cli
from steps.data import features_and_target
from steps.errors import UserInputError
from steps.model import MLPParams, parse_hidden_layers, train_mlp
from steps.prepare import load_prepared
from steps.settings import PipelineSettings
from steps.tracking import git_tags, lineage, log_metric_history, log_params, step_run

logger = logging.getLogger(__name__)

DEFAULT_HIDDEN_LAYERS = "32-16 64-32 128-64"
DEFAULT_ALPHAS = "0.01 0.1"


@dataclass(frozen=True)
class TuneResult:
    run_id: str
    best_run_id: str
    best_params: MLPParams
    best_validation_auc: float
    trials: int


def grid(hidden_layers: list[tuple[int, ...]], alphas: list[float], base: MLPParams) -> list[MLPParams]:
    return [replace(base, hidden_layers=h, alpha=a) for h, a in itertools.product(hidden_layers, alphas)]


def tune(
    prepare_run_id: str,
    configurations: list[MLPParams],
    settings: PipelineSettings | None = None,
) -> TuneResult:
    settings = settings or PipelineSettings()
    if not configurations:
        raise UserInputError("the search grid is empty: give at least one hidden-layers value and one alpha")
    with step_run("tune", settings) as parent:
        upstream = lineage(prepare_run_id, "prepare")
        log_params({**upstream, "trials": len(configurations)})
        prepared = load_prepared(prepare_run_id)
        schema = prepared.schema
        x_train, y_train = features_and_target(prepared.splits.train, schema)
        x_validation, y_validation = features_and_target(prepared.splits.validation, schema)
        results: list[tuple[float, str, MLPParams]] = []
        with Progress(len(configurations), description="tune", unit="trials") as progress:
            for params in configurations:
                name = f"mlp-{'-'.join(map(str, params.hidden_layers))}-alpha{params.alpha:g}"
                with mlflow.start_run(run_name=name, nested=True, tags={STEP_TAG: "tune-trial", **git_tags()}) as trial:
                    log_params(params.as_params())
                    _, history = train_mlp(schema, x_train, y_train, x_validation, y_validation, params)
                    log_metric_history(trial.info.run_id, "train_loss", history.loss)
                    log_metric_history(trial.info.run_id, "validation_roc_auc", history.validation_auc)
                    best_auc = max(history.validation_auc)
                    mlflow.log_metrics(
                        {
                            "validation_roc_auc_best": best_auc,
                            "best_epoch": history.best_epoch,
                            "epochs_run": history.epochs,
                        }
                    )
                    results.append((best_auc, trial.info.run_id, params))
                progress.update()
        best_auc, best_run_id, best_params = max(results, key=lambda result: result[0])
        log_params({f"best_{k}": v for k, v in best_params.as_params().items()})
        mlflow.log_metric("best_validation_roc_auc", best_auc)
        mlflow.set_tag("best_run_id", best_run_id)
        logger.info("best of %d trials: %s (validation ROC AUC %.4f)", len(results), best_params, best_auc)
        return TuneResult(parent.info.run_id, best_run_id, best_params, best_auc, len(results))


@click.command(help="Grid-search MLP sizes and L2 penalties as child runs; best by validation ROC AUC.")
@click.option("--prepare-run-id", required=True)
@click.option("--hidden-layers", default=DEFAULT_HIDDEN_LAYERS, show_default=True, help="Space-separated, e.g. 64-32.")
@click.option("--alphas", default=DEFAULT_ALPHAS, show_default=True, help="Space-separated L2 penalties.")
@click.option("--max-epochs", type=int, default=200, show_default=True)
@click.option("--patience", type=int, default=15, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
def cli(prepare_run_id: str, hidden_layers: str, alphas: str, max_epochs: int, patience: int, seed: int) -> None:
    def work(settings: PipelineSettings) -> TuneResult:
        try:
            alpha_values = [float(a) for a in alphas.replace(",", " ").split()]
        except ValueError as error:
            raise UserInputError(f"parameter alphas must be numbers like '0.01 0.1', got {alphas!r}") from error
        sizes = [parse_hidden_layers(h) for h in hidden_layers.split()]
        base = MLPParams(max_epochs=max_epochs, patience=patience, seed=seed)
        return tune(prepare_run_id, grid(sizes, alpha_values, base), settings)

    result = run_step_cli("tune", work)
    click.echo(
        f"tune run {result.run_id}: best of {result.trials} is {result.best_params.as_params()['hidden_layers']} "
        f"alpha {result.best_params.alpha:g} (validation ROC AUC {result.best_validation_auc:.4f}, "
        f"run {result.best_run_id})"
    )


if __name__ == "__main__":
    cli()
