"""The feature schema shared by training, the registry and serving: feature order, kinds and missing markers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from scoring.contract import FEATURE_SCHEMA_METADATA

if TYPE_CHECKING:  # pandas is not in the gateway's environment (requirements-serving.lock): imported where used
    import pandas as pd

# Categorical missing values travel as the empty string: skl2onnx cannot convert an imputer whose missing marker is
# NaN on a string column, and "" round-trips through JSON, Parquet and ONNX string tensors unchanged.
MISSING_CATEGORY = ""


def category_labels(values: pd.Series) -> pd.Series:
    """A categorical column's values as text labels (missing stays missing). Integer codes read as floats (pandas'
    type for a numeric column with gaps) keep their integer label: 2.0 is category "2", as in a column without gaps."""
    import pandas as pd

    if pd.api.types.is_float_dtype(values):
        return values.map(_float_label, na_action="ignore")
    return values.astype(str).where(values.notna(), values)


def _float_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class FeatureValuesError(ValueError):
    """A frame cannot be a model's input: a feature column is absent, or a numeric one holds text (named)."""


def normalize_features(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """The schema's features in model order and the dtypes the model takes: float64 (NaN = missing) for numeric
    columns, text (`MISSING_CATEGORY` = missing, `category_labels` for codes) for categorical ones.

    Text in a numeric column is refused, naming the column and a value, rather than silently made missing.
    """
    import pandas as pd

    missing = [c for c in schema.features if c not in frame.columns]
    if missing:
        raise FeatureValuesError(f"missing feature column(s): {', '.join(missing)}")
    columns: dict[str, pd.Series] = {}
    for name in schema.features:
        values = frame[name]
        if name in schema.numeric:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            refused = numbers.isna() & values.notna()
            if refused.any():
                raise FeatureValuesError(
                    f"column {name!r} must be numeric, found {int(refused.sum())} value(s) such as "
                    f"{values[refused].iloc[0]!r}"
                )
            columns[name] = numbers
        else:
            columns[name] = category_labels(values).where(values.notna(), MISSING_CATEGORY).astype(object)
    return pd.DataFrame(columns, index=frame.index)


@dataclass(frozen=True)
class FeatureSchema:
    """Feature names in model order, their kinds, and how the target was encoded."""

    features: list[str]
    numeric: list[str]
    categorical: list[str]
    target: str
    positive_label: str
    categories: dict[str, list[str]]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSchema:
        return cls(**json.loads(text))

    @classmethod
    def from_metadata(cls, metadata: dict[str, object]) -> FeatureSchema:
        """Read the `feature_schema` entry that the pipeline writes into an ONNX model's MLflow metadata."""
        entry = metadata[FEATURE_SCHEMA_METADATA]
        if not isinstance(entry, dict):
            raise ValueError("the model's feature_schema metadata is not a mapping")
        return cls(**entry)

    def kind(self, feature: str) -> str:
        return "numeric" if feature in self.numeric else "categorical"

    def differences(self, reference: FeatureSchema) -> list[str]:
        """How these model inputs differ from `reference`'s, one item each: `+added`, `-removed`,
        `name: numeric->categorical`, or that the same columns come in another order. Empty when they are the same.

        Categories and the target are not part of the inputs: a model that saw other categories takes the same rows.
        """
        ours, theirs = set(self.features), set(reference.features)
        found = [f"+{name}" for name in self.features if name not in theirs]
        found += [f"-{name}" for name in reference.features if name not in ours]
        found += [
            f"{name}: {reference.kind(name)}->{self.kind(name)}"
            for name in self.features
            if name in theirs and self.kind(name) != reference.kind(name)
        ]
        if not found and self.features != reference.features:
            found.append("the same columns in another order")
        return found
