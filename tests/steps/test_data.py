"""Loading, validation, schema inference and splitting (pure functions, no MLflow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.contract import frame_sha256
from scoring.schema import MISSING_CATEGORY, FeatureSchema
from steps import data
from steps.errors import UserInputError


def validate(frame: pd.DataFrame, target: str = "Status", positive: str = "bad", min_rows: int = 100):
    return data.validate_table(frame, target, positive, min_rows, "input.csv")


def test_shipped_data_validates_with_expected_schema(credit_frame: pd.DataFrame) -> None:
    frame, schema, dropped = validate(credit_frame)
    assert dropped == 0
    assert len(frame) == 4454
    assert int(frame["Status"].sum()) == 1254  # "bad" is the positive class
    assert schema.categorical == ["Home", "Marital", "Records", "Job"]
    assert set(schema.numeric) == {
        "Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"
    }  # fmt: skip
    assert schema.features == [c for c in credit_frame.columns if c != "Status"]
    assert frame["Income"].isna().sum() == 381
    assert (frame["Home"] == MISSING_CATEGORY).sum() == 6
    assert "owner" in schema.categories["Home"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["Status"]), "target column 'Status' not found"),
        (lambda f: f.assign(Status=np.where(np.arange(len(f)) % 3 == 0, "x", f["Status"])), "exactly 2 distinct"),
        (lambda f: f.assign(Status="good"), "exactly 2 distinct values, found 1"),
        (lambda f: f.assign(Status=np.nan), "entirely empty"),
        (lambda f: f.head(50), "50 labelled rows, at least 100"),
        (lambda f: f.assign(Income=np.nan), "entirely empty: Income"),
        (lambda f: f[["Status"]], "no feature columns"),
    ],
    ids=["missing-target", "three-classes", "one-class", "empty-target", "too-few-rows", "empty-column", "no-features"],
)
def test_bad_tables_are_refused_with_a_message_naming_the_problem(credit_frame, mutate, message) -> None:
    with pytest.raises(UserInputError, match=message) as caught:
        validate(mutate(credit_frame.copy()))
    assert "input.csv" in str(caught.value)


def test_unknown_positive_label_lists_the_values_found(credit_frame: pd.DataFrame) -> None:
    with pytest.raises(UserInputError, match=r"positive label 'default' not found .*values: bad, good"):
        validate(credit_frame, positive="default")


def test_numeric_target_matches_a_textual_label(credit_frame: pd.DataFrame) -> None:
    numeric = credit_frame.assign(Status=(credit_frame["Status"] == "bad").astype(float))
    frame, schema, _ = validate(numeric, positive="1")
    assert int(frame["Status"].sum()) == 1254
    assert schema.positive_label == "1"


def test_rows_without_a_label_are_dropped_and_counted(credit_frame: pd.DataFrame) -> None:
    holes = credit_frame.copy()
    holes.loc[:9, "Status"] = np.nan
    frame, _, dropped = validate(holes)
    assert dropped == 10
    assert len(frame) == len(credit_frame) - 10


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.csv", None, "does not exist"),
        ("table.xlsx", b"whatever", "unsupported format '.xlsx'"),
        ("broken.parquet", b"this is not parquet", "cannot be read"),
        ("empty.csv", b"", "cannot be read"),
        ("header_only.csv", b"Status,Age\n", "has no rows"),
        ("binary.csv", b"\xff\xfe\x00\x00garbage\x00\xff", "cannot be read"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserInputError, match=message) as caught:
        data.load_table(path)
    assert str(path) in str(caught.value)


def test_a_folder_is_not_a_data_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="is not a file"):
        data.load_table(tmp_path)


def test_parquet_and_csv_give_the_same_table(tmp_path: Path, credit_frame: pd.DataFrame) -> None:
    credit_frame.to_parquet(tmp_path / "credit.parquet", index=False)
    from_parquet = data.load_table(tmp_path / "credit.parquet")
    pd.testing.assert_frame_equal(from_parquet, credit_frame)


def test_other_binary_data_sets_are_accepted() -> None:
    generator = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "income": generator.normal(size=300),
            "region": generator.choice(["north", "south"], size=300),
            "flag": generator.choice([True, False], size=300),
            "defaulted": generator.choice(["yes", "no"], size=300),
        }
    )
    cleaned, schema, _ = data.validate_table(frame, "defaulted", "yes", 100, "other.parquet")
    assert schema.numeric == ["income", "flag"]
    assert schema.categorical == ["region"]
    assert cleaned["flag"].dtype == np.float64


def test_split_is_stratified_disjoint_and_reproducible(credit_frame: pd.DataFrame) -> None:
    frame, _, _ = validate(credit_frame)
    splits = data.split_frame(frame, "Status", seed=1, validation_fraction=0.15, test_fraction=0.2)
    again = data.split_frame(frame, "Status", seed=1, validation_fraction=0.15, test_fraction=0.2)
    sizes = {name: len(split) for name, split in splits.items()}
    assert sum(sizes.values()) == len(frame)
    assert sizes["test"] == pytest.approx(0.2 * len(frame), abs=1)
    assert sizes["validation"] == pytest.approx(0.15 * len(frame), abs=2)
    for _, split in splits.items():
        assert split["Status"].mean() == pytest.approx(frame["Status"].mean(), abs=0.01)
    pd.testing.assert_frame_equal(splits.test, again.test)
    assert frame_sha256(splits.train) == frame_sha256(again.train)
    assert frame_sha256(splits.train) != frame_sha256(splits.test)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.2, -0.1])
def test_split_fractions_out_of_range_name_the_parameter(credit_frame: pd.DataFrame, fraction: float) -> None:
    frame, _, _ = validate(credit_frame)
    with pytest.raises(UserInputError, match="test-fraction"):
        data.split_frame(frame, "Status", seed=1, validation_fraction=0.15, test_fraction=fraction)


def test_normalize_features_names_missing_columns(credit_frame: pd.DataFrame) -> None:
    _, schema, _ = validate(credit_frame)
    with pytest.raises(UserInputError, match="missing feature column\\(s\\): Age"):
        data.normalize_features(credit_frame.drop(columns=["Age"]), schema)


def test_schema_round_trips_through_json(credit_frame: pd.DataFrame) -> None:
    _, schema, _ = validate(credit_frame)
    assert FeatureSchema.from_json(schema.to_json()) == schema


def test_integer_coded_columns_can_be_declared_categorical_and_ids_dropped() -> None:
    generator = np.random.default_rng(1)
    education = generator.choice([1, 2, 3, 4, 5, 6], size=300).astype(float)
    education[:7] = np.nan  # a column with gaps reads as float: its labels must still be "1".."6"
    frame = pd.DataFrame(
        {
            "ID": np.arange(300),
            "EDUCATION": education,
            "LIMIT_BAL": generator.normal(50_000, 10_000, size=300),
            "default": generator.choice([0, 1], size=300),
        }
    )
    inferred = data.validate_table(frame, "default", "1", 100, "uci.csv")[1]
    assert inferred.numeric == ["ID", "EDUCATION", "LIMIT_BAL"]
    cleaned, schema, _ = data.validate_table(
        frame, "default", "1", 100, "uci.csv", categorical=["EDUCATION"], drop=["ID"]
    )
    assert schema.features == ["EDUCATION", "LIMIT_BAL"]
    assert schema.categorical == ["EDUCATION"] and schema.numeric == ["LIMIT_BAL"]
    assert schema.categories["EDUCATION"] == ["1", "2", "3", "4", "5", "6"]
    assert set(cleaned["EDUCATION"]) == {"1", "2", "3", "4", "5", "6", MISSING_CATEGORY}
    assert "ID" not in cleaned.columns


@pytest.mark.parametrize(
    ("categorical", "drop", "message"),
    [
        (["EDUCATON"], [], "parameter categorical-columns names column\\(s\\) not in the file: EDUCATON"),
        ([], ["id"], "parameter drop-columns names column\\(s\\) not in the file: id"),
        (["default"], [], "parameter categorical-columns names the target column 'default'"),
        (["EDUCATION"], ["EDUCATION"], "both categorical and dropped: EDUCATION"),
    ],
)
def test_bad_column_lists_name_the_parameter_and_the_column(categorical, drop, message) -> None:
    frame = pd.DataFrame({"EDUCATION": [1, 2] * 100, "x": range(200), "default": [0, 1] * 100})
    with pytest.raises(UserInputError, match=message):
        data.validate_table(frame, "default", "1", 100, "uci.csv", categorical=categorical, drop=drop)
