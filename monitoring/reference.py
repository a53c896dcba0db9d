"""The reference of a version's drift report: the training split it was fitted on, found through the registry's
lineage (version -> source run -> prepare run -> `splits/train.parquet`), scored by the version itself."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from monitoring.errors import MonitoringInputError
from monitoring.window import SCORE_COLUMN
from registry.errors import RegistryError
from registry.lineage import prepare_run_of, read_split
from registry.resolve import ResolvedModel, get_version, load_version
from registry.settings import RegistrySettings
from scoring.contract import split_artifact
from scoring.onnx_runtime import inference_session, onnx_inputs, predict_default_probability
from scoring.schema import FeatureSchema, FeatureValuesError, normalize_features

logger = logging.getLogger(__name__)

REFERENCE_SPLIT = "train"


@dataclass(frozen=True)
class Reference:
    model: ResolvedModel
    prepare_run_id: str
    split_sha256: str
    frame: pd.DataFrame  # the split's features (model dtypes) plus SCORE_COLUMN from the version's own ONNX graph


def normalized_features(frame: pd.DataFrame, schema: FeatureSchema, source: str) -> pd.DataFrame:
    """`scoring.schema.normalize_features`, its refusals naming `source`."""
    try:
        return normalize_features(frame, schema)
    except FeatureValuesError as error:
        raise MonitoringInputError(f"{source}: {error}") from error


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
    try:
        split = read_split(client, prepare_run_of(client, details), REFERENCE_SPLIT)
    except RegistryError as error:
        raise MonitoringInputError(f"{error}: no reference data") from error
    source = f"reference {split_artifact(REFERENCE_SPLIT)} of prepare run {split.prepare_run_id}"
    features = normalized_features(split.frame, model.feature_schema, source)
    features[SCORE_COLUMN] = score(model, features)
    logger.info("%s for %s version %s: %d rows", source, name, version, len(features))
    return Reference(model=model, prepare_run_id=split.prepare_run_id, split_sha256=split.sha256, frame=features)
