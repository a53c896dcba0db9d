"""Names the pipeline publishes and other packages read: artifact paths, run tags, version tags, the split hash.

The steps write them; the registry, the gateway, the monitoring job and the DAGs read them. Each name is written here
once, so a renamed artifact cannot leave a reader behind.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is not in the gateway's environment (requirements-serving.lock): imported where used
    import pandas as pd

# --- Runs: every pipeline run is tagged with its step; steps find their upstream runs through these params.
STEP_TAG = "step"
MODEL_URI_TAG = "model_uri"  # train, convert, quantize: the logged model (`models:/m-...`)
FAILURE_REASON_TAG = "failure_reason"
PREPARE_RUN_ID = "prepare_run_id"
TRAIN_RUN_ID = "train_run_id"
CONVERT_RUN_ID = "convert_run_id"
QUANTIZE_RUN_ID = "quantize_run_id"
LINEAGE_KEYS = (PREPARE_RUN_ID, TRAIN_RUN_ID, CONVERT_RUN_ID, QUANTIZE_RUN_ID)

# --- What a prepare run publishes.
SPLIT_NAMES = ("train", "validation", "test")
SPLITS_DIR = "splits"
FEATURE_SCHEMA_ARTIFACT = "schema/feature_schema.json"
DATA_SHA256_TAG = "data_sha256"  # SHA-256 of the data file's bytes, as read by prepare
DATA_FILE_TAG = "data_file"


def split_artifact(split: str) -> str:
    """`splits/<split>.parquet`: one split of a prepare run (features in model order plus the 0/1 target)."""
    return f"{SPLITS_DIR}/{split}.parquet"


def split_sha256_tag(split: str) -> str:
    """The prepare run's tag holding `frame_sha256` of that split."""
    return f"split_sha256_{split}"


# --- Tags of a registered version (set by the registration in steps/registration.py).
# A scored row's probability of default: the column of the gateway's prediction log, the drift job's frames and the
# portfolio job's output.
SCORE_COLUMN = "probability_of_default"
PRECISION_TAG = "precision"  # "fp32" or "int8"
SOURCE_RUN_ID_TAG = "source_run_id"  # the convert (fp32) or quantize (int8) run that logged the ONNX model
FP32_SOURCE_RUN_ID_TAG = "fp32_source_run_id"  # int8 only: the convert run of its fp32 source
BENCHMARK_RUN_ID_TAG = "benchmark_run_id"
TEST_ROC_AUC_TAG = "test_roc_auc"
PARITY_TAG = "parity_max_abs_diff"
DECISION_AGREEMENT_TAG = "decision_agreement"
DECISION_THRESHOLD_TAG = "decision_threshold"
LATENCY_P99_TAG = "latency_p99_ms_single_row"
GIT_COMMIT_TAG = "git_commit"
FAIRNESS_SLICES_TAG = "fairness_slices"  # the slicing columns of the train run (registry/fairness.py's syntax)
TEST_ECE_TAG = "test_ece"  # expected calibration error on the test split (calibrated probabilities)
MODEL_CARD_TAG = "model_card"  # where the version's model card is (an artifact URI of its source run)

# --- Files of a registered ONNX model, and the keys of its MLflow metadata (what a server needs besides the graph).
ONNX_FILE = "model.onnx"
FEATURE_SCHEMA_METADATA = "feature_schema"  # FeatureSchema as a mapping
DECISION_THRESHOLD_METADATA = "decision_threshold"
PRECISION_METADATA = "precision"
CALIBRATION_METADATA = "calibration"  # scoring.calibration.Calibration.to_dict(): already applied inside the graph
SCORE_SCALING_METADATA = "score_scaling"  # scoring.points.ScoreScaling.to_dict()
EXPLANATION_METADATA = "explanation"  # scoring.reasons.ExplanationSpec.to_dict()


def frame_sha256(frame: pd.DataFrame) -> str:
    """Content hash of a frame (values, column names and order), independent of the file format it came from."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
