"""What every step's command line shares: logging set-up, tracking URI, and one-line errors with exit codes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import click
from mlflow.exceptions import MlflowException

from registry.errors import RegistryError, first_line
from registry.gate import GateRefusedError
from scoring.progress import on_terminal
from steps.errors import StepError, UserInputError
from steps.settings import PipelineSettings
from steps.tracking import configure_tracking

logger = logging.getLogger(__name__)


class HasRunId(Protocol):
    @property
    def run_id(self) -> str: ...


T = TypeVar("T", bound=HasRunId)
F = TypeVar("F", bound=Callable[..., object])

EXIT_USER_ERROR = 2
EXIT_STEP_FAILED = 1
EXIT_GATE_REFUSED = 3  # as `python -m registry promote`


def run_step_cli(step: str, work: Callable[[PipelineSettings], T], run_id_file: Path | None = None) -> T:
    """Run one step for a CLI: configure logging and MLflow, turn expected failures into one line + exit code, and
    write the run id to `run_id_file` (checked before the work, so that a bad path costs no run)."""
    if run_id_file is not None:
        _check_run_id_file(step, run_id_file)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # MLflow and alembic are chatty at INFO; the step's own progress is what the user wants to see.
    for noisy in ("alembic", "mlflow.store", "mlflow.tracking", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow's own download bars follow the same rule as ours (scoring.progress): only where a terminal draws them.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", str(on_terminal()).lower())
    settings = PipelineSettings()
    configure_tracking(settings)
    try:
        result = work(settings)
    except UserInputError as error:
        sys.stderr.write(f"error: {step}: {error}\n")
        raise SystemExit(EXIT_USER_ERROR) from None
    except StepError as error:
        sys.stderr.write(f"error: {step} failed: {error}\n")
        raise SystemExit(EXIT_STEP_FAILED) from None
    except GateRefusedError as error:
        sys.stderr.write(f"error: {step}: {error}\n")
        raise SystemExit(EXIT_GATE_REFUSED) from None
    except RegistryError as error:
        # The registry's refusals (another feature schema, an unknown alias, ...) are the user's to act on.
        sys.stderr.write(f"error: {step}: {error}\n")
        raise SystemExit(EXIT_USER_ERROR) from None
    except MlflowException as error:
        sys.stderr.write(f"error: {step}: MLflow: {first_line(error)}\n")
        raise SystemExit(EXIT_STEP_FAILED) from None
    if run_id_file is not None:
        try:
            write_run_id(run_id_file, result.run_id)
        except OSError as error:
            _run_id_file_error(step, run_id_file, error.strerror or str(error))
    return result


def _run_id_file_error(step: str, path: Path, reason: str) -> None:
    sys.stderr.write(f"error: {step}: --run-id-file {path}: {reason}\n")
    raise SystemExit(EXIT_USER_ERROR)


def _check_run_id_file(step: str, path: Path) -> None:
    """The run id can be written to `path`: its folder exists (created if need be) and is writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _run_id_file_error(step, path, error.strerror or str(error))
    if not path.parent.is_dir():
        _run_id_file_error(step, path, f"{path.parent} is not a directory")
    if path.is_dir():
        _run_id_file_error(step, path, "is a directory")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        _run_id_file_error(step, path, "Permission denied")


def run_id_file_option(command: F) -> F:
    """`--run-id-file PATH`: the step also writes its run id there, for scripts that chain steps (run_scripts.bat)."""
    option = click.option(
        "--run-id-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Also write this step's run id to this file (the id alone, no newline), for scripts chaining steps.",
    )
    return option(command)


def write_run_id(path: Path | None, run_id: str) -> None:
    """Write `run_id` to `path` (no newline: `set /p ID=<file` in a .bat file reads it whole), if a path is given."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id, encoding="ascii")
