"""The reference of a version's drift report: the training split it was fitted on, found through the registry's
lineage (version -> source run -> prepare run -> `splits/train.parquet`), scored by the version itself."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from monitoring.errors import MonitoringInputError
from monitoring.window import SCORE_COLUMN
from registry.errors import RegistryError
from registry.resolve import ResolvedModel, get_version, load_version
from registry.settings import RegistrySettings
from scoring.contract import PREPARE_RUN_ID, SOURCE_RUN_ID_TAG, frame_sha256, split_artifact, split_sha256_tag
from scoring.onnx_runtime import inference_session, onnx_inputs, predict_default_probability
from scoring.schema import MISSING_CATEGORY, FeatureSchema, category_labels

logger = logging.getLogger(__name__)

REFERENCE_SPLIT = "train"


@dataclass(frozen=True)
class Reference:
    model: ResolvedModel
    prepare_run_id: str
    split_sha256: str
    frame: pd.DataFrame  # the split's features (model dtypes) plus SCORE_COLUMN from the version's own ONNX graph


def prepare_run_of(client: MlflowClient, version: ModelVersion) -> str:
    """The prepare run behind a version: its source run's `prepare_run_id`, cross-checked with the version's tag."""
    tagged = version.tags.get(PREPARE_RUN_ID)
    via_source = None
    source_run_id = version.tags.get(SOURCE_RUN_ID_TAG)
    if source_run_id:
        source = client.get_run(source_run_id)
        via_source = source.data.params.get(PREPARE_RUN_ID) or source.data.tags.get(PREPARE_RUN_ID)
    if tagged and via_source and tagged != via_source:
        raise MonitoringInputError(
            f"{version.name} version {version.version}: tag {PREPARE_RUN_ID}={tagged} disagrees with its source run "
            f"{source_run_id} ({PREPARE_RUN_ID}={via_source})"
        )
    found = via_source or tagged
    if not found:
        raise MonitoringInputError(
            f"{version.name} version {version.version} records no prepare run (neither a {SOURCE_RUN_ID_TAG} run "
            f"with param {PREPARE_RUN_ID} nor a {PREPARE_RUN_ID} tag): no reference data"
        )
    return found


def normalized_features(frame: pd.DataFrame, schema: FeatureSchema, source: str) -> pd.DataFrame:
    """The schema's features in model order and dtypes: float64 (NaN = missing) and str ("" = missing).

    A numeric column holding text is refused, naming the column and a value, rather than silently made missing.
    """
    columns: dict[str, pd.Series] = {}
    for name in schema.features:
        values = frame[name]
        if name in schema.numeric:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            refused = numbers.isna() & values.notna()
            if refused.any():
                example = values[refused].iloc[0]
                raise MonitoringInputError(
                    f"{source}: column {name!r} must be numeric, found {int(refused.sum())} value(s) "
                    f"such as {example!r}"
                )
            columns[name] = numbers
        else:
            # Labelled as prepare labelled the training data (integer codes read as floats stay "2", not "2.0").
            columns[name] = category_labels(values).where(values.notna(), MISSING_CATEGORY).astype(object)
    return pd.DataFrame(columns, index=frame.index)


def score(model: ResolvedModel, features: pd.DataFrame) -> np.ndarray:
    """The version's probability of default for normalised feature rows."""
    session = inference_session(model.onnx_path)
    return predict_default_probability(session, onnx_inputs(features, model.feature_schema))


def resolve_model(client: MlflowClient, registry_settings: RegistrySettings, name: str, version: str) -> ResolvedModel:
    try:
        return load_version(client, name, version, registry_settings)
    except RegistryError as error:
        raise MonitoringInputError(str(error)) from error


def load_reference(client: MlflowClient, model: ResolvedModel) -> Reference:
    """The training split behind `model` (checked against its recorded hash), scored by `model`."""
    name, version = model.name, model.version
    try:
        details = get_version(client, name, version)
    except RegistryError as error:
        raise MonitoringInputError(str(error)) from error
    prepare_run_id = prepare_run_of(client, details)
    run = client.get_run(prepare_run_id)
    with tempfile.TemporaryDirectory(prefix="credit-reference-") as folder:
        local = mlflow.artifacts.download_artifacts(
            run_id=prepare_run_id,
            artifact_path=split_artifact(REFERENCE_SPLIT),
            dst_path=folder,
            tracking_uri=client.tracking_uri,
        )
        split = pd.read_parquet(Path(local))
    digest = frame_sha256(split)
    recorded = run.data.tags.get(split_sha256_tag(REFERENCE_SPLIT))
    if recorded and recorded != digest:
        raise MonitoringInputError(
            f"prepare run {prepare_run_id}: {split_artifact(REFERENCE_SPLIT)} has sha256 {digest[:12]}…, the run "
            f"recorded {recorded[:12]}…: the reference was changed after training"
        )
    missing = [name for name in model.feature_schema.features if name not in split.columns]
    if missing:
        raise MonitoringInputError(
            f"prepare run {prepare_run_id}: {split_artifact(REFERENCE_SPLIT)} lacks feature(s) {', '.join(missing)}"
        )
    features = normalized_features(split, model.feature_schema, f"reference {split_artifact(REFERENCE_SPLIT)}")
    features[SCORE_COLUMN] = score(model, features)
    logger.info(
        "reference for %s version %s: %s of prepare run %s, %d rows",
        name, version, split_artifact(REFERENCE_SPLIT), prepare_run_id, len(features),
    )  # fmt: skip
    return Reference(model=model, prepare_run_id=prepare_run_id, split_sha256=digest, frame=features)
