"""Request rows → ONNX input columns, checked against the model's feature schema.

A row is `{"values": [...]}` (in feature order) or `{"features": {name: value}}`, optionally with `applicant_id`.
`null` (or NaN) means missing: the model imputes it. Every problem is reported with the row index and the field, all at
once, so a client can fix a batch in one go.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from operator import itemgetter
from typing import Any, cast

import numpy as np

from scoring.input_rules import (
    EXPECTED_NUMBER,
    EXPECTED_TEXT,
    EXPECTED_TEXT_OR_CODE,
    FLOAT32_MAX,
    NOT_FINITE,
    OUT_OF_RANGE,
    integer_coded,
)
from scoring.schema import MISSING_CATEGORY, FeatureSchema

ROW_KEYS = frozenset({"values", "features", "applicant_id"})


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
    columns: dict[str, list[object]]  # feature -> values as sent, JSON-ready (None = missing): the prediction log
    applicant_ids: list[str | None]

    @cached_property
    def canonical_rows(self) -> list[list[object]]:
        """Per row, values in feature order with numbers as floats (None = missing): what a cache key is computed
        from, so that 30 and 30.0, one input to the model, share a key."""
        columns = [
            [float(value) if type(value) is int else value for value in self.columns[name]] for name in self.features
        ]
        return [list(row) for row in zip(*columns, strict=True)]

    def subset(self, index: list[int]) -> ParsedBatch:
        """The rows at `index` (in that order), as if only they had been parsed."""
        return ParsedBatch(
            features=self.features,
            inputs=take_inputs(self.inputs, index),
            columns={name: _take(values, index) for name, values in self.columns.items()},
            applicant_ids=_take(self.applicant_ids, index),
        )


def take_inputs(inputs: dict[str, np.ndarray], index: list[int]) -> dict[str, np.ndarray]:
    """The model inputs of the rows at `index`, in that order."""
    positions = np.array(index, dtype=np.intp)  # converted once: indexing by a list converts it for every column
    return {name: column[positions] for name, column in inputs.items()}


def _take(values: Sequence[Any], index: list[int]) -> list[Any]:
    if len(index) == 1:  # itemgetter of one index gives the item, not a tuple
        return [values[index[0]]]
    return [*itemgetter(*index)(values)]


def _numeric(value: Any) -> tuple[float | None, str | None]:
    if value is None:
        return math.nan, None
    if isinstance(value, bool):
        return None, f"{EXPECTED_NUMBER}, got a boolean"
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isinf(value):
            return None, NOT_FINITE
        if abs(value) > FLOAT32_MAX:  # the graph takes float32: beyond this it would see infinity
            return None, OUT_OF_RANGE
        return float(value), None
    return None, f"{EXPECTED_NUMBER}, got {type(value).__name__}"


def _categorical(value: Any, integer_codes: bool = False) -> tuple[str | None, str | None]:
    """`integer_codes`: the column's categories are integer codes (`scoring.input_rules.integer_coded`), so a JSON
    integer is taken as its code; elsewhere a number for a category is a mistake worth a 422."""
    if value is None:
        return MISSING_CATEGORY, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, float) and math.isnan(value):
        return MISSING_CATEGORY, None
    if integer_codes and type(value) is int:  # not bool
        return str(value), None
    expected = EXPECTED_TEXT_OR_CODE if integer_codes else EXPECTED_TEXT
    return None, f"{expected}, got {type(value).__name__}"


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


def _numbers(columns: Sequence[Sequence[Any]], rows: int) -> tuple[list[list[Any]], np.ndarray] | None:
    """The numeric features' values as sent (a NaN literal as None: missing), and the same as one float32
    features x rows x 1 array (NaN = missing), if every value passes `_numeric`; None otherwise (the caller then
    walks the columns with `_numeric` to name each bad value).

    This is `_numeric`'s rule for a whole batch at once: one type scan, one conversion, one range check.
    """
    if not set(map(type, chain.from_iterable(columns))) <= _PLAIN_NUMBERS:
        return None
    try:
        block = np.array(columns, dtype=np.float64).reshape(len(columns), rows)  # null becomes NaN
    except OverflowError:  # an integer literal beyond float64
        return None
    # Checked in float64: just above float32's largest number a cast would round down to it instead of overflowing.
    if (np.abs(block) > FLOAT32_MAX).any():  # also ±inf; NaN compares False
        return None
    has_missing = cast(list[bool], np.isnan(block).any(axis=1).tolist())
    listed = [
        [None if value != value else value for value in values] if missing else [*values]
        for values, missing in zip(columns, has_missing, strict=True)
    ]
    return listed, block.astype(np.float32).reshape(len(columns), rows, 1)


def _column_errors(
    name: str, values: Sequence[Any], rows: list[int], check: Callable[[Any], tuple[object, str | None]]
) -> list[FieldError]:
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
        # Per categorical feature, its rule: integer codes are taken as numbers too where every known category is one.
        self._category_rules = [
            functools.partial(_categorical, integer_codes=integer_coded(schema.categories.get(self.features[i], [])))
            for i in self._categorical
        ]
        self._order = {name: position for position, name in enumerate(self.features)}
        self._pick = itemgetter(*self.features) if len(self.features) > 1 else lambda row: (row[self.features[0]],)

    def parse(self, batch: Any, request_applicant_id: str | None = None) -> ParsedBatch:
        """Validate every row and build the column arrays; raise RowsInvalidError listing every problem.

        Each type's values of the whole batch are checked with one type scan and converted with one numpy call, which
        keeps a 1,000-row batch cheap; only when that fails is each column walked value by value to name every bad
        row. The prediction log gets the values as sent (checked), not converted back from the arrays.
        """
        require_rows(batch)
        features, errors = self.features, list[FieldError]()
        value_rows: list[Sequence[Any]] = []
        row_numbers: list[int] = []
        applicant_ids: list[str | None] = []
        count, pick = len(features), self._pick
        for index, row in enumerate(batch):
            values = None
            by_name = row.get("features") if type(row) is dict else None
            # The common case, checked without a function call: as many names as features, all of them found.
            if type(by_name) is dict and len(by_name) == count and len(row) == 1 + ("applicant_id" in row):
                try:
                    values = pick(by_name)
                except KeyError:
                    pass
            if values is None:
                values = _row_values(row, index, features, self._names, errors)
            applicant = row.get("applicant_id", request_applicant_id) if isinstance(row, dict) else None
            if applicant is not None and (type(applicant) is bool or not isinstance(applicant, str | int)):
                errors.append(FieldError(index, "applicant_id", "must be a string or an integer"))
            applicant_ids.append(None if applicant is None else str(applicant))
            if values is not None:
                value_rows.append(values)
                row_numbers.append(index)
        # One tuple per feature (zip transposes in C): the checks and conversions below work on whole columns.
        rows = len(value_rows)
        by_feature = list(zip(*value_rows, strict=True)) if value_rows else [()] * count
        numeric = [by_feature[i] for i in self._numeric]
        categorical = [by_feature[i] for i in self._categorical]
        converted = _numbers(numeric, rows)
        if converted is None:  # the slow path: column by column, naming every bad value
            for i, values in zip(self._numeric, numeric, strict=True):
                errors.extend(_column_errors(features[i], values, row_numbers, _numeric))
        if not set(map(type, chain.from_iterable(categorical))) <= _PLAIN_STRINGS:
            for i, values, rule in zip(self._categorical, categorical, self._category_rules, strict=True):
                errors.extend(_column_errors(features[i], values, row_numbers, rule))
            # Values as their rule converts them (a NaN sent for a category is missing, like null; a code is text).
            categorical = [
                tuple(rule(value)[0] for value in values)
                for values, rule in zip(categorical, self._category_rules, strict=True)
            ]
        if errors:
            errors.sort(key=lambda error: (-1 if error.row is None else error.row, self._order.get(error.field, -1)))
            raise RowsInvalidError(errors)
        # Feature-major arrays, one numpy call per type: feature j's [N,1] input is block[j], contiguous, which
        # onnxruntime takes without a copy.
        numeric_lists, number_block = converted  # type: ignore[misc]  # not None: else there were errors
        strings = [values if None not in values else [MISSING_CATEGORY if v is None else v for v in values]
                   for values in categorical]  # fmt: skip
        string_block = np.array(strings, dtype=object).reshape(len(categorical), rows, 1)
        inputs: dict[str, np.ndarray] = {}
        columns: dict[str, Any] = dict.fromkeys(features)  # the log's, in feature order: values as sent, None = missing
        for j, i in enumerate(self._numeric):
            inputs[features[i]], columns[features[i]] = number_block[j], numeric_lists[j]
        for j, i in enumerate(self._categorical):
            values = categorical[j]
            # The model's own marker for a missing category ("") is logged, and keyed, as missing too.
            logged = [None if v == MISSING_CATEGORY else v for v in values] if MISSING_CATEGORY in values else [*values]
            inputs[features[i]], columns[features[i]] = string_block[j], logged
        return ParsedBatch(features=features, inputs=inputs, columns=columns, applicant_ids=applicant_ids)


def parse_rows(batch: Any, schema: FeatureSchema, request_applicant_id: str | None = None) -> ParsedBatch:
    """`RowParser(schema).parse(...)`, for one-off use."""
    return RowParser(schema).parse(batch, request_applicant_id)
