"""ONNX conversion parity (including missing values and unseen categories) and INT8 quantization."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from scoring.onnx_runtime import inference_session, onnx_inputs, predict_default_probability
from steps import data
from steps.convert import perturbed_rows
from steps.model import MLPParams, train_mlp
from steps.onnx_model import operator_counts, quantize, to_onnx


@pytest.fixture(scope="module")
def fitted(credit_frame):
    frame, schema, _ = data.validate_table(credit_frame, "Status", "bad", 100, "credit_data.csv")
    splits = data.split_frame(frame, "Status", seed=42, validation_fraction=0.15, test_fraction=0.2)
    x_train, y_train = data.features_and_target(splits.train, schema)
    x_validation, y_validation = data.features_and_target(splits.validation, schema)
    model, _ = train_mlp(schema, x_train, y_train, x_validation, y_validation, MLPParams(max_epochs=15))
    return schema, splits, model, to_onnx(model, schema)


def test_graph_has_one_input_per_column_and_no_zipmap(fitted) -> None:
    schema, _, _, graph = fitted
    inputs = {i.name: i.type.tensor_type.elem_type for i in graph.graph.input}
    assert list(inputs) == schema.features
    assert {inputs[n] for n in schema.numeric} == {1}  # FLOAT
    assert {inputs[n] for n in schema.categorical} == {8}  # STRING
    assert [o.name for o in graph.graph.output] == ["label", "probabilities"]
    assert "ZipMap" not in operator_counts(graph)


def test_onnx_matches_sklearn_on_real_and_perturbed_rows(fitted) -> None:
    schema, splits, model, graph = fitted
    session = inference_session(graph)
    rows = [splits.test[schema.features], perturbed_rows(splits.test, schema, seed=1)]
    for frame in rows:
        expected = model.predict_proba(frame)[:, 1]
        actual = predict_default_probability(session, onnx_inputs(frame, schema))
        assert np.max(np.abs(expected - actual)) < 1e-5
    perturbed = rows[1]
    assert perturbed[schema.numeric].isna().any().all()
    assert (perturbed[schema.categorical] == "__unseen_in_training__").any().all()


def test_inputs_are_column_arrays_in_graph_dtypes(fitted) -> None:
    schema, splits, _, _ = fitted
    inputs = onnx_inputs(splits.test.head(4), schema)
    assert inputs["Age"].shape == (4, 1) and inputs["Age"].dtype == np.float32
    assert inputs["Home"].shape == (4, 1) and inputs["Home"].dtype == object


@pytest.mark.parametrize(("method", "integer_op"), [("dynamic", "MatMulInteger"), ("static", "QuantizeLinear")])
def test_quantization_really_produces_integer_operators(
    fitted, method: str, integer_op: str, caplog: pytest.LogCaptureFixture
) -> None:
    schema, splits, _, graph = fitted
    caplog.set_level(logging.INFO)
    int8 = quantize(graph, schema, method, calibration_frame=splits.validation[schema.features])
    # onnxruntime's line per float tensor is not repeated in every run's log (its warnings would be).
    assert not [r for r in caplog.records if "Quantization parameters" in r.getMessage()], caplog.text
    assert integer_op in operator_counts(int8)
    assert int8.ByteSize() < graph.ByteSize()
    inputs = onnx_inputs(splits.test[schema.features], schema)
    fp32 = predict_default_probability(inference_session(graph), inputs)
    quantized = predict_default_probability(inference_session(int8), inputs)
    assert np.corrcoef(fp32, quantized)[0, 1] > 0.98
