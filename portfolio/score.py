"""`python -m portfolio.score`: re-score a whole book (CSV or Parquet, a file or a folder) with a registered version
into a Parquet dataset; one line `error: ...` and exit code 2 for a user mistake, exit code 1 when more rows than
allowed were rejected (the output is complete either way)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from portfolio.errors import PortfolioInputError, RejectRateExceededError
from portfolio.settings import DEFAULT_VERSION
from registry.errors import RegistryError, first_line, validation_problems
from registry.server import check_tracking_server

EXIT_USER_ERROR = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # what a shell reports for Ctrl-C


@click.command(help="Score a portfolio (CSV/Parquet file or folder) with a registered version into Parquet parts.")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--output", "output_path", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--version", default=DEFAULT_VERSION, show_default=True, help="Alias or version number.")
@click.option(
    "--id-column", "id_columns", multiple=True, default=("account_id",), show_default=True,
    help="Column(s) passed through to identify each row (repeat for several).",
)  # fmt: skip
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True)
@click.option("--threads", type=int, default=None, help="ONNX Runtime threads of the session [1].")
@click.option("--batch-rows", type=int, default=None, help="Rows per ONNX Runtime call [8192].")
@click.option("--rows-per-part", type=int, default=None, help="Rows per output part, the unit of resuming [1000000].")
@click.option("--max-reject-rate", type=float, default=None, help="Fail above this share of rejected rows [0.01].")
@click.option(
    "--overwrite", type=bool, is_flag=False, flag_value=True, default=False,
    help="Replace another version's (or job's) results in the output folder (`--overwrite` or `--overwrite true`).",
)  # fmt: skip
@click.option("--model", "model_name", default=None, help="Registered model [env CREDIT_REGISTERED_MODEL_NAME].")
@click.option("--tracking-uri", default=None, help="MLflow tracking server [env MLFLOW_TRACKING_URI].")
@click.option("--spark-master", default=None, help="Spark master when no session exists [local[*]].")
def cli(
    input_path: Path,
    output_path: Path,
    version: str,
    id_columns: tuple[str, ...],
    engine: str,
    overwrite: bool,
    **overrides: Any,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("portfolio").setLevel(logging.INFO)
    logging.getLogger("scoring.progress").setLevel(logging.INFO)  # progress lines where no bar can be drawn
    # MLflow's download progress bar would interleave with the job's own.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Imported here: MLflow, pandas and Arrow take seconds to import; `--help` and option errors need not wait.
    from mlflow.exceptions import MlflowException

    from portfolio.job import ScoringRequest, score_portfolio
    from portfolio.settings import PortfolioSettings

    try:
        settings = PortfolioSettings(**{key: value for key, value in overrides.items() if value is not None})
        check_tracking_server(settings.tracking_uri)
        request = ScoringRequest(
            input_path=input_path,
            output_path=output_path,
            version=version,
            id_columns=tuple(dict.fromkeys(id_columns)),
            engine="spark" if engine == "spark" else "local",
            overwrite=overwrite,
        )
        outcome = score_portfolio(request, settings)
    except ValidationError as error:  # a setting from the environment or an option: name it
        click.echo(f"error: {validation_problems(error)}", err=True)
        raise SystemExit(EXIT_USER_ERROR) from None
    except (PortfolioInputError, RegistryError) as error:
        click.echo(f"error: {first_line(error)}", err=True)
        raise SystemExit(EXIT_USER_ERROR) from None
    except RejectRateExceededError as error:
        click.echo(f"error: {first_line(error)}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    except MlflowException as error:
        click.echo(f"error: MLflow: {first_line(error)}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        click.echo("error: interrupted; finished parts are kept: the same command resumes after them", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except OSError as error:  # the output folder (full disk, permissions)
        click.echo(f"error: {error}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    click.echo(
        f"scored {outcome.scored:,} of {outcome.rows_in:,} rows with {outcome.model} version {outcome.version} "
        f"({outcome.precision}) in {outcome.seconds:.1f} s ({outcome.rows_per_s:,.0f} rows/s); "
        f"{outcome.rejected:,} rejected ({outcome.reject_rate:.2%})"
    )
    if outcome.rejects_by_reason:
        for reason, rows in list(outcome.rejects_by_reason.items())[:10]:
            click.echo(f"  rejected {rows:>9,}  {reason}")
    score_psi = outcome.psi.get("probability_of_default")
    if score_psi is not None:
        click.echo(f"  score PSI against the training reference: {score_psi:.4f}")
    click.echo(f"  output: {outcome.output}  MLflow run: {outcome.run_url}")


def main() -> None:
    cli(prog_name="python -m portfolio.score")


if __name__ == "__main__":
    main()
