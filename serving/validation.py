"""Request rows → ONNX input columns, checked against the model's feature schema.

A row is `{"values": [...]}` (in feature order) or `{"features": {name: value}}`, optionally with `applicant_id`.
`null` (or NaN) means missing: the model imputes it. Every problem is reported with the row index and the field, all at
once, so a client can fix a batch in one go.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.schema import MISSING_CATEGORY, FeatureSchema


@dataclass(frozen=True)
class FieldError:
    row: int | None
    field: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"row": self.row, "field": self.field, "message": self.message}


class RowsInvalidError(ValueError):
    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"row {e.row} {e.field}: {e.message}" for e in errors[:5]))
        self.errors = errors


@dataclass(frozen=True)
class ParsedBatch:
    inputs: dict[str, np.ndarray]  # feature -> [N,1] array in the graph's dtype
    canonical_rows: list[list[object]]  # per row, values in feature order (None = missing): cache keys, logging
    applicant_ids: list[str | None]


def _numeric(value: Any) -> tuple[float | None, str | None]:
    if value is None:
        return math.nan, None
    if isinstance(value, bool):
        return None, "expected a number, got a boolean"
    if isinstance(value, int | float):
        number = float(value)
        if math.isinf(number):
            return None, "must be finite"
        return number, None
    return None, f"expected a number, got {type(value).__name__}"


def _categorical(value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return MISSING_CATEGORY, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, float) and math.isnan(value):
        return MISSING_CATEGORY, None
    return None, f"expected a string, got {type(value).__name__}"


def _row_values(row: Any, index: int, schema: FeatureSchema, errors: list[FieldError]) -> list[Any] | None:
    if not isinstance(row, dict):
        errors.append(FieldError(index, "row", "must be an object with 'values' or 'features'"))
        return None
    if ("values" in row) == ("features" in row):
        errors.append(FieldError(index, "row", "give exactly one of 'values' or 'features'"))
        return None
    if "values" in row:
        values = row["values"]
        if not isinstance(values, list):
            errors.append(FieldError(index, "values", "must be a list"))
            return None
        if len(values) != len(schema.features):
            errors.append(
                FieldError(
                    index, "values", f"expected {len(schema.features)} values in feature order, got {len(values)}"
                )
            )
            return None
        return values
    features = row["features"]
    if not isinstance(features, dict):
        errors.append(FieldError(index, "features", "must be an object of feature name -> value"))
        return None
    unknown = sorted(set(features) - set(schema.features))
    missing = [name for name in schema.features if name not in features]
    for name in unknown:
        errors.append(FieldError(index, name, "unknown feature"))
    for name in missing:
        errors.append(FieldError(index, name, "missing feature (send null for a missing value)"))
    if unknown or missing:
        return None
    return [features[name] for name in schema.features]


def parse_rows(batch: Any, schema: FeatureSchema, request_applicant_id: str | None = None) -> ParsedBatch:
    """Validate every row and build the column arrays; raise RowsInvalidError listing every problem."""
    if not isinstance(batch, list) or not batch:
        raise RowsInvalidError([FieldError(None, "batch", "must be a non-empty list of rows")])
    errors: list[FieldError] = []
    numeric = set(schema.numeric)
    columns: dict[str, list[Any]] = {name: [] for name in schema.features}
    canonical: list[list[object]] = []
    applicant_ids: list[str | None] = []
    for index, row in enumerate(batch):
        values = _row_values(row, index, schema, errors)
        applicant = row.get("applicant_id", request_applicant_id) if isinstance(row, dict) else None
        if applicant is not None and not isinstance(applicant, str | int):
            errors.append(FieldError(index, "applicant_id", "must be a string or an integer"))
        applicant_ids.append(None if applicant is None else str(applicant))
        if values is None:
            continue
        clean_row: list[object] = []
        for name, value in zip(schema.features, values, strict=True):
            converted, problem = _numeric(value) if name in numeric else _categorical(value)
            if problem is not None:
                errors.append(FieldError(index, name, problem))
                continue
            columns[name].append(converted)
            missing = converted == MISSING_CATEGORY if name not in numeric else math.isnan(converted)
            clean_row.append(None if missing else converted)
        canonical.append(clean_row)
    if errors:
        raise RowsInvalidError(errors)
    inputs = {
        name: (
            np.asarray(columns[name], dtype=np.float32).reshape(-1, 1)
            if name in numeric
            else np.asarray(columns[name], dtype=object).reshape(-1, 1)
        )
        for name in schema.features
    }
    return ParsedBatch(inputs=inputs, canonical_rows=canonical, applicant_ids=applicant_ids)
