"""Request rows → ONNX columns: every bad input named by row and field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scoring.input_rules import OUT_OF_RANGE
from scoring.schema import FeatureSchema
from serving.validation import RowParser, RowsInvalidError, parse_rows

SCHEMA = FeatureSchema(
    features=["Age", "Home", "Income"],
    numeric=["Age", "Income"],
    categorical=["Home"],
    target="Status",
    positive_label="bad",
    categories={"Home": ["owner", "rent"]},
)


def errors_of(batch, **kwargs) -> list[dict[str, object]]:
    with pytest.raises(RowsInvalidError) as caught:
        parse_rows(batch, SCHEMA, **kwargs)
    return [error.as_dict() for error in caught.value.errors]


def test_values_and_features_rows_build_the_same_columns() -> None:
    parsed = parse_rows(
        [{"values": [30, "rent", 1200.5]}, {"features": {"Income": None, "Home": None, "Age": 41}}], SCHEMA
    )
    assert parsed.inputs["Age"].dtype == np.float32 and parsed.inputs["Age"].shape == (2, 1)
    assert parsed.inputs["Home"].tolist() == [["rent"], [""]]
    assert math.isnan(parsed.inputs["Income"][1, 0])
    assert parsed.canonical_rows == [[30.0, "rent", 1200.5], [41.0, None, None]]


def test_applicant_ids_come_from_the_row_or_the_request() -> None:
    parsed = parse_rows(
        [{"values": [1, "rent", 2], "applicant_id": "a-1"}, {"values": [1, "rent", 2]}], SCHEMA, request_applicant_id=7
    )
    assert parsed.applicant_ids == ["a-1", "7"]


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        ([], [{"row": None, "field": "batch", "message": "must be a non-empty list of rows"}]),
        ([{"values": [1, "rent"]}], [
            {"row": 0, "field": "values", "message": "expected 3 values in feature order, got 2"}
        ]),
        ([{"values": ["thirty", "rent", 1]}], [{"row": 0, "field": "Age", "message": "expected a number, got str"}]),
        ([{"values": [True, "rent", 1]}], [{"row": 0, "field": "Age", "message": "expected a number, got a boolean"}]),
        ([{"values": [float("inf"), "rent", 1]}], [{"row": 0, "field": "Age", "message": "must be finite"}]),
        ([{"values": [1e39, "rent", 10**400]}], [
            {"row": 0, "field": "Age", "message": OUT_OF_RANGE}, {"row": 0, "field": "Income", "message": OUT_OF_RANGE}
        ]),
        ([{"values": [1, {"x": 1}, 1]}], [{"row": 0, "field": "Home", "message": "expected a string, got dict"}]),
        ([{"values": [1, 5, [1]]}], [
            {"row": 0, "field": "Home", "message": "expected a string, got int"},
            {"row": 0, "field": "Income", "message": "expected a number, got list"},
        ]),
        ([{"features": {"Age": 1, "Home": "rent", "Income": 1, "Zip": 2}}], [
            {"row": 0, "field": "Zip", "message": "unknown feature"}
        ]),
        ([{"features": {"Age": 1}}], [
            {"row": 0, "field": "Home", "message": "missing feature (send null for a missing value)"},
            {"row": 0, "field": "Income", "message": "missing feature (send null for a missing value)"},
        ]),
        ([{"values": [1, "rent", 1], "features": {}}], [
            {"row": 0, "field": "row", "message": "give exactly one of 'values' or 'features'"}
        ]),
        (["nope"], [{"row": 0, "field": "row", "message": "must be an object with 'values' or 'features'"}]),
    ],
)  # fmt: skip
def test_bad_rows_are_reported_with_row_and_field(batch, expected) -> None:
    assert errors_of(batch) == expected


def test_every_bad_row_is_reported_at_once() -> None:
    errors = errors_of([{"values": [1, "rent", 1]}, {"values": ["x", "rent", 1]}, {"values": [1, "rent", "y"]}])
    assert [(e["row"], e["field"]) for e in errors] == [(1, "Age"), (2, "Income")]


def test_nan_means_missing() -> None:
    parsed = parse_rows([{"values": [float("nan"), float("nan"), None]}], SCHEMA)
    assert math.isnan(parsed.inputs["Age"][0, 0]) and parsed.inputs["Home"][0, 0] == ""
    assert parsed.canonical_rows == [[None, None, None]]


def test_a_nan_category_is_missing_and_columns_keep_feature_order() -> None:
    parsed = parse_rows([{"features": {"Income": 5, "Home": float("nan"), "Age": 2}}], SCHEMA)
    assert parsed.inputs["Home"].tolist() == [[""]]
    assert list(parsed.columns) == ["Age", "Home", "Income"]
    assert parsed.columns == {"Age": [2.0], "Home": [None], "Income": [5.0]}


def test_the_log_gets_values_as_sent_and_the_cache_key_what_the_model_sees() -> None:
    parsed = parse_rows([{"values": [30, "rent", 0.1]}, {"values": [30.0, None, float("nan")]}], SCHEMA)
    assert parsed.columns == {"Age": [30, 30.0], "Home": ["rent", None], "Income": [0.1, None]}
    assert type(parsed.columns["Age"][0]) is int
    # 30 and 30.0 are one input to the model, hence one cache key.
    assert parsed.canonical_rows == [[30.0, "rent", 0.1], [30.0, None, None]]
    assert [type(value) for value in parsed.canonical_rows[0]] == [float, str, float]


def test_the_models_missing_category_marker_is_logged_and_keyed_as_missing() -> None:
    parsed = parse_rows([{"values": [30, "", 1.0]}, {"values": [30, None, 1.0]}], SCHEMA)
    assert parsed.columns["Home"] == [None, None]
    assert parsed.canonical_rows[0] == parsed.canonical_rows[1]


@pytest.mark.parametrize("rows", [1, 40])  # a few values are checked in Python, many in numpy
def test_numbers_just_beyond_float32_are_refused_in_small_and_large_batches(rows: int) -> None:
    batch = [{"values": [30, "rent", 1.0]} for _ in range(rows)]
    batch[-1] = {"values": [3.40282356e38, "rent", -3.40282356e38]}  # rounds down to float32's largest in a cast
    assert [(e["row"], e["field"]) for e in errors_of(batch)] == [(rows - 1, "Age"), (rows - 1, "Income")]


def test_numbers_beyond_float32_are_refused_not_turned_into_infinity() -> None:
    errors = errors_of([{"values": [1e39, "rent", -(10**39)]}, {"values": [10**400, "rent", 1.0]}])
    assert [(e["row"], e["field"], e["message"]) for e in errors] == [
        (0, "Age", OUT_OF_RANGE),
        (0, "Income", OUT_OF_RANGE),
        (1, "Age", OUT_OF_RANGE),
    ]


def test_a_large_batch_gives_the_same_columns_as_row_by_row_parsing() -> None:
    rows = [{"values": [i, ["owner", "rent", None][i % 3], None if i % 7 == 0 else i * 10.5]} for i in range(1000)]
    parser = RowParser(SCHEMA)
    whole = parser.parse(rows)
    one_by_one = [parser.parse([row]) for row in rows]
    for name in SCHEMA.features:
        stacked = np.concatenate([parsed.inputs[name] for parsed in one_by_one])
        np.testing.assert_array_equal(whole.inputs[name], stacked)
        assert whole.inputs[name].flags["C_CONTIGUOUS"]
    assert whole.canonical_rows == [row for parsed in one_by_one for row in parsed.canonical_rows]


@pytest.mark.parametrize("index", [[3], [0, 5, 2], list(range(10))])
def test_a_subset_of_a_parsed_batch_is_what_parsing_those_rows_gives(index: list[int]) -> None:
    rows = [{"values": [i, ["owner", None][i % 2], None if i % 3 else i * 1.5], "applicant_id": i} for i in range(10)]
    parser = RowParser(SCHEMA)
    subset, direct = parser.parse(rows).subset(index), parser.parse([rows[i] for i in index])
    for name in SCHEMA.features:
        np.testing.assert_array_equal(subset.inputs[name], direct.inputs[name])
        assert subset.inputs[name].flags["C_CONTIGUOUS"]
    assert (subset.columns, subset.applicant_ids) == (direct.columns, direct.applicant_ids)
    assert subset.canonical_rows == direct.canonical_rows


def test_a_large_batch_with_a_few_bad_values_names_exactly_those_rows() -> None:
    rows = [{"values": [i, "rent", i * 2.0]} for i in range(1000)]
    rows[17] = {"values": ["x", "rent", 1.0]}
    rows[512] = {"values": [1, 5, float("inf")]}
    rows[999] = {"features": {"Age": 1, "Home": "rent", "Income": True}}
    errors = errors_of(rows)
    assert [(e["row"], e["field"]) for e in errors] == [(17, "Age"), (512, "Home"), (512, "Income"), (999, "Income")]


def test_the_slow_path_builds_the_same_columns_as_the_fast_one() -> None:
    fast = parse_rows([{"values": [1, "rent", None]}, {"values": [2, None, 3.5]}], SCHEMA)
    # A NaN category (allowed: it means missing) sends the categorical column down the value-by-value path.
    slow = parse_rows([{"values": [1, "rent", None]}, {"values": [2, float("nan"), 3.5]}], SCHEMA)
    for name in SCHEMA.features:
        np.testing.assert_array_equal(fast.inputs[name], slow.inputs[name])
    assert fast.columns == slow.columns


def test_row_level_applicant_ids_refuse_booleans_and_other_types() -> None:
    errors = errors_of(
        [{"values": [1, "rent", 1], "applicant_id": False}, {"values": [1, "rent", 1], "applicant_id": 1.5}]
    )
    assert [(e["row"], e["field"]) for e in errors] == [(0, "applicant_id"), (1, "applicant_id")]


def test_integer_codes_are_taken_for_integer_coded_categories_only() -> None:
    coded = FeatureSchema(
        features=["EDUCATION", "Home"],
        numeric=[],
        categorical=["EDUCATION", "Home"],
        target="default",
        positive_label="1",
        categories={"EDUCATION": ["1", "2", "3"], "Home": ["owner", "rent"]},
    )
    parsed = parse_rows([{"values": [2, "rent"]}, {"values": ["3", None]}], coded)
    assert parsed.inputs["EDUCATION"].tolist() == [["2"], ["3"]]
    assert parsed.canonical_rows == [["2", "rent"], ["3", None]]  # 2 and "2" are one input, one cache key
    with pytest.raises(RowsInvalidError) as caught:
        parse_rows([{"values": [2.5, 7]}, {"values": [True, "rent"]}], coded)
    assert [error.as_dict() for error in caught.value.errors] == [
        {"row": 0, "field": "EDUCATION", "message": "expected a string or an integer code, got float"},
        {"row": 0, "field": "Home", "message": "expected a string, got int"},
        {"row": 1, "field": "EDUCATION", "message": "expected a string or an integer code, got bool"},
    ]
