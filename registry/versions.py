"""Registering model versions with their tags, all or nothing, and the low-level alias update.

Every function takes the `MlflowClient` to work through: nothing here reads the process-wide tracking URI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry.errors import is_not_found
from scoring.contract import PRECISION_TAG

logger = logging.getLogger(__name__)

STAGING_ALIAS = "staging"
PRODUCTION_ALIAS = "production"
ALIASES = (PRODUCTION_ALIAS, STAGING_ALIAS)
# The deprecated stages that --mirror-stages keeps in step with the aliases.
LEGACY_STAGES = {STAGING_ALIAS: "Staging", PRODUCTION_ALIAS: "Production"}
LOGGED_MODEL_PREFIX = "models:/m-"


@dataclass(frozen=True)
class VersionSpec:
    """A logged model to register, by its URI (`models:/m-...`, what `log_model` returns), and the version's tags."""

    model_uri: str
    tags: dict[str, str] = field(default_factory=dict)


def model_exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if is_not_found(error):
            return False
        raise
    return True


@contextmanager
def registration(
    client: MlflowClient,
    name: str,
    specs: list[VersionSpec],
    description: str = "Credit-scoring MLP (ONNX); probability of default.",
) -> Iterator[list[ModelVersion]]:
    """Register every spec as a version of `name` and yield the versions; the block then finishes the job (aliases).

    If registering or the block fails, the versions created here (and the registered model, if this call created
    it) are deleted again before the error propagates: a failure never leaves a half-registered candidate.
    """
    if not specs:
        raise ValueError("nothing to register")
    for spec in specs:
        if not spec.model_uri.startswith(LOGGED_MODEL_PREFIX):
            raise ValueError(f"register logged models by their models:/m-... URI, got {spec.model_uri!r}")
    created_model = not model_exists(client, name)
    if created_model:
        client.create_registered_model(name, description=description)
    created: list[ModelVersion] = []
    try:
        for spec in specs:
            created.append(_create_version(client, name, spec))
        yield created
    except BaseException:
        _undo(client, name, created, created_model)
        raise


def _create_version(client: MlflowClient, name: str, spec: VersionSpec) -> ModelVersion:
    model_id = spec.model_uri.removeprefix("models:/")
    tags = {key: str(value) for key, value in spec.tags.items()}
    source_run_id = client.get_logged_model(model_id).source_run_id
    version = client.create_model_version(name, spec.model_uri, run_id=source_run_id, tags=tags, model_id=model_id)
    logger.info("registered %s version %s (%s)", name, version.version, tags.get(PRECISION_TAG, "?"))
    return version


def _undo(client: MlflowClient, name: str, created: list[ModelVersion], created_model: bool) -> None:
    for version in created:
        try:
            client.delete_model_version(name, version.version)
        except MlflowException:
            logger.exception(
                "could not delete %s version %s while undoing a failed registration", name, version.version
            )
    if created_model:
        try:
            client.delete_registered_model(name)
        except MlflowException:
            logger.exception("could not delete registered model %s while undoing a failed registration", name)


def set_alias(client: MlflowClient, name: str, alias: str, version: str, mirror_stages: bool = False) -> None:
    """Point `alias` at `version` in one update (an existing alias moves; it is never deleted and re-created).

    Not audited: `registry.promotion` writes the audit record around each move it makes through this.
    """
    client.set_registered_model_alias(name, alias, version)
    if mirror_stages and alias in LEGACY_STAGES:
        mirror_stage(client, name, version, LEGACY_STAGES[alias])
    logger.info("alias %r -> %s version %s", alias, name, version)


def remove_alias(client: MlflowClient, name: str, alias: str) -> None:
    """Unset `alias` (a staged candidate that graduated). Not audited: part of the move `registry.promotion` records."""
    client.delete_registered_model_alias(name, alias)
    logger.info("alias %r removed from %s", alias, name)


def mirror_stage(client: MlflowClient, name: str, version: str, stage: str) -> None:
    """Move `version` into a deprecated stage, then archive whatever else was in it (new first: never empty).

    MLflow's own `archive_existing_versions=True` fails on a PostgreSQL backend in MLflow 3.17 (it compares the
    integer version column with a string), so the archiving is done version by version.
    """
    client.transition_model_version_stage(name, version, stage)
    for other in client.search_model_versions(f"name = '{name}'"):
        if other.version != version and other.current_stage == stage:
            client.transition_model_version_stage(name, other.version, "Archived")
