"""Loading, validating and splitting a tabular data set with a binary target.

Everything downstream (training, ONNX conversion, serving) relies on the `FeatureSchema` produced here: the feature
order, which columns are numeric (float64, NaN = missing) and which are categorical (str, "" = missing).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from registry.errors import first_line
from scoring.schema import MISSING_CATEGORY, FeatureSchema, FeatureValuesError, category_labels
from scoring.schema import normalize_features as schema_normalize_features
from steps.errors import UserInputError

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [("train", self.train), ("validation", self.validation), ("test", self.test)]


def load_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, turning every way it can fail into a message that names the file."""
    if not path.exists():
        raise UserInputError(f"data file {path} does not exist")
    if not path.is_file():
        raise UserInputError(f"data path {path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserInputError(f"data file {path}: unsupported format {suffix!r} (expected .csv or .parquet)")
    try:
        if suffix == ".csv":
            table = pd.read_csv(path)
        else:
            table = pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise UserInputError(f"data file {path} cannot be read: {first_line(error)}") from error
    if table.empty:
        raise UserInputError(f"data file {path} has no rows")
    return table


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def encode_target(table: pd.DataFrame, target: str, positive_label: str, source: str) -> pd.Series:
    """Return the target as 0/1 (1 = positive label), refusing anything that is not a binary target."""
    if target not in table.columns:
        raise UserInputError(
            f"{source}: target column {target!r} not found (columns: {', '.join(map(str, table.columns))})"
        )
    column = table[target]
    if column.isna().all():
        raise UserInputError(f"{source}: target column {target!r} is entirely empty")
    labels = column.dropna().astype(str).unique().tolist()
    if len(labels) != 2:
        shown = ", ".join(sorted(labels)[:10])
        raise UserInputError(
            f"{source}: target column {target!r} must have exactly 2 distinct values, found {len(labels)} ({shown})"
        )
    positive = _match_label(column, positive_label)
    if positive is None:
        raise UserInputError(
            f"{source}: positive label {positive_label!r} not found in target column {target!r} "
            f"(values: {', '.join(sorted(labels))})"
        )
    return column.eq(positive).astype("int64")


def _match_label(column: pd.Series, label: str) -> object | None:
    """Find the value in `column` that the command-line label means ("1" matches 1 and 1.0 in a numeric column)."""
    values = column.dropna().unique()
    for value in values:
        if str(value) == label:
            return value
    if pd.api.types.is_numeric_dtype(column):
        try:
            number = float(label)
        except ValueError:
            return None
        for value in values:
            if float(value) == number:
                return value
    return None


def infer_schema(
    features: pd.DataFrame, target: str, positive_label: str, source: str, categorical: Collection[str] = ()
) -> FeatureSchema:
    """Numeric columns stay numeric unless named in `categorical`, everything else is categorical; fully empty
    columns are refused. `categorical` is how integer-coded categories (EDUCATION coded 1-6, say) are declared."""
    empty = [str(c) for c in features.columns if features[c].isna().all()]
    if empty:
        raise UserInputError(f"{source}: column(s) entirely empty: {', '.join(empty)}")
    numeric, categorical_columns = [], []
    for column in features.columns:
        # bool counts as numeric for pandas; treating it as 0/1 is what a user would expect.
        is_numeric = pd.api.types.is_numeric_dtype(features[column]) and column not in categorical
        (numeric if is_numeric else categorical_columns).append(str(column))
    categories = {
        column: sorted(set(category_labels(features[column].dropna())) - {MISSING_CATEGORY})
        for column in categorical_columns
    }
    return FeatureSchema(
        features=[str(c) for c in features.columns],
        numeric=numeric,
        categorical=categorical_columns,
        target=target,
        positive_label=positive_label,
        categories=categories,
    )


def normalize_features(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """`scoring.schema.normalize_features`, its refusals as the user's mistake."""
    try:
        return schema_normalize_features(frame, schema)
    except FeatureValuesError as error:
        raise UserInputError(str(error)) from error


def validate_table(
    table: pd.DataFrame,
    target: str,
    positive_label: str,
    min_rows: int,
    source: str,
    categorical: Sequence[str] = (),
    drop: Sequence[str] = (),
) -> tuple[pd.DataFrame, FeatureSchema, int]:
    """Check a raw table and return (features + 0/1 target, schema, rows dropped for a missing target).

    `categorical` names columns to treat as categories whatever their type; `drop` names columns that are not
    features (an applicant id, say).
    """
    table = table.rename(columns=str)
    duplicated = table.columns[table.columns.duplicated()].tolist()
    if duplicated:
        raise UserInputError(f"{source}: duplicated column name(s): {', '.join(duplicated)}")
    _check_named_columns(table, target, categorical, drop, source)
    y = encode_target(table, target, positive_label, source)
    unlabeled = table[target].isna()
    dropped = int(unlabeled.sum())
    if dropped:
        logger.warning("%s: dropping %d row(s) with no value in target column %r", source, dropped, target)
    table, y = table.loc[~unlabeled], y.loc[~unlabeled]
    if len(table) < min_rows:
        raise UserInputError(f"{source}: {len(table)} labelled rows, at least {min_rows} are needed")
    raw_features = table.drop(columns=[target, *drop])
    if raw_features.shape[1] == 0:
        raise UserInputError(f"{source}: no feature columns besides the target {target!r}")
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < 10:
        raise UserInputError(f"{source}: only {minority} row(s) in the minority class of {target!r}, need 10")
    schema = infer_schema(raw_features, target, positive_label, source, categorical)
    frame = normalize_features(raw_features, schema)
    frame[target] = y.to_numpy()
    return frame.reset_index(drop=True), schema, dropped


def _check_named_columns(
    table: pd.DataFrame, target: str, categorical: Sequence[str], drop: Sequence[str], source: str
) -> None:
    for parameter, names in (("categorical-columns", categorical), ("drop-columns", drop)):
        unknown = [name for name in names if name not in table.columns]
        if unknown:
            raise UserInputError(
                f"{source}: parameter {parameter} names column(s) not in the file: {', '.join(unknown)} "
                f"(columns: {', '.join(map(str, table.columns))})"
            )
        if target in names:
            raise UserInputError(f"{source}: parameter {parameter} names the target column {target!r}")
    both = sorted(set(categorical) & set(drop))
    if both:
        raise UserInputError(f"{source}: column(s) both categorical and dropped: {', '.join(both)}")


def split_frame(
    frame: pd.DataFrame, target: str, seed: int, validation_fraction: float, test_fraction: float
) -> Splits:
    """Stratified train/validation/test split; fractions are of the whole table."""
    for name, value in (("validation-fraction", validation_fraction), ("test-fraction", test_fraction)):
        if not 0.0 < value < 0.5:
            raise UserInputError(f"parameter {name} must be between 0 and 0.5, got {value}")
    rest, test = train_test_split(frame, test_size=test_fraction, stratify=frame[target], random_state=seed)
    relative_validation = validation_fraction / (1.0 - test_fraction)
    train, validation = train_test_split(rest, test_size=relative_validation, stratify=rest[target], random_state=seed)
    return Splits(
        train=train.reset_index(drop=True),
        validation=validation.reset_index(drop=True),
        test=test.reset_index(drop=True),
    )


def features_and_target(frame: pd.DataFrame, schema: FeatureSchema) -> tuple[pd.DataFrame, np.ndarray]:
    return frame[schema.features], frame[schema.target].to_numpy(dtype=np.int64)
