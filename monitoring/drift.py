"""`python -m monitoring.drift`: a drift report of the gateway's recent traffic (or of a file) against the training
data of the version that scored it; one line `error: ...` and exit code 2 for a user mistake."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import redis
from pydantic import ValidationError

from monitoring.errors import MonitoringInputError
from registry.errors import RegistryError, first_line, validation_problems
from registry.server import check_tracking_server

if TYPE_CHECKING:
    from monitoring.job import DriftOutcome

EXIT_USER_ERROR = 2
EXIT_FAILED = 1
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `30m`, `24h`, `7d` -> seconds."""
    match = DURATION.match(text)
    if not match:
        raise MonitoringInputError(f"--since {text!r}: expected a duration such as 30m, 24h or 7d")
    return float(match.group(1)) * SECONDS[match.group(2)]


def describe(outcome: DriftOutcome) -> list[str]:
    """The lines printed for one version: the summary and where the report is."""
    from monitoring.publish import REPORT_ARTIFACT, SNAPSHOT_ARTIFACT
    from monitoring.summary import drifted_feature_names, number, psi_by_column

    if not outcome.reported or outcome.summary is None:
        return [outcome.message]
    summary = outcome.summary
    lines = [
        f"drift report: {outcome.model} version {outcome.version}, {outcome.rows} rows -> verdict {summary['verdict']}"
        + (f" ({summary['verdict_reason']})" if "verdict_reason" in summary else ""),  # reports before it had none
        f"  drift share (Evidently) {number(summary, 'drift_share'):.3f}; drifted features: "
        f"{', '.join(drifted_feature_names(summary)) or 'none'}; score drift ({summary['score_drift_method']}) "
        f"{number(summary, 'score_drift_score'):.3f}",
        "  credit PSI (< 0.10 stable, 0.10-0.25 watch, > 0.25 act):",
    ]
    for column, value in sorted(psi_by_column(summary).items(), key=lambda item: -item[1]):
        lines.append(f"    {column:<24} {value:8.4f}")
    lines.append(f"  MLflow run: {outcome.run_url} (artifacts {REPORT_ARTIFACT}, {SNAPSHOT_ARTIFACT})")
    return lines


@click.command(help="Drift report (Evidently + credit PSI) of the prediction stream's newest window, or of a file.")
@click.option("--last-rows", type=int, default=None, help="The newest N rows of the stream [default: all it holds].")
@click.option("--since", "since", default=None, help="Only rows of the last duration, e.g. 30m, 24h, 7d.")
@click.option("--file", "data_file", type=click.Path(path_type=Path), default=None, help="CSV/Parquet of applicants.")
@click.option("--version", default=None, help="With --file: version number or alias [default: production].")
@click.option("--model", "model_name", default=None, help="Registered model [env CREDIT_REGISTERED_MODEL_NAME].")
@click.option("--tracking-uri", default=None, help="MLflow tracking server [env MLFLOW_TRACKING_URI].")
@click.option("--redis-url", default=None, help="Redis of the prediction stream [env REDIS_URL].")
@click.option(
    "--pushgateway", "pushgateway_url", default=None, help="Pushgateway URL [env MONITORING_PUSHGATEWAY_URL]."
)
@click.option("--sample-size", type=int, default=None, help="Rows analysed per version at most [50000].")
@click.option("--seed", "sample_seed", type=int, default=None, help="Seed of the sample [42].")
@click.option("--min-rows", type=int, default=None, help="Fewer rows than this are skipped [500].")
def cli(
    last_rows: int | None,
    since: str | None,
    data_file: Path | None,
    version: str | None,
    **overrides: Any,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # MLflow's download progress bars would interleave with the summary printed below.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("monitoring").setLevel(logging.INFO)
    logging.getLogger("scoring.progress").setLevel(logging.INFO)  # progress lines where no bar can be drawn
    # Imported here: Evidently and MLflow take ~10 s to import, which `--help` and option errors need not wait for.
    from mlflow.exceptions import MlflowException

    from monitoring.job import run_drift
    from monitoring.settings import MonitoringSettings
    from monitoring.window import WindowSpec
    from scoring.progress import Progress

    try:
        settings = MonitoringSettings(**{key: value for key, value in overrides.items() if value is not None})
        check_tracking_server(settings.tracking_uri)
        if data_file is not None and (last_rows is not None or since is not None):
            raise MonitoringInputError("--file and --last-rows/--since exclude each other")
        spec = WindowSpec(last_rows=last_rows, since_seconds=parse_duration(since) if since else None)
        with Progress(None, description="reading the prediction stream") as progress:
            outcomes = run_drift(settings, spec, data_file, version, on_rows=progress.update)
    except ValidationError as error:  # a setting from the environment or an option: name it
        click.echo(f"error: {validation_problems(error)}", err=True)
        raise SystemExit(EXIT_USER_ERROR) from None
    except (MonitoringInputError, RegistryError) as error:
        click.echo(f"error: {first_line(error)}", err=True)
        raise SystemExit(EXIT_USER_ERROR) from None
    except redis.RedisError as error:
        click.echo(f"error: Redis: {error}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    except OSError as error:  # the Pushgateway (urllib) or a file
        click.echo(f"error: {error}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    except MlflowException as error:
        click.echo(f"error: MLflow: {first_line(error)}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    for outcome in outcomes:
        if outcome.reported:  # a skipped window was already said in one log line
            click.echo("\n".join(describe(outcome)))


def main() -> None:
    cli(prog_name="python -m monitoring.drift")


if __name__ == "__main__":
    main()
