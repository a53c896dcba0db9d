"""Scoring an exported model with onnxruntime: input tensors from a frame, sessions, probability of default.

The graph has one input per feature column (float [N,1] for numeric, string [N,1] for categorical) and outputs
`label` and `probabilities` ([N,2], column 1 = probability of default).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort

from scoring.schema import FeatureSchema

if TYPE_CHECKING:  # pandas is not in the gateway's environment (requirements-serving.lock)
    import pandas as pd

PROBABILITIES_OUTPUT = "probabilities"


def onnx_inputs(frame: pd.DataFrame, schema: FeatureSchema) -> dict[str, np.ndarray]:
    """Column arrays shaped [N,1] in the dtypes the graph declares (no per-row Python work)."""
    inputs = {}
    for name in schema.features:
        column = frame[name].to_numpy()
        if name in schema.numeric:
            inputs[name] = column.astype(np.float32).reshape(-1, 1)
        else:
            inputs[name] = column.astype(str).astype(object).reshape(-1, 1)
    return inputs


def inference_session(model: onnx.ModelProto | bytes | Path, threads: int = 1) -> ort.InferenceSession:
    # One intra-op thread: same median as more threads for this model, and a much tighter p99 under load.
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    if isinstance(payload, Path):
        payload = payload.read_bytes()
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


def predict_default_probability(session: ort.InferenceSession, inputs: dict[str, np.ndarray]) -> np.ndarray:
    (probabilities,) = session.run([PROBABILITIES_OUTPUT], inputs)
    default: np.ndarray = probabilities[:, 1].astype(np.float64)
    return default


def decisions(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """The decision at a version's threshold: True (predicted default) where the probability reaches it. The one
    statement of the rule the pipeline's metrics, the gate and the portfolio job share."""
    decided: np.ndarray = np.asarray(probabilities) >= threshold
    return decided
