"""Reason codes: which of an applicant's values pushed the model's risk estimate up, in words a person reads.

Method (docs/credit_risk.md): every feature of a row is replaced, one at a time, by its reference value (the median
of the training split for a number, its most frequent category for a category: a typical applicant), and the served
ONNX graph scores the row and all its variants in one batched call. A feature's impact is the change in log-odds of
default it causes: log-odds(row) − log-odds(row with that feature at its reference). The features with the largest
positive impacts are the reasons, at most `top_k`, each with the code and text the lender gave it.

Features the lender marks `adverse_action: false` (age, marital status) are scored like every other but never listed.

Limits: one feature at a time (interactions are split arbitrarily between the features that take part); a feature at
its reference value has no impact, however risky the reference itself; a flat stretch of an isotonic calibration can
hide small impacts. The impacts explain the model, not the world.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from scoring.calibration import log_odds
from scoring.onnx_runtime import predict_default_probability
from scoring.schema import FeatureSchema

# Below this change in log-odds a feature is not a reason (float32 noise of the graph, not a push).
MIN_IMPACT = 1e-4
DEFAULT_REASON_COUNT = 3  # reasons per row at most, unless the gateway is told otherwise


@dataclass(frozen=True)
class ReasonCode:
    code: str
    text: str
    # False for a feature that may never be given as an adverse-action reason (age, marital status): its impact is
    # still computed, it is just never listed.
    adverse_action: bool = True

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "text": self.text, "adverse_action": self.adverse_action}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReasonCode:
        """One entry of a reason-codes file or of a version's metadata; ValueError names what is missing."""
        code, text, adverse = data.get("code"), data.get("text"), data.get("adverse_action", True)
        if not (isinstance(code, str) and isinstance(text, str) and isinstance(adverse, bool)):
            raise ValueError("needs a string code and text (and adverse_action true or false, if given)")
        return cls(code, text, adverse)


@dataclass(frozen=True)
class ExplanationSpec:
    """Per feature: the reference value and the adverse-action code and text (a generic one where none is given)."""

    reference: dict[str, float | str]
    codes: dict[str, ReasonCode] = field(default_factory=dict)

    def code(self, feature: str) -> ReasonCode:
        return self.codes.get(feature) or ReasonCode(feature.upper(), f"{feature} increased the estimated risk")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "one feature at a time replaced by its training reference; impact = change in log-odds",
            "reference": dict(self.reference),
            "codes": {name: code.to_dict() for name, code in self.codes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExplanationSpec:
        codes = {name: ReasonCode.from_dict(entry) for name, entry in (data.get("codes") or {}).items()}
        return cls(dict(data["reference"]), codes)


@dataclass(frozen=True)
class Reason:
    feature: str
    code: str
    text: str
    impact: float  # log-odds of default added by this feature's value, against the reference

    def as_dict(self) -> dict[str, object]:
        return {"feature": self.feature, "code": self.code, "text": self.text, "impact": round(self.impact, 4)}


class Explainer:
    def __init__(self, session: ort.InferenceSession, schema: FeatureSchema, spec: ExplanationSpec):
        missing = [name for name in schema.features if name not in spec.reference]
        if missing:
            raise ValueError(f"the explanation reference has no value for feature(s) {', '.join(missing)}")
        self.session, self.schema, self.spec = session, schema, spec
        self._references = {
            name: np.array(
                [[spec.reference[name]]],
                dtype=np.float32 if name in schema.numeric else object,
            )
            for name in schema.features
        }
        self._codes = [spec.code(name) for name in schema.features]
        self._listable = np.array([code.adverse_action for code in self._codes])

    def impacts(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """[N, F]: each feature's impact on each row's log-odds of default, from one ORT call over N·(F+1) rows."""
        features = self.schema.features
        rows = len(inputs[features[0]])
        variants = len(features) + 1
        feeds = {}
        for position, name in enumerate(features):
            tiled = np.tile(inputs[name], (variants, 1))
            block = (position + 1) * rows
            tiled[block : block + rows] = self._references[name]
            feeds[name] = tiled
        logits = log_odds(predict_default_probability(self.session, feeds)).reshape(variants, rows)
        result: np.ndarray = (logits[0][None, :] - logits[1:]).T
        return result

    def explain(self, inputs: Mapping[str, np.ndarray], top_k: int) -> list[list[Reason]]:
        """Per row, up to `top_k` reasons, the largest impact first (fewer when fewer features pushed risk up);
        features that may not be an adverse-action reason are never listed."""
        impacts = np.where(self._listable[None, :], self.impacts(inputs), -np.inf)
        ranked = np.argsort(-impacts, axis=1, kind="stable")[:, :top_k]
        features = self.schema.features
        return [
            [
                Reason(features[j], self._codes[j].code, self._codes[j].text, float(impacts[row, j]))
                for j in order
                if impacts[row, j] > MIN_IMPACT
            ]
            for row, order in enumerate(ranked)
        ]


def top_features(reasons: list[list[Reason]]) -> list[tuple[str, ...]]:
    return [tuple(reason.feature for reason in row) for row in reasons]


def agreement(first: list[list[Reason]], second: list[list[Reason]]) -> dict[str, float]:
    """How often two models give a row the same reasons: as a set, and in the same order."""
    a, b = top_features(first), top_features(second)
    same_set = sum(set(x) == set(y) for x, y in zip(a, b, strict=True))
    same_order = sum(x == y for x, y in zip(a, b, strict=True))
    return {"set": same_set / len(a), "order": same_order / len(a)}
