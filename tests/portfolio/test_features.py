"""Arrow columns -> ONNX feeds by the gateway's rules: the same values give the same feeds as the gateway's
RowParser, and a value the gateway refuses rejects its row here with the reason and the value."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from portfolio.features import ArrowFeatures
from scoring.input_rules import OUT_OF_RANGE
from scoring.schema import FeatureSchema
from serving.validation import RowParser

SCHEMA = FeatureSchema(
    features=["Age", "Home", "Income", "Education"],
    numeric=["Age", "Income"],
    categorical=["Home", "Education"],
    target="Status",
    positive_label="bad",
    categories={"Home": ["owner", "rent"], "Education": ["1", "2", "3"]},
)


def batch(**columns: pa.Array) -> pa.RecordBatch:
    ids = pa.array([f"A{i}" for i in range(len(next(iter(columns.values()))))])
    return pa.RecordBatch.from_arrays([ids, *columns.values()], names=["account_id", *columns])


def encoder() -> ArrowFeatures:
    return ArrowFeatures(SCHEMA, ["account_id"])


def test_typed_columns_give_the_gateways_feeds() -> None:
    ages = [30, None, 45]
    homes = ["rent", None, "caravan"]  # missing, and a category the model never saw (the graph ignores it)
    incomes = [1200.5, 800.0, None]
    education = [1, None, 3]  # integer codes, as the gateway takes them for an integer-coded category
    encoded = encoder().encode(
        batch(
            Age=pa.array(ages, pa.int64()),
            Home=pa.array(homes),
            Income=pa.array(incomes),
            Education=pa.array(education, pa.int64()),
        )
    )
    rows = [
        {"features": {"Age": a, "Home": h, "Income": i, "Education": e}}
        for a, h, i, e in zip(ages, homes, incomes, education, strict=True)
    ]
    parsed = RowParser(SCHEMA).parse(rows)
    assert encoded.accepted is None and len(encoded.rejected) == 0
    for name in SCHEMA.features:
        ours, theirs = encoded.feeds[name], parsed.inputs[name]
        assert ours.shape == theirs.shape == (3, 1), name
        if name in SCHEMA.numeric:
            assert ours.dtype == theirs.dtype == np.float32
            np.testing.assert_array_equal(ours, theirs)
        else:  # numpy text here, Python strings there: the same string tensor for ONNX Runtime
            assert ours.dtype.kind == "U" and ours.ravel().tolist() == theirs.ravel().tolist(), name


def test_text_columns_are_parsed_as_the_csv_reader_gives_them() -> None:
    encoded = encoder().encode(
        batch(
            Age=pa.array(["30", "", " 41 ", None, "1e2"]),
            Home=pa.array(["rent", "", "owner", None, "rent"]),
            Income=pa.array(["1.5", "2", "-3", ".5", "7."]),
            Education=pa.array(["1", "2", None, "3", "1"]),
        )
    )
    assert len(encoded.rejected) == 0
    assert encoded.feeds["Age"].ravel().tolist()[0] == 30.0
    assert math.isnan(encoded.feeds["Age"][1, 0]) and math.isnan(encoded.feeds["Age"][3, 0])
    assert encoded.feeds["Age"][4, 0] == 100.0
    assert encoded.feeds["Income"].ravel().tolist() == [1.5, 2.0, -3.0, 0.5, 7.0]
    assert encoded.feeds["Home"].ravel().tolist() == ["rent", "", "owner", "", "rent"]


def test_refused_values_reject_their_rows_with_the_first_reason_and_the_value() -> None:
    encoded = encoder().encode(
        batch(
            Age=pa.array(["30", "thirty", "40", "1e39", "50"]),
            Home=pa.array(["rent", "rent", "rent", "owner", "rent"]),
            Income=pa.array([1.0, 2.0, math.inf, 4.0, 5.0]),
            Education=pa.array([1.0, 2.5, 3.0, 1.0, None]),
        )
    )
    assert encoded.accepted is not None and encoded.accepted.tolist() == [0, 4]
    assert encoded.rejected.tolist() == [1, 2, 3]
    assert encoded.reasons.to_pylist() == [
        "Age: expected a number",  # row 1 also has a fractional code: the first column's reason is given
        "Income: must be finite",
        f"Age: {OUT_OF_RANGE}",
    ]
    assert encoded.values.to_pylist() == ["thirty", "inf", "1e39"]
    assert encoded.feeds["Age"].ravel().tolist() == [30.0, 50.0]
    assert encoded.feeds["Education"].ravel().tolist() == ["1", ""]
    assert encoded.categories["Home"].counts() == {"rent": 2}


@pytest.mark.parametrize(
    ("column", "values", "reason"),
    [
        ("Age", pa.array([True, None]), "Age: expected a number, got a boolean"),
        ("Home", pa.array([1, None], pa.int64()), "Home: expected a string, got int64"),
    ],
)
def test_wrong_column_types_reject_the_rows_that_have_a_value(column: str, values: pa.Array, reason: str) -> None:
    columns = {
        "Age": pa.array([30.0, 31.0]),
        "Home": pa.array(["rent", "owner"]),
        "Income": pa.array([1.0, 2.0]),
        "Education": pa.array(["1", "2"]),
    }
    columns[column] = values
    encoded = encoder().encode(batch(**columns))
    assert encoded.rejected.tolist() == [0] and encoded.reasons.to_pylist() == [reason]


def test_a_row_without_an_id_is_rejected() -> None:
    batch_ = pa.RecordBatch.from_arrays(
        [pa.array(["A1", None]), pa.array([30.0, 31.0]), pa.array(["rent", "owner"]), pa.array([1.0, 2.0]),
         pa.array(["1", "2"])],
        names=["account_id", "Age", "Home", "Income", "Education"],
    )  # fmt: skip
    encoded = encoder().encode(batch_)
    assert encoded.rejected.tolist() == [1]
    assert encoded.reasons.to_pylist() == ["account_id: missing: every row needs its id"]
