"""Registry failures meant for a person, and the two rules for reading MLflow's errors (used by every CLI)."""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from pydantic import ValidationError


class RegistryError(Exception):
    """Unknown model, version or alias, an unreachable server, nothing to roll back to, ..."""


def is_not_found(error: MlflowException) -> bool:
    """Whether MLflow says "no such model, version, alias or run".

    It says so in two ways: RESOURCE_DOES_NOT_EXIST, and INVALID_PARAMETER_VALUE "... alias X not found." for an alias
    that is not set. Anything else (a server or connection error) is not a "not found" and must propagate: read as one,
    "no production version" would skip the gate's comparison.
    """
    if error.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(error).lower()


def validation_problems(error: ValidationError, prefix: str = "") -> str:
    """A settings or Params error as one line naming each field (`settings` for a check of the whole object)."""
    return "; ".join(f"{prefix}{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none): what a one-line CLI error shows."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def access_problem(error: MlflowException, user: str | None) -> str | None:
    """What a 401 or 403 of the tracking server (its basic-auth app) means, in one line; None for other errors."""
    if error.error_code == "UNAUTHENTICATED":
        if not user:
            return (
                "not signed in: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (the server asks for a user)"
            )
        return f"the tracking server refused user {user}'s credentials (check MLFLOW_TRACKING_PASSWORD)"
    if error.error_code == "PERMISSION_DENIED":
        return f"permission denied: MLflow user {user or '?'} may not do this (docs/deployment.md, MLflow users)"
    return None
