"""The Evidently report of one version's window against its reference: Evidently's data drift per feature and for the
score, plus the credit PSI (`credit_psi`) as an Evidently custom stat test, so the report shows the PSI the summary
reads."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations.stattests.registry import (
    StatTest,
    get_registered_stattest,
    register_stattest,
)
from evidently.legacy.core import ColumnType
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset

from monitoring.psi import bin_pair, psi_of_bins
from monitoring.window import SCORE_COLUMN
from scoring.schema import FeatureSchema

logger = logging.getLogger(__name__)

CREDIT_PSI = "credit_psi"
PSI_BINS_SUFFIX = " · PSI bins"


def psi_column(column: str) -> str:
    """The report's column of `column`'s PSI bins (reference deciles, or categories; missing in a bin of its own)."""
    return f"{column}{PSI_BINS_SUFFIX}"


def _credit_psi_test(
    reference: pd.Series, current: pd.Series, feature_type: ColumnType, threshold: float
) -> tuple[float, bool]:
    value = psi_of_bins(reference.to_numpy(dtype=object), current.to_numpy(dtype=object))
    return value, value > threshold


def register_credit_psi() -> None:
    """Register `credit_psi` with Evidently (idempotent; called before a report is built, never at import).

    Evidently removes missing values before any stat test, so the test runs on the bin columns (`psi_column`),
    where a missing value is the bin `(missing)`, not on the raw columns.
    """
    try:
        get_registered_stattest(CREDIT_PSI, ColumnType.Categorical)
    except ValueError:
        test = StatTest(
            name=CREDIT_PSI,
            display_name="credit PSI (reference deciles / categories, missing as a bin, floor 0.0001)",
            allowed_feature_types=[ColumnType.Categorical],
            # Evidently wants one; `compute_report` always passes the configured act threshold (MONITORING_PSI_ACT).
            default_threshold=0.25,
        )
        register_stattest(test, _credit_psi_test)


@dataclass(frozen=True)
class Thresholds:
    """The readings' thresholds; their defaults live in one place, `MonitoringSettings`."""

    psi_watch: float
    psi_act: float
    drift_share: float


@dataclass(frozen=True)
class DriftReport:
    snapshot: Any  # evidently Snapshot: save_html / dumps
    snapshot_dict: dict[str, Any]  # its metric and test results as plain JSON types (what the summary reads)
    reference_rows: int
    current_rows: int

    def save_html(self, path: str) -> None:
        # Evidently writes nothing, silently, when given a Path: always a str.
        self.snapshot.save_html(str(path))

    def snapshot_json(self) -> str:
        """Evidently's own snapshot: `evidently.core.report.Snapshot.loads` reopens it (to render, or compare)."""
        return str(self.snapshot.dumps())

    def results_json(self) -> str:
        """The metric and test results alone, as plain JSON (what `monitoring.summary` reads)."""
        return json.dumps(self.snapshot_dict, indent=1)


def with_psi_bins(reference: pd.DataFrame, current: pd.DataFrame, schema: FeatureSchema) -> tuple[pd.DataFrame, ...]:
    """Both frames plus one PSI-bin column per feature and for the score, binned on the reference."""
    reference, current = reference.copy(), current.copy()
    for column in [*schema.features, SCORE_COLUMN]:
        reference_bins, current_bins = bin_pair(reference[column], current[column], column not in schema.categorical)
        reference[psi_column(column)], current[psi_column(column)] = reference_bins, current_bins
    return reference, current


def compute_report(
    reference: pd.DataFrame, current: pd.DataFrame, schema: FeatureSchema, thresholds: Thresholds
) -> DriftReport:
    """Run the report; `reference` and `current` hold the schema's features (model dtypes) and SCORE_COLUMN."""
    register_credit_psi()
    reference, current = with_psi_bins(reference, current, schema)
    scored = [*schema.features, SCORE_COLUMN]
    definition = DataDefinition(
        numerical_columns=[*schema.numeric, SCORE_COLUMN],
        categorical_columns=[*schema.categorical, *(psi_column(column) for column in scored)],
    )
    metrics = [
        DataDriftPreset(columns=list(schema.features), drift_share=thresholds.drift_share),
        ValueDrift(column=SCORE_COLUMN),
        *(ValueDrift(column=psi_column(column), method=CREDIT_PSI, threshold=thresholds.psi_act) for column in scored),
    ]
    with warnings.catch_warnings():
        # scipy divides by zero in the chi-square of a category the reference never had; Evidently still reports
        # the column as drifted, so the warning only adds noise to the job's output.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report(metrics, include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    # Through JSON: numpy scalars and enums become plain numbers and strings.
    snapshot_dict = json.loads(snapshot.json())
    return DriftReport(snapshot, snapshot_dict, len(reference), len(current))
