"""`python -m registry status|stage|promote|rollback|history|card`: the registry for people, one clear line on errors.

The output of each command is its table or message and nothing else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry import audit
from registry.card import HTML_FILE, MARKDOWN_FILE, card_location, download_card, write_card
from registry.errors import RegistryError, access_problem, first_line
from registry.gate import GateRefusedError
from registry.promotion import describe_parking, promote, rollback, stage, staging_or, unpark
from registry.resolve import get_version, require_model
from registry.server import check_tracking_server
from registry.settings import RegistrySettings
from scoring.contract import LATENCY_P99_TAG, PARITY_TAG, PRECISION_TAG, TEST_ROC_AUC_TAG

T = TypeVar("T")
EXIT_USER_ERROR = 2
EXIT_REFUSED = 3


def run_command(settings: RegistrySettings, work: Callable[[], T]) -> T:
    try:
        check_tracking_server(settings.tracking_uri)
        return work()
    except GateRefusedError as error:
        click.echo(error.report.to_markdown(), err=True)
        click.echo(f"error: {error}", err=True)
        raise SystemExit(EXIT_REFUSED) from None
    except RegistryError as error:
        click.echo(f"error: {error}", err=True)
        raise SystemExit(EXIT_USER_ERROR) from None
    except MlflowException as error:
        # A 401/403 of the server's basic-auth app names the user and what to check, not the REST endpoint.
        problem = access_problem(error, os.environ.get("MLFLOW_TRACKING_USERNAME"))
        click.echo(f"error: MLflow: {problem or first_line(error)}", err=True)
        raise SystemExit(1) from None


@click.group(help="Stage, promote, roll back and inspect versions of the registered credit-scoring model.")
@click.option("--model", "model_name", default=None, help="Registered model name [env CREDIT_REGISTERED_MODEL_NAME].")
@click.option("--tracking-uri", default=None, help="MLflow tracking server [env MLFLOW_TRACKING_URI].")
@click.option("--mirror-stages", is_flag=True, default=None, help="Also move the deprecated Production stage.")
@click.pass_context
def cli(context: click.Context, model_name: str | None, tracking_uri: str | None, mirror_stages: bool | None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The command's output is its table or message: MLflow would add download progress bars (promote and stage fetch
    # ONNX files) and a "View run" line for every audit record it writes.
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    overrides = {"model_name": model_name, "tracking_uri": tracking_uri, "mirror_stages": mirror_stages}
    context.obj = RegistrySettings().model_copy(update={k: v for k, v in overrides.items() if v is not None})


@cli.command(help="Table of versions with aliases and key metrics.")
@click.pass_obj
def status(settings: RegistrySettings) -> None:
    def work() -> list[str]:
        client = MlflowClient(settings.tracking_uri)
        require_model(client, settings.model_name)
        versions = client.search_model_versions(f"name = '{settings.model_name}'")
        # Search results carry no aliases; the registered model has them all.
        aliases: dict[str, list[str]] = {}
        for alias, number in client.get_registered_model(settings.model_name).aliases.items():
            aliases.setdefault(str(number), []).append(alias)
        rows = [("version", "aliases", "precision", "test AUC", "parity", "p99 ms", "created")]
        for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
            created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            tags = version.tags
            rows.append(
                (
                    version.version,
                    ",".join(sorted(aliases.get(version.version, []))) or "-",
                    tags.get(PRECISION_TAG, "?"),
                    tags.get(TEST_ROC_AUC_TAG, "?")[:6],
                    tags.get(PARITY_TAG, "?"),
                    tags.get(LATENCY_P99_TAG, "?"),
                    created,
                )
            )
        return [f"model {settings.model_name}", *_table(rows)]

    click.echo("\n".join(run_command(settings, work)))


@cli.command(name="stage", help="Point staging at a version: the next candidate (variant B of the gateway).")
@click.option("--version", required=True, help="Version number to stage.")
@click.option("--reason", default="", help="Why: recorded in the audit trail.")
@click.option("--allow-schema-change", is_flag=True, help="Stage it even though its inputs differ from production's.")
@click.pass_obj
def stage_command(settings: RegistrySettings, version: str, reason: str, allow_schema_change: bool) -> None:
    result = run_command(
        settings, lambda: stage(version, reason=reason, allow_schema_change=allow_schema_change, settings=settings)
    )
    click.echo(result.message)


@cli.command(name="promote", help="Promote the staging version (or --version N) to production through the gate.")
@click.option("--version", default=None, help="Version number to promote (default: the one with alias staging).")
@click.option("--force", is_flag=True, help="Promote even if gate checks fail; needs --reason.")
@click.option("--reason", default="", help="Why: recorded in the audit trail.")
@click.pass_obj
def promote_command(settings: RegistrySettings, version: str | None, force: bool, reason: str) -> None:
    result = run_command(settings, lambda: promote(version, force=force, reason=reason, settings=settings))
    if result.report is not None:
        click.echo(result.report.to_markdown())
    click.echo(result.message)


@cli.command(name="rollback", help="Move production back to the version it replaced.")
@click.option("--reason", default="", help="Why: recorded in the audit trail.")
@click.pass_obj
def rollback_command(settings: RegistrySettings, reason: str) -> None:
    result = run_command(settings, lambda: rollback(reason=reason, settings=settings))
    click.echo(result.message)


@cli.command(help="Audit trail of alias moves, newest first.")
@click.option("--limit", type=int, default=20, show_default=True)
@click.pass_obj
def history(settings: RegistrySettings, limit: int) -> None:
    def work() -> list[str]:
        client = MlflowClient(settings.tracking_uri)
        require_model(client, settings.model_name)
        records = audit.history(client, settings)[:limit]
        if not records:
            return [f"no recorded moves for {settings.model_name}"]
        rows = [("at", "action", "from", "to", "outcome", "gate", "forced", "actor", "approver", "reason")]
        rows += [
            (r.at, r.action, r.from_version or "-", r.to_version, r.outcome, r.gate_verdict, str(r.forced).lower(),
             r.actor, r.approver or "-", r.reason or "-")
            for r in records
        ]  # fmt: skip
        return _table(rows)

    click.echo("\n".join(run_command(settings, work)))


@cli.command(help="Whether a version (default: the staging version) is parked, and why.")
@click.option("--version", default=None, help="Version number (default: the one with alias staging).")
@click.pass_obj
def parked(settings: RegistrySettings, version: str | None) -> None:
    def work() -> str:
        client = MlflowClient(settings.tracking_uri)
        require_model(client, settings.model_name)
        number = staging_or(client, settings.model_name, version)
        record = audit.parked_by(client, settings, number)
        if record is None:
            return f"{settings.model_name} version {number} is not parked: the promotion DAG proposes it"
        return f"{settings.model_name} version {number} is {describe_parking(record)}"

    click.echo(run_command(settings, work))


@cli.command(name="unpark", help="Propose a parked version (rejected, or refused by the gate) for promotion again.")
@click.option("--version", required=True, help="Version number.")
@click.option("--reason", required=True, help="Why it should be proposed again: recorded in the audit trail.")
@click.pass_obj
def unpark_command(settings: RegistrySettings, version: str, reason: str) -> None:
    run_command(settings, lambda: unpark(version, reason=reason, settings=settings))
    click.echo(f"{settings.model_name} version {version} is no longer parked: the promotion DAG proposes it again")


@cli.command(name="card", help="Where the model card of a version is (Markdown and HTML); --refresh rewrites it first.")
@click.option("--version", required=True, help="Version number.")
@click.option("--refresh", is_flag=True, help="Rebuild the card from what is recorded now (e.g. a new gate verdict).")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also download both files into this folder.",
)
@click.pass_obj
def card_command(settings: RegistrySettings, version: str, refresh: bool, output: Path | None) -> None:
    def work() -> list[str]:
        client = MlflowClient(settings.tracking_uri)
        details = get_version(client, settings.model_name, version)
        location = card_location(details.tags)
        if refresh or location is None:
            written = write_card(client, settings, details.version)
            markdown_uri, html_uri = written.markdown_uri, written.html_uri
        else:
            markdown_uri, html_uri = location, location.removesuffix(MARKDOWN_FILE) + HTML_FILE
        lines = [f"{settings.model_name} version {details.version} model card:", f"  markdown {markdown_uri}",
                 f"  html     {html_uri}"]  # fmt: skip
        if output is not None:
            lines += [f"  saved    {path}" for path in download_card(client, markdown_uri, output)]
        return lines

    click.echo("\n".join(run_command(settings, work)))


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def main() -> None:
    cli(prog_name="python -m registry")


if __name__ == "__main__":
    main()
