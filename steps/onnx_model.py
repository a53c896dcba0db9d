"""The ONNX form of the pipeline: conversion, INT8 quantization, and logging/loading ONNX models with MLflow.

Inputs and sessions are `scoring.onnx_runtime`'s.

The graph has one input per feature column (float [N,1] for numeric, string [N,1] for categorical) and outputs
`label` and `probabilities` ([N,2], column 1 = probability of default); there is no ZipMap.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import onnx
import pandas as pd
from mlflow.models import infer_signature
from onnx import TensorProto, helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from scoring.calibration import Calibration
from scoring.contract import (
    CALIBRATION_METADATA,
    DECISION_THRESHOLD_METADATA,
    EXPLANATION_METADATA,
    FEATURE_SCHEMA_METADATA,
    MODEL_URI_TAG,
    ONNX_FILE,
    PRECISION_METADATA,
    SCORE_SCALING_METADATA,
)
from scoring.onnx_runtime import onnx_inputs
from scoring.points import ScoreScaling
from scoring.reasons import ExplanationSpec
from scoring.schema import FeatureSchema

logger = logging.getLogger(__name__)

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
ONNX_MODEL_REQUIREMENTS = ["onnx>=1.23,<2", "onnxruntime>=1.31,<2"]


def to_onnx(pipeline: Pipeline, schema: FeatureSchema) -> onnx.ModelProto:
    initial_types = [
        (name, FloatTensorType([None, 1]) if name in schema.numeric else StringTensorType([None, 1]))
        for name in schema.features
    ]
    model = convert_sklearn(
        pipeline,
        initial_types=initial_types,
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    model.doc_string = "credit-scoring pipeline: probabilities[:, 1] is the probability of default"
    return model


def _declare_ml_output_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add value_info for outputs of ai.onnx.ml ops, whose types ONNX shape inference cannot derive.

    Without it the quantizer fails with "Unable to find data type for weight_name=...".
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    known = {v.name for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    float_producing = {"Imputer", "Scaler", "OneHotEncoder", "Normalizer", "FeatureVectorizer"}
    for node in model.graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type in float_producing:
            for output in node.output:
                if output not in known:
                    model.graph.value_info.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, None))
                    known.add(output)
    return model


class _FrameCalibrationReader(CalibrationDataReader):
    def __init__(self, frame: pd.DataFrame, schema: FeatureSchema, quantizable_inputs: set[str], batch: int = 64):
        self._batches = [
            {k: v for k, v in onnx_inputs(frame.iloc[start : start + batch], schema).items() if k in quantizable_inputs}
            for start in range(0, len(frame), batch)
        ]
        self._position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self._batches):
            return None
        self._position += 1
        return self._batches[self._position - 1]


class _QuantizerChatter(logging.Filter):
    """onnxruntime's quantizer logs through the root logger at INFO, a line for every tensor it leaves in float
    ("Quantization parameters for tensor ... not specified"): noise in every pipeline run. Its warnings still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    chatter = _QuantizerChatter()
    root = logging.getLogger()
    root.addFilter(chatter)
    try:
        yield
    finally:
        root.removeFilter(chatter)


def quantize(
    model: onnx.ModelProto,
    schema: FeatureSchema,
    method: str = "dynamic",
    calibration_frame: pd.DataFrame | None = None,
) -> onnx.ModelProto:
    """INT8 quantization of the MLP's matrix multiplications; preprocessing ops stay in float."""
    with tempfile.TemporaryDirectory(prefix="credit-quantize-") as folder, _quiet_quantizer():
        source, prepared, target = (Path(folder) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save_model(_declare_ml_output_types(model), source)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        if method == "dynamic":
            quantize_dynamic(prepared, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        elif method == "static":
            if calibration_frame is None:
                raise ValueError("static quantization needs a calibration frame")
            reader = _FrameCalibrationReader(calibration_frame, schema, {i.name for i in model.graph.input})
            quantize_static(
                prepared,
                target,
                reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
        else:
            raise ValueError(f"unknown quantization method {method!r}")
        return onnx.load_model(target)


def operator_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class RiskMetadata:
    """What the version decides beyond the graph: its calibration (inside the graph already, recorded for the model
    card), the score scaling and bands, and the reference and texts of its reason codes."""

    calibration: Calibration
    scaling: ScoreScaling
    explanation: ExplanationSpec


def model_metadata(schema: FeatureSchema, threshold: float, precision: str, risk: RiskMetadata) -> dict[str, object]:
    """What a server needs besides the graph: feature kinds and order, target meaning, decision threshold, score
    scaling and reason codes."""
    return {
        FEATURE_SCHEMA_METADATA: asdict(schema),
        DECISION_THRESHOLD_METADATA: threshold,
        PRECISION_METADATA: precision,
        "probability_output": "probabilities[:, 1]",
        CALIBRATION_METADATA: risk.calibration.to_dict(),
        SCORE_SCALING_METADATA: risk.scaling.to_dict(),
        EXPLANATION_METADATA: risk.explanation.to_dict(),
    }


def tensor_example(schema: FeatureSchema, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Rows as the ONNX feed dict (numpy str for categoricals, so MLflow records a typed tensor signature)."""
    return {
        name: array.astype(str) if name in schema.categorical else array
        for name, array in onnx_inputs(frame, schema).items()
    }


def log_onnx_model(
    model: onnx.ModelProto,
    name: str,
    schema: FeatureSchema,
    example_rows: pd.DataFrame,
    threshold: float,
    precision: str,
    risk: RiskMetadata,
) -> str:
    """Log an ONNX graph as one file with a tensor signature, input example and serving metadata; return its URI."""
    example = tensor_example(schema, example_rows)
    signature = infer_signature(example, np.zeros((len(example_rows), 2), dtype=np.float32))
    model_info = mlflow.onnx.log_model(
        model,
        name=name,
        signature=signature,
        input_example=example,
        save_as_external_data=False,
        onnx_execution_providers=["CPUExecutionProvider"],
        pip_requirements=ONNX_MODEL_REQUIREMENTS,
        metadata=model_metadata(schema, threshold, precision, risk),
    )
    mlflow.set_tag(MODEL_URI_TAG, model_info.model_uri)
    return model_info.model_uri


def load_onnx_model(model_uri: str) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="credit-onnx-") as folder:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
        return onnx.load_model(str(Path(local) / ONNX_FILE))
