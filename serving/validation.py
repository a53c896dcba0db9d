"""Request rows → ONNX input columns, checked against the model's feature schema.

A row is `{"values": [...]}` (in feature order) or `{"features": {name: value}}`, optionally with `applicant_id`.
`null` (or NaN) means missing: the model imputes it. Every problem is reported with the row index and the field, all at
once, so a client can fix a batch in one go.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any

import numpy as np

from scoring.schema import MISSING_CATEGORY, FeatureSchema

ROW_KEYS = frozenset({"values", "features", "applicant_id"})
FLOAT32_MAX = float(np.finfo(np.float32).max)
OUT_OF_RANGE = f"out of range: the model takes numbers up to ±{FLOAT32_MAX:.3g}"


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
    features: list[str]  # the model's feature order
    inputs: dict[str, np.ndarray]  # feature -> [N,1] array in the graph's dtype
    columns: dict[str, list[object]]  # feature -> JSON-ready values (None = missing): the prediction log
    applicant_ids: list[str | None]

    @cached_property
    def canonical_rows(self) -> list[list[object]]:
        """Per row, values in feature order (None = missing): what a cache key is computed from."""
        return [list(row) for row in zip(*(self.columns[name] for name in self.features), strict=True)]


def _numeric(value: Any) -> tuple[float | None, str | None]:
    if value is None:
        return math.nan, None
    if isinstance(value, bool):
        return None, "expected a number, got a boolean"
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isinf(value):
            return None, "must be finite"
        if abs(value) > FLOAT32_MAX:  # the graph takes float32: beyond this it would see infinity
            return None, OUT_OF_RANGE
        return float(value), None
    return None, f"expected a number, got {type(value).__name__}"


def _categorical(value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return MISSING_CATEGORY, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, float) and math.isnan(value):
        return MISSING_CATEGORY, None
    return None, f"expected a string, got {type(value).__name__}"


def _row_values(
    row: Any, index: int, names: list[str], feature_names: frozenset[str], errors: list[FieldError]
) -> list[Any] | None:
    if not isinstance(row, dict):
        errors.append(FieldError(index, "row", "must be an object with 'values' or 'features'"))
        return None
    for key in sorted(set(row) - ROW_KEYS):
        errors.append(FieldError(index, key, "unknown field: a row has 'values' or 'features', and 'applicant_id'"))
    if ("values" in row) == ("features" in row):
        errors.append(FieldError(index, "row", "give exactly one of 'values' or 'features'"))
        return None
    if "values" in row:
        values = row["values"]
        if not isinstance(values, list):
            errors.append(FieldError(index, "values", "must be a list"))
            return None
        if len(values) != len(names):
            errors.append(
                FieldError(index, "values", f"expected {len(names)} values in feature order, got {len(values)}")
            )
            return None
        return values
    features = row["features"]
    if not isinstance(features, dict):
        errors.append(FieldError(index, "features", "must be an object of feature name -> value"))
        return None
    if features.keys() == feature_names:
        return [features[name] for name in names]
    unknown = sorted(set(features) - feature_names)
    missing = [name for name in names if name not in features]
    for name in unknown:
        errors.append(FieldError(index, name, "unknown feature"))
    for name in missing:
        errors.append(FieldError(index, name, "missing feature (send null for a missing value)"))
    if unknown or missing:
        return None
    return [features[name] for name in names]


_PLAIN_NUMBERS = frozenset({int, float, type(None)})  # not bool: True is not a number here
_PLAIN_STRINGS = frozenset({str, type(None)})


def _numeric_block(value_rows: list[Sequence[Any]], positions: list[int]) -> np.ndarray | None:
    """float64 rows x numeric features (NaN = missing) if every value is a usable JSON number or null, else None."""
    flat = [row[i] for row in value_rows for i in positions]
    if not set(map(type, flat)) <= _PLAIN_NUMBERS:
        return None
    try:
        block = np.array(flat, dtype=np.float64).reshape(len(value_rows), len(positions))  # null becomes NaN
    except OverflowError:  # an integer literal beyond float64
        return None
    if (np.abs(block) > FLOAT32_MAX).any():  # also catches ±inf; NaN compares False
        return None
    return block


def _column_errors(name: str, values: list[Any], numeric: bool, rows: list[int]) -> list[FieldError]:
    check = _numeric if numeric else _categorical
    return [
        FieldError(row, name, problem) for row, value in zip(rows, values, strict=True) if (problem := check(value)[1])
    ]


def require_rows(batch: Any) -> list[Any]:
    """The batch itself: a non-empty list (checked before anything counts or routes its rows)."""
    if not isinstance(batch, list) or not batch:
        raise RowsInvalidError([FieldError(None, "batch", "must be a non-empty list of rows")])
    return batch


class RowParser:
    """Rows -> ONNX input columns for one feature schema (built once per loaded model, used for every request)."""

    def __init__(self, schema: FeatureSchema):
        self.features = list(schema.features)
        self._names = frozenset(self.features)
        numeric = set(schema.numeric)
        self._numeric = [i for i, name in enumerate(self.features) if name in numeric]
        self._categorical = [i for i, name in enumerate(self.features) if name not in numeric]
        self._order = {name: position for position, name in enumerate(self.features)}
        self._pick = itemgetter(*self.features) if len(self.features) > 1 else lambda row: (row[self.features[0]],)

    def parse(self, batch: Any, request_applicant_id: str | None = None) -> ParsedBatch:
        """Validate every row and build the column arrays; raise RowsInvalidError listing every problem.

        The numeric values of the whole batch are checked with one type scan and converted with one numpy call, which
        keeps a 1,000-row batch cheap; only when that fails is each column walked value by value to name every bad row.
        """
        require_rows(batch)
        features, errors = self.features, []
        value_rows: list[Sequence[Any]] = []
        row_numbers: list[int] = []
        applicant_ids: list[str | None] = []
        names, pick = self._names, self._pick
        for index, row in enumerate(batch):
            by_name = row.get("features") if type(row) is dict else None
            if type(by_name) is dict and by_name.keys() == names and len(row) == 1 + ("applicant_id" in row):
                values = pick(by_name)  # the common case, checked without a function call
            else:
                values = _row_values(row, index, features, names, errors)
            applicant = row.get("applicant_id", request_applicant_id) if isinstance(row, dict) else None
            if applicant is not None and (type(applicant) is bool or not isinstance(applicant, str | int)):
                errors.append(FieldError(index, "applicant_id", "must be a string or an integer"))
            applicant_ids.append(None if applicant is None else str(applicant))
            if values is not None:
                value_rows.append(values)
                row_numbers.append(index)
        block = _numeric_block(value_rows, self._numeric)
        if block is None:  # the slow path: column by column, naming every bad value
            block = np.full((len(value_rows), len(self._numeric)), np.nan)
            for j, i in enumerate(self._numeric):
                values = [row[i] for row in value_rows]
                problems = _column_errors(features[i], values, True, row_numbers)
                errors.extend(problems)
                if not problems:
                    block[:, j] = [_numeric(value)[0] for value in values]
        # Column-major: each feature's [N,1] slice is contiguous, so onnxruntime takes it without a copy.
        numbers = np.asfortranarray(block, dtype=np.float32)
        inputs: dict[str, np.ndarray] = {}
        columns: dict[str, list[object]] = {}
        for j, (i, values) in enumerate(zip(self._numeric, block.T.tolist(), strict=True)):
            inputs[features[i]] = numbers[:, j : j + 1]
            columns[features[i]] = [None if value != value else value for value in values]  # NaN -> None
        for i in self._categorical:
            name, values = features[i], [row[i] for row in value_rows]
            if set(map(type, values)) <= _PLAIN_STRINGS:
                strings = [MISSING_CATEGORY if value is None else value for value in values]
            else:
                problems = _column_errors(name, values, False, row_numbers)
                if problems:
                    errors.extend(problems)
                    continue
                strings = [_categorical(value)[0] for value in values]  # NaN for a category: missing too
            inputs[name] = np.array(strings, dtype=object).reshape(-1, 1)
            columns[name] = [None if value == MISSING_CATEGORY else value for value in strings]
        if errors:
            errors.sort(key=lambda error: (-1 if error.row is None else error.row, self._order.get(error.field, -1)))
            raise RowsInvalidError(errors)
        ordered = {name: columns[name] for name in features}
        return ParsedBatch(features=features, inputs=inputs, columns=ordered, applicant_ids=applicant_ids)


def parse_rows(batch: Any, schema: FeatureSchema, request_applicant_id: str | None = None) -> ParsedBatch:
    """`RowParser(schema).parse(...)`, for one-off use."""
    return RowParser(schema).parse(batch, request_applicant_id)
