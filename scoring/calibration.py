"""Calibrated probabilities: the fitted map from the network's probability to a calibrated one, applied in numpy and
appended to the ONNX graph, and the expected calibration error that measures it.

The map is monotone (Platt's sigmoid on the log-odds, or isotonic: piecewise linear between knots), so it changes
what a probability says about the default rate, not the order of applicants. `steps.calibration` fits and chooses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

METHODS = ("none", "sigmoid", "isotonic")
ECE_BINS = 10  # equal-mass bins of every expected calibration error the project reports
# Probabilities are kept this far from 0 and 1 before taking log-odds (float32 can hold 1 - 1e-7).
PROBABILITY_EPSILON = 1e-6
UNCALIBRATED_OUTPUT = "uncalibrated_probabilities"
_PROBABILITIES = "probabilities"
_LABEL = "label"


def log_odds(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
    odds: np.ndarray = np.log(clipped) - np.log1p(-clipped)
    return odds


@dataclass(frozen=True)
class Calibration:
    """`method` "none" (identity), "sigmoid" (p' = σ(slope · logit p + intercept)) or "isotonic" (p' interpolated
    linearly between the knots `x` → `y`, constant beyond the first and last)."""

    method: str = "none"
    slope: float = 1.0
    intercept: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.method == "isotonic" and (len(self.x) != len(self.y) or not self.x):
            raise ValueError("isotonic calibration needs as many knots x as y, at least one")

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated probabilities rounded to float32, as the graph serves them: a threshold chosen on these values
        decides an isotonic plateau's rows the same way the served graph does."""
        p = np.asarray(probabilities, dtype=np.float64)
        if self.method == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-(self.slope * log_odds(p) + self.intercept)))
        elif self.method == "isotonic":
            p = np.interp(p, self.x, self.y)
        rounded: np.ndarray = p.astype(np.float32).astype(np.float64)
        return rounded

    def to_dict(self) -> dict[str, Any]:
        if self.method == "sigmoid":
            return {"method": "sigmoid", "slope": self.slope, "intercept": self.intercept}
        if self.method == "isotonic":
            return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}
        return {"method": "none"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        return cls(
            method=str(data.get("method", "none")),
            slope=float(data.get("slope", 1.0)),
            intercept=float(data.get("intercept", 0.0)),
            x=tuple(float(v) for v in data.get("x", ())),
            y=tuple(float(v) for v in data.get("y", ())),
        )

    def append_to_graph(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """The graph with this map applied to its `probabilities` output (and `label` its arg-max again); the
        network's own probabilities stay readable as `uncalibrated_probabilities`. "none" returns the graph as is."""
        if self.method == "none":
            return model
        model = onnx.ModelProto.FromString(model.SerializeToString())
        graph = model.graph
        renamed = {_PROBABILITIES: UNCALIBRATED_OUTPUT, _LABEL: "uncalibrated_label"}
        for node in graph.node:
            node.input[:] = [renamed.get(name, name) for name in node.input]
            node.output[:] = [renamed.get(name, name) for name in node.output]
        kept_outputs = [output for output in graph.output if output.name not in renamed]
        del graph.output[:]
        graph.output.extend(kept_outputs)
        nodes, initializers = _calibration_nodes(self)
        graph.node.extend(nodes)
        graph.initializer.extend(initializers)
        graph.output.extend(
            [
                helper.make_tensor_value_info(_LABEL, TensorProto.INT64, [None]),
                helper.make_tensor_value_info(_PROBABILITIES, TensorProto.FLOAT, [None, 2]),
                helper.make_tensor_value_info(UNCALIBRATED_OUTPUT, TensorProto.FLOAT, [None, 2]),
            ]
        )
        onnx.checker.check_model(model)
        return model


def _constant(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name=f"calibration_{name}")


def _calibration_nodes(calibration: Calibration) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes taking `uncalibrated_probabilities` [N,2] to `probabilities` [N,2] and `label` [N]."""

    def c(name: str) -> str:
        return f"calibration_{name}"

    initializers = [
        _constant("one", np.array(1.0, dtype=np.float32)),
        _constant("column_start", np.array([1], dtype=np.int64)),
        _constant("column_end", np.array([2], dtype=np.int64)),
        _constant("column_axis", np.array([1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node(
            "Slice", [UNCALIBRATED_OUTPUT, c("column_start"), c("column_end"), c("column_axis")], [c("p")]
        ),
    ]
    if calibration.method == "sigmoid":
        initializers += [
            _constant("low", np.array(PROBABILITY_EPSILON, dtype=np.float32)),
            _constant("high", np.array(1 - PROBABILITY_EPSILON, dtype=np.float32)),
            _constant("slope", np.array(calibration.slope, dtype=np.float32)),
            _constant("intercept", np.array(calibration.intercept, dtype=np.float32)),
        ]
        nodes += [
            helper.make_node("Clip", [c("p"), c("low"), c("high")], [c("p_clipped")]),
            helper.make_node("Sub", [c("one"), c("p_clipped")], [c("q_clipped")]),
            helper.make_node("Log", [c("p_clipped")], [c("log_p")]),
            helper.make_node("Log", [c("q_clipped")], [c("log_q")]),
            helper.make_node("Sub", [c("log_p"), c("log_q")], [c("logit")]),
            helper.make_node("Mul", [c("logit"), c("slope")], [c("scaled")]),
            helper.make_node("Add", [c("scaled"), c("intercept")], [c("z")]),
            helper.make_node("Sigmoid", [c("z")], [c("calibrated")]),
        ]
    else:
        x, y = np.asarray(calibration.x, dtype=np.float32), np.asarray(calibration.y, dtype=np.float32)
        if len(x) == 1:  # a constant map: two knots with the same value
            x, y = np.array([x[0], x[0] + 1], dtype=np.float32), np.array([y[0], y[0]], dtype=np.float32)
        initializers += [
            _constant("zero", np.array(0.0, dtype=np.float32)),
            _constant("x", x),
            _constant("y", y),
            _constant("first_segment", np.array(0, dtype=np.int64)),
            _constant("last_segment", np.array(len(x) - 2, dtype=np.int64)),
            _constant("one_int", np.array(1, dtype=np.int64)),
            _constant("min_width", np.array(np.finfo(np.float32).tiny, dtype=np.float32)),
            _constant("sum_axis", np.array([1], dtype=np.int64)),
        ]
        # The segment of each p: how many knots lie at or below it, minus one, kept inside [0, K-2]; then linear
        # interpolation within the segment, the weight clipped to [0, 1] (constant beyond the end knots).
        nodes += [
            helper.make_node("GreaterOrEqual", [c("p"), c("x")], [c("at_or_above")]),
            helper.make_node("Cast", [c("at_or_above")], [c("at_or_above_int")], to=TensorProto.INT64),
            helper.make_node("ReduceSum", [c("at_or_above_int"), c("sum_axis")], [c("knots_below")], keepdims=1),
            helper.make_node("Sub", [c("knots_below"), c("one_int")], [c("segment_raw")]),
            helper.make_node("Clip", [c("segment_raw"), c("first_segment"), c("last_segment")], [c("segment")]),
            helper.make_node("Add", [c("segment"), c("one_int")], [c("segment_end")]),
            helper.make_node("Gather", [c("x"), c("segment")], [c("x0")]),
            helper.make_node("Gather", [c("x"), c("segment_end")], [c("x1")]),
            helper.make_node("Gather", [c("y"), c("segment")], [c("y0")]),
            helper.make_node("Gather", [c("y"), c("segment_end")], [c("y1")]),
            helper.make_node("Sub", [c("p"), c("x0")], [c("offset")]),
            helper.make_node("Sub", [c("x1"), c("x0")], [c("width_raw")]),
            # Knots that collapse into one float32 value: a zero-width segment, whose weight must not be 0/0.
            helper.make_node("Max", [c("width_raw"), c("min_width")], [c("width")]),
            helper.make_node("Div", [c("offset"), c("width")], [c("weight_raw")]),
            helper.make_node("Clip", [c("weight_raw"), c("zero"), c("one")], [c("weight")]),
            helper.make_node("Sub", [c("y1"), c("y0")], [c("rise")]),
            helper.make_node("Mul", [c("weight"), c("rise")], [c("step")]),
            helper.make_node("Add", [c("y0"), c("step")], [c("calibrated")]),
        ]
    nodes += [
        helper.make_node("Sub", [c("one"), c("calibrated")], [c("calibrated_good")]),
        helper.make_node("Concat", [c("calibrated_good"), c("calibrated")], [_PROBABILITIES], axis=1),
        helper.make_node("ArgMax", [_PROBABILITIES], [_LABEL], axis=1, keepdims=0),
    ]
    return nodes, initializers


def equal_mass_bins(probabilities: np.ndarray, bins: int = ECE_BINS) -> list[np.ndarray]:
    """Row indices in `bins` groups of (nearly) equal size, from the lowest predicted probability up."""
    order = np.argsort(np.asarray(probabilities), kind="stable")
    return [members for members in np.array_split(order, min(bins, len(order))) if len(members)]


def _ece_of_rows(y: np.ndarray, p: np.ndarray, bins: int) -> np.ndarray:
    """The ECE of each row of `y` and `p` ([samples, n]): sorted by p, cut like `equal_mass_bins`, and
    Σ_bins |Σ y − Σ p| / n (= Σ (bin rows / n) · |observed rate − mean p|). One vectorised pass for every sample."""
    rows = p.shape[1]
    if rows == 0:
        raise ValueError("expected calibration error of no rows")
    parts = min(bins, rows)
    sizes = np.full(parts, rows // parts) + (np.arange(parts) < rows % parts)  # np.array_split's sizes
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    order = np.argsort(p, axis=1, kind="stable")
    observed = np.add.reduceat(np.take_along_axis(y, order, axis=1), starts, axis=1)
    predicted = np.add.reduceat(np.take_along_axis(p, order, axis=1), starts, axis=1)
    errors: np.ndarray = np.abs(observed - predicted).sum(axis=1) / rows
    return errors


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over equal-mass bins: Σ (bin rows / rows) · |observed default rate − mean predicted probability|."""
    y = np.asarray(y_true, dtype=np.float64).reshape(1, -1)
    p = np.asarray(probabilities, dtype=np.float64).reshape(1, -1)
    return float(_ece_of_rows(y, p, bins)[0])


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def bootstrap_ece(
    y_true: np.ndarray, probabilities: np.ndarray, seed: int, resamples: int = 1000, bins: int = ECE_BINS
) -> Interval:
    """The ECE with a percentile bootstrap 95% interval (rows resampled with replacement, `seed` fixes them)."""
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(probabilities, dtype=np.float64)
    samples = np.random.default_rng(seed).integers(0, len(p), (resamples, len(p)))
    low, high = np.percentile(_ece_of_rows(y[samples], p[samples], bins), [2.5, 97.5])
    return Interval(expected_calibration_error(y, p, bins), float(low), float(high))


def ece_noise_floor(probabilities: np.ndarray, seed: int, draws: int = 200, bins: int = ECE_BINS) -> float:
    """The ECE a perfectly calibrated model would show on this many rows: the mean ECE when each row's outcome is
    drawn from its own predicted probability. An observed ECE near it is as small as this sample can measure."""
    p = np.asarray(probabilities, dtype=np.float64)
    outcomes = (np.random.default_rng(seed).random((draws, len(p))) < p).astype(np.float64)
    return float(np.mean(_ece_of_rows(outcomes, np.broadcast_to(p, outcomes.shape), bins)))
