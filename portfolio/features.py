"""Arrow record batches -> ONNX feeds, by the rules the gateway applies to JSON rows (`scoring.input_rules`).

A row whose value breaks a rule is rejected with the reason (the first broken rule in feature order) and the value;
the other rows are scored. There is no per-row Python: every check and conversion is one Arrow or numpy call over a
whole column. Categorical columns go through Arrow's dictionary encoding, so the [N,1] string feed ONNX Runtime takes
is built from a handful of Python strings (one per distinct value) rather than one per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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

MISSING_ID = "missing: every row needs its id"
# A number as text (CSV, or a text column in Parquet): what Arrow's string -> float64 cast accepts, nothing else.
# "nan" is missing (as NaN is at the gateway); "inf" is then refused as not finite, like any infinity.
NUMBER_TEXT = r"(?i)^[-+]?((\d+\.?\d*|\.\d+)(e[-+]?\d+)?|inf|infinity|nan)$"


@dataclass
class _Problems:
    """The rows a batch's columns refused, each with the first reason (in feature order) and the value."""

    rows: int
    bad: np.ndarray | None = None  # bool per row
    reasons: list[tuple[np.ndarray, str, pa.Array]] = field(default_factory=list)

    def add(self, mask: np.ndarray, reason: str, values: pa.Array) -> None:
        if not mask.any():
            return
        self.bad = mask.copy() if self.bad is None else self.bad | mask
        self.reasons.append((mask, reason, values))

    def rejected(self) -> tuple[np.ndarray, pa.Array, pa.Array]:
        """Indices of the refused rows, their reasons and values (as text)."""
        assert self.bad is not None
        reason = np.empty(self.rows, dtype=object)
        value = np.empty(self.rows, dtype=object)
        for mask, text, values in reversed(self.reasons):  # the first column's reason is written last: it wins
            reason[mask] = text
            value[mask] = np.asarray(pc.cast(values, pa.string()).to_numpy(zero_copy_only=False), dtype=object)[mask]
        index = np.flatnonzero(self.bad)
        return index, pa.array(reason[index], pa.string()), pa.array(value[index], pa.string())


@dataclass(frozen=True)
class CategoricalCodes:
    """A categorical column as its distinct labels and each row's position in them (missing = `MISSING_CATEGORY`)."""

    labels: np.ndarray  # object array of str
    codes: np.ndarray  # int per row

    def feed(self) -> np.ndarray:
        # Fixed-width numpy text rather than Python strings: ONNX Runtime copies it in without touching a Python
        # object per row, which measured faster while other threads of the local engine want the GIL.
        feed: np.ndarray = self.labels.astype(str)[self.codes].reshape(-1, 1)
        return feed

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.codes, minlength=len(self.labels))
        return {str(label): int(n) for label, n in zip(self.labels, found, strict=True) if n}


@dataclass(frozen=True)
class EncodedBatch:
    """A batch's accepted rows as the graph takes them, and its rejected rows with their reasons."""

    feeds: dict[str, np.ndarray]
    numbers: dict[str, np.ndarray]  # numeric features of the accepted rows, float64 (NaN = missing): for PSI
    categories: dict[str, CategoricalCodes]  # categorical features of the accepted rows: for PSI
    accepted: np.ndarray | None  # indices of the accepted rows; None: every row
    rejected: np.ndarray  # indices of the rejected rows
    reasons: pa.Array  # per rejected row
    values: pa.Array  # per rejected row, the refused value as text

    @property
    def accepted_rows(self) -> int:
        return len(next(iter(self.feeds.values()))) if self.feeds else 0


