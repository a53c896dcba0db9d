"""What a registered version was made from, read through an explicit client: its prepare run and that run's splits
(the gate's evaluation data, the drift job's reference)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from registry.errors import RegistryError
from scoring.contract import (
    PREPARE_RUN_ID,
    SOURCE_RUN_ID_TAG,
    STEP_TAG,
    frame_sha256,
    split_artifact,
    split_sha256_tag,
)


@dataclass(frozen=True)
class Split:
    frame: pd.DataFrame  # the split as prepare wrote it: features in model dtypes plus the 0/1 target
    prepare_run_id: str
    sha256: str  # `frame_sha256` of the frame: what prepare tagged


def prepare_run_of(client: MlflowClient, version: ModelVersion) -> str:
    """The prepare run behind a version: its source run's `prepare_run_id`, cross-checked with the version's tag."""
    tagged = version.tags.get(PREPARE_RUN_ID)
    via_source = None
    source_run_id = version.tags.get(SOURCE_RUN_ID_TAG)
    if source_run_id:
        source = client.get_run(source_run_id)
        via_source = source.data.params.get(PREPARE_RUN_ID) or source.data.tags.get(PREPARE_RUN_ID)
    if tagged and via_source and tagged != via_source:
        raise RegistryError(
            f"{version.name} version {version.version}: tag {PREPARE_RUN_ID}={tagged} disagrees with its source run "
            f"{source_run_id} ({PREPARE_RUN_ID}={via_source})"
        )
    found = via_source or tagged
    if not found:
        raise RegistryError(
            f"{version.name} version {version.version} records no prepare run (neither a {SOURCE_RUN_ID_TAG} run "
            f"with param {PREPARE_RUN_ID} nor a {PREPARE_RUN_ID} tag)"
        )
    return found


def read_split(client: MlflowClient, prepare_run_id: str, split: str) -> Split:
    """One split of a finished prepare run, checked against the hash prepare recorded (a run from before the tag
    existed gets the hash computed the same way)."""
    run = client.get_run(prepare_run_id)
    if run.data.tags.get(STEP_TAG) != "prepare" or run.info.status != "FINISHED":
        raise RegistryError(f"run {prepare_run_id} is not a finished prepare run: it holds no splits to read")
    with tempfile.TemporaryDirectory(prefix="credit-split-") as folder:
        local = mlflow.artifacts.download_artifacts(
            run_id=prepare_run_id,
            artifact_path=split_artifact(split),
            dst_path=folder,
            tracking_uri=client.tracking_uri,
        )
        frame = pd.read_parquet(local)
    digest = frame_sha256(frame)
    recorded = run.data.tags.get(split_sha256_tag(split))
    if recorded and recorded != digest:
        raise RegistryError(
            f"prepare run {prepare_run_id}: {split_artifact(split)} has sha256 {digest[:12]}…, the run recorded "
            f"{recorded[:12]}…: the split was changed after training"
        )
    return Split(frame, prepare_run_id, digest)
