"""Opening a registered version for scoring, the same way wherever it is scored (the gateway's model store, the
portfolio job's engines): one ONNX Runtime session, warmed up with the input example logged with the version, which
also proves the graph answers with finite probabilities before a single real row is scored."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from registry.resolve import ResolvedModel, read_mlmodel
from scoring.onnx_runtime import inference_session, predict_default_probability
from scoring.schema import FeatureSchema


def tensor_input_example(folder: Path, schema: FeatureSchema) -> dict[str, np.ndarray] | None:
    """The tensor input example logged with the model (one [N,1] list per feature in `input_example.json`) as the
    graph takes it: float32 for numeric features (null = NaN), text for categorical ones; None without one.

    Read here rather than with `Model.load_input_example`: MLflow's example reader imports pandas, which the gateway's
    environment (mlflow-skinny, requirements-serving.lock) does not have.
    """
    info = read_mlmodel(folder).get("saved_input_example_info") or {}
    if info.get("type") != "ndarray":
        return None
    payload = json.loads((folder / info["artifact_path"]).read_text())
    columns = payload.get("inputs", payload) if isinstance(payload, dict) else None
    if not isinstance(columns, dict) or set(columns) != set(schema.features):
        return None
    return {
        name: np.asarray(columns[name], dtype=np.float32 if name in schema.numeric else object).reshape(-1, 1)
        for name in schema.features
    }


def warm_up(resolved: ResolvedModel, session: ort.InferenceSession) -> float:
    """Score the input example logged with the model; returns how long it took (ms)."""
    folder = Path(resolved.onnx_path).parent
    example = tensor_input_example(folder, resolved.feature_schema)
    if example is None:
        raise ValueError(f"version {resolved.version} has no tensor input example to warm up with")
    started = time.perf_counter()
    probabilities = predict_default_probability(session, example)
    if not np.all(np.isfinite(probabilities)):
        raise ValueError(f"version {resolved.version} returned non-finite probabilities on its input example")
    return (time.perf_counter() - started) * 1e3


def open_session(resolved: ResolvedModel, threads: int = 1) -> tuple[ort.InferenceSession, float]:
    """The version's session with `threads` intra-op threads, warmed up; and how long the warm-up took (ms)."""
    session = inference_session(resolved.onnx_path, threads=threads)
    return session, warm_up(resolved, session)