class ArrowFeatures:
    """Feeds for one feature schema (built once per job, used for every batch)."""

    def __init__(self, schema: FeatureSchema, id_columns: list[str]):
        self.schema = schema
        self.id_columns = list(id_columns)
        self._coded = {name: integer_coded(schema.categories.get(name, [])) for name in schema.categorical}
        self._numeric = frozenset(schema.numeric)

    @property
    def columns(self) -> list[str]:
        """Every column a batch must hold: the ids, then the features."""
        return [*self.id_columns, *(name for name in self.schema.features if name not in self.id_columns)]

    def encode(self, batch: pa.RecordBatch) -> EncodedBatch:
        problems = _Problems(batch.num_rows)
        for name in self.id_columns:
            ids = batch.column(name)
            if ids.null_count:
                problems.add(np.asarray(ids.is_null().to_numpy(zero_copy_only=False)), f"{name}: {MISSING_ID}", ids)
        numbers: dict[str, np.ndarray] = {}
        categories: dict[str, CategoricalCodes] = {}
        for name in self.schema.features:  # in feature order: a row's reason is its first refused feature's
            if name in self._numeric:
                numbers[name] = self._numbers(name, batch.column(name), problems)
            else:
                categories[name] = self._categories(name, batch.column(name), problems)
        accepted: np.ndarray | None = None
        if problems.bad is not None:
            rejected, reasons, values = problems.rejected()
            accepted = np.flatnonzero(~problems.bad)
            numbers = {name: column[accepted] for name, column in numbers.items()}
            categories = {name: CategoricalCodes(c.labels, c.codes[accepted]) for name, c in categories.items()}
        else:
            rejected = np.empty(0, dtype=np.intp)
            reasons = values = pa.array([], pa.string())
        feeds: dict[str, np.ndarray] = {}
        for name in self.schema.features:
            if name in numbers:
                feeds[name] = numbers[name].astype(np.float32).reshape(-1, 1)
            else:
                feeds[name] = categories[name].feed()
        return EncodedBatch(feeds, numbers, categories, accepted, rejected, reasons, values)

    def _numbers(self, name: str, column: pa.Array, problems: _Problems) -> np.ndarray:
        """float64 per row, NaN = missing; a refused value is made missing here and its row rejected."""
        kind, original = column.type, column
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            text = pc.utf8_trim_whitespace(column)
            empty = pc.equal(text, "")
            valid = pc.or_kleene(pc.match_substring_regex(text, NUMBER_TEXT), empty)
            refused = np.asarray(pc.invert(pc.fill_null(valid, True)).to_numpy(zero_copy_only=False), dtype=bool)
            problems.add(refused, f"{name}: {EXPECTED_NUMBER}", column)
            text = pc.if_else(pc.fill_null(valid, False), text, pa.scalar(None, pa.string()))
            column = pc.cast(pc.if_else(empty, pa.scalar(None, pa.string()), text), pa.float64())
        elif pa.types.is_boolean(kind) or not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
        ):
            got = "a boolean" if pa.types.is_boolean(kind) else str(kind)
            present = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            problems.add(present, f"{name}: {EXPECTED_NUMBER}, got {got}", column)
            return np.full(len(column), np.nan)
        elif not pa.types.is_float64(kind):
            # Unsafe: an integer beyond 2^53 rounds to the nearest float, as it does in JSON (the graph takes float32).
            column = pc.cast(column, pa.float64(), safe=False)
        numbers = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        outside = np.abs(numbers) > FLOAT32_MAX  # also ±inf; NaN compares False
        if outside.any():
            infinite = np.isinf(numbers)
            problems.add(infinite, f"{name}: {NOT_FINITE}", original)
            problems.add(outside & ~infinite, f"{name}: {OUT_OF_RANGE}", original)
            numbers = np.where(outside, np.nan, numbers)
        return numbers

    def _categories(self, name: str, column: pa.Array, problems: _Problems) -> CategoricalCodes:
        kind = column.type
        coded = self._coded[name]
        if pa.types.is_dictionary(kind) and (
            pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
        ):
            return _dictionary_codes(column)
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
            kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            text = column
        elif coded and pa.types.is_integer(kind):
            text = pc.cast(column, pa.string())
        elif coded and pa.types.is_floating(kind):
            # An integer code read as a float (a numeric column with gaps): 2.0 is code "2"; 2.5 is no code.
            numbers = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
            fractional = ~np.isnan(numbers) & (np.mod(numbers, 1) != 0)
            problems.add(fractional, f"{name}: {EXPECTED_TEXT_OR_CODE}, got a fraction", column)
            whole = pa.array(np.where(fractional | np.isnan(numbers), np.nan, numbers), from_pandas=True)
            text = pc.cast(pc.cast(whole, pa.int64()), pa.string())
        else:
            expected = EXPECTED_TEXT_OR_CODE if coded else EXPECTED_TEXT
            present = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            problems.add(present, f"{name}: {expected}, got {kind}", column)
            return CategoricalCodes(np.array([MISSING_CATEGORY], dtype=object), np.zeros(len(column), dtype=np.intp))
        encoded = pc.dictionary_encode(pc.fill_null(text, MISSING_CATEGORY))
        labels = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
        return CategoricalCodes(labels, np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.intp))


def _dictionary_codes(column: pa.DictionaryArray) -> CategoricalCodes:
    """A dictionary-encoded text column (Parquet's own encoding) as codes without touching a string per row: the
    dictionary's values (a null or missing row gets one more label, `MISSING_CATEGORY`)."""
    values = np.asarray(pc.fill_null(column.dictionary, MISSING_CATEGORY).to_numpy(zero_copy_only=False), dtype=object)
    labels = np.append(values, MISSING_CATEGORY).astype(object)
    codes = np.asarray(pc.fill_null(column.indices, len(values)).to_numpy(zero_copy_only=False), dtype=np.intp)
    return CategoricalCodes(labels, codes)
