"""Looking up registered versions: by alias or number, with the ONNX file cached locally once per version."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import onnx
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry.errors import RegistryError, first_line, is_not_found
from registry.server import displayed
from registry.settings import RegistrySettings
from scoring.contract import (
    CALIBRATION_METADATA,
    DECISION_THRESHOLD_METADATA,
    EXPLANATION_METADATA,
    FEATURE_SCHEMA_METADATA,
    ONNX_FILE,
    PRECISION_TAG,
    SCORE_SCALING_METADATA,
)
from scoring.points import ScoreScaling
from scoring.reasons import ExplanationSpec
from scoring.schema import FeatureSchema

logger = logging.getLogger(__name__)
# The ONNX element type the pipeline gives each kind of feature (one [N,1] input per feature, in schema order).
INPUT_TYPES = {"numeric": "FLOAT", "categorical": "STRING"}


@dataclass(frozen=True)
class ResolvedModel:
    """A registered version with everything a server or the gate needs, the ONNX file on local disk."""

    name: str
    version: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    onnx_path: Path
    feature_schema: FeatureSchema
    input_signature: tuple[tuple[str, str], ...]  # ONNX graph inputs in order: (name, element type)
    decision_threshold: float | None
    # Versions registered before score scaling and reason codes existed: the default scale, no explanations.
    score_scaling: ScoreScaling = ScoreScaling()
    explanation: ExplanationSpec | None = None
    calibration: dict[str, Any] | None = None

    @property
    def precision(self) -> str:
        return self.tags.get(PRECISION_TAG, "unknown")


def require_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if is_not_found(error):
            # Named with the server asked: "not found" on the wrong server looks the same as on the right one.
            raise RegistryError(f"registered model {name!r} not found on {displayed(client.tracking_uri)}") from error
        raise


def get_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    require_model(client, name)
    if not str(version).isdigit():
        raise RegistryError(f"version must be a number, got {version!r}")
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as error:
        if is_not_found(error):
            raise RegistryError(f"{name} has no version {version}") from error
        raise


def version_for_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind `alias`, or None when the alias is not set."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if is_not_found(error):
            return None
        raise


def _cached_download(client: MlflowClient, name: str, version: str, cache_dir: Path) -> Path:
    """Folder with the version's MLmodel and model.onnx, downloaded once; a half download is never visible."""
    target = cache_dir / name / str(version)
    if (target / ONNX_FILE).is_file() and (target / "MLmodel").is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    except OSError as error:
        # A read-only root filesystem or a home folder that does not exist (containers): the user's to fix.
        raise RegistryError(
            f"cannot create the model cache {target.parent} ({error.strerror or error}); "
            "set REGISTRY_CACHE_DIR (or SERVING_MODEL_CACHE_DIR for the gateway) to a writable folder"
        ) from error
    try:
        # Resolved through this client rather than as "models:/name/version": MLflow 3.17 resolves such URIs with the
        # process-wide registry URI even when another one is passed, which may be a local ./mlflow.db.
        location = client.get_model_version_download_uri(name, version)
        local = Path(
            mlflow.artifacts.download_artifacts(location, dst_path=str(staging), tracking_uri=client.tracking_uri)
        )
        if not (local / ONNX_FILE).is_file():
            raise RegistryError(f"{name} version {version} has no {ONNX_FILE} (is it an ONNX model?)")
        try:
            os.replace(local, target)
        except OSError:
            # Another process cached the same version first; its copy is as good as ours.
            if not (target / ONNX_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("cached %s version %s in %s", name, version, target)
    return target


def read_mlmodel(folder: Path) -> dict[str, Any]:
    """A downloaded model's MLmodel file as a mapping (`metadata`, `saved_input_example_info`, ...).

    Read as YAML rather than with `mlflow.models.Model.load`, which imports pandas (for the signature): the gateway's
    environment (mlflow-skinny, requirements-serving.lock) has no pandas.
    """
    path = folder / "MLmodel"
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as error:
        raise RegistryError(f"{path}: cannot read the MLmodel file ({error.strerror or error})") from error
    except yaml.YAMLError as error:
        raise RegistryError(f"{path}: not valid YAML ({first_line(error)})") from error
    if not isinstance(loaded, dict):
        raise RegistryError(f"{folder / 'MLmodel'} is not an MLmodel file")
    return loaded


def onnx_input_signature(path: Path) -> tuple[tuple[str, str], ...]:
    graph = onnx.load_model(str(path), load_external_data=False).graph
    return tuple((item.name, onnx.TensorProto.DataType.Name(item.type.tensor_type.elem_type)) for item in graph.input)


def load_version(client: MlflowClient, name: str, version: str, settings: RegistrySettings) -> ResolvedModel:
    details = get_version(client, name, version)
    folder = _cached_download(client, name, details.version, settings.cache_dir)
    metadata = read_mlmodel(folder).get("metadata") or {}
    if FEATURE_SCHEMA_METADATA not in metadata:
        raise RegistryError(f"{name} version {version} carries no feature_schema metadata (not from this pipeline?)")
    threshold = metadata.get(DECISION_THRESHOLD_METADATA)
    try:
        schema = FeatureSchema.from_metadata(metadata)
    except (TypeError, ValueError) as error:
        raise RegistryError(f"{name} version {version} has unreadable feature_schema metadata: {error}") from error
    try:
        scaling = (
            ScoreScaling.from_dict(metadata[SCORE_SCALING_METADATA]) if SCORE_SCALING_METADATA in metadata else None
        )
        explanation = (
            ExplanationSpec.from_dict(metadata[EXPLANATION_METADATA]) if EXPLANATION_METADATA in metadata else None
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RegistryError(f"{name} version {version} has unreadable score or reason metadata: {error}") from error
    signature = onnx_input_signature(folder / ONNX_FILE)
    expected = tuple((name, INPUT_TYPES[schema.kind(name)]) for name in schema.features)
    if signature != expected:
        raise RegistryError(
            f"{name} version {version}: the ONNX graph's inputs do not match its feature_schema metadata "
            "(one float or string input per feature, in order)"
        )
    return ResolvedModel(
        name=name,
        version=str(details.version),
        aliases=tuple(details.aliases),
        tags=dict(details.tags),
        onnx_path=folder / ONNX_FILE,
        feature_schema=schema,
        input_signature=signature,
        decision_threshold=float(threshold) if threshold is not None else None,
        score_scaling=scaling or ScoreScaling(),
        explanation=explanation,
        calibration=metadata.get(CALIBRATION_METADATA),
    )


def resolve(alias_or_version: str, settings: RegistrySettings | None = None) -> ResolvedModel:
    """`production`, `staging` (any alias) or a version number -> the version with its local ONNX file."""
    settings = settings or RegistrySettings()
    client = MlflowClient(settings.tracking_uri)
    if str(alias_or_version).isdigit():
        return load_version(client, settings.model_name, str(alias_or_version), settings)
    require_model(client, settings.model_name)
    found = version_for_alias(client, settings.model_name, alias_or_version)
    if found is None:
        raise RegistryError(f"{settings.model_name} has no alias {alias_or_version!r}")
    return load_version(client, settings.model_name, found.version, settings)
