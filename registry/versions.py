"""Registering model versions with their tags and pointing an alias at one of them, all or nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

STAGING_ALIAS = "staging"
PRODUCTION_ALIAS = "production"
# The deprecated stages that --mirror-stages keeps in step with the aliases.
LEGACY_STAGES = {STAGING_ALIAS: "Staging", PRODUCTION_ALIAS: "Production"}


@dataclass(frozen=True)
class VersionSpec:
    """A logged model to register: its URI (`models:/m-...` or `runs:/...`) and the tags the version gets."""

    model_uri: str
    tags: dict[str, str] = field(default_factory=dict)


def _model_exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def register_versions(
    name: str,
    specs: list[VersionSpec],
    alias: str | None = None,
    alias_index: int = 0,
    description: str = "Credit-scoring MLP (ONNX); probability of default.",
    mirror_stages: bool = False,
) -> list[ModelVersion]:
    """Register every spec as a version of `name` and set `alias` on `specs[alias_index]`.

    If anything fails part-way, the versions created here (and the registered model, if this call created it) are
    deleted again before the error propagates, so a failure never leaves a half-registered candidate.
    """
    if not specs:
        raise ValueError("nothing to register")
    if alias is not None and not 0 <= alias_index < len(specs):
        raise ValueError(f"alias_index {alias_index} out of range for {len(specs)} versions")
    client = MlflowClient()
    created_model = not _model_exists(client, name)
    if created_model:
        client.create_registered_model(name, description=description)
    created: list[ModelVersion] = []
    try:
        for spec in specs:
            tags = {key: str(value) for key, value in spec.tags.items()}
            version = mlflow.register_model(spec.model_uri, name, tags=tags)
            created.append(version)
            logger.info("registered %s version %s (%s)", name, version.version, tags.get("precision", "?"))
        if alias is not None:
            client.set_registered_model_alias(name, alias, created[alias_index].version)
            logger.info("alias %r -> %s version %s", alias, name, created[alias_index].version)
            if mirror_stages and alias in LEGACY_STAGES:
                mirror_stage(client, name, created[alias_index].version, LEGACY_STAGES[alias])
    except BaseException:
        _undo(client, name, created, created_model)
        raise
    return created


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


def set_alias(name: str, alias: str, version: str, mirror_stages: bool = False) -> None:
    """Point `alias` at `version` (an existing alias moves in one update)."""
    client = MlflowClient()
    client.set_registered_model_alias(name, alias, version)
    if mirror_stages and alias in LEGACY_STAGES:
        mirror_stage(client, name, version, LEGACY_STAGES[alias])
    logger.info("alias %r -> %s version %s", alias, name, version)


def mirror_stage(client: MlflowClient, name: str, version: str, stage: str) -> None:
    """Move `version` into a deprecated stage, then archive whatever else was in it (new first: never empty).

    MLflow's own `archive_existing_versions=True` fails on a PostgreSQL backend in MLflow 3.17 (it compares the
    integer version column with a string), so the archiving is done version by version.
    """
    client.transition_model_version_stage(name, version, stage)
    for other in client.search_model_versions(f"name = '{name}'"):
        if other.version != version and other.current_stage == stage:
            client.transition_model_version_stage(name, other.version, "Archived")
