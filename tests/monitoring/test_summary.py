"""The flat summary: pure, read from the snapshot's JSON; and on a real Evidently report it agrees with the PSI
computed directly on the same data."""

from __future__ import annotations

import pandas as pd
import pytest

from monitoring.psi import population_stability_index
from monitoring.reference import normalized_features
from monitoring.report import CREDIT_PSI, Thresholds, compute_report, psi_column
from monitoring.summary import numeric_part, psi_by_column, summarize
from monitoring.window import SCORE_COLUMN
from scoring.schema import FeatureSchema

THRESHOLDS = Thresholds(psi_watch=0.10, psi_act=0.25, drift_share=0.5)


def value_drift(column: str, method: str, value: float) -> dict[str, object]:
    return {"config": {"type": "evidently:metric_v2:ValueDrift", "column": column, "method": method}, "value": value}


def drift_test(column: str, method: str, status: str) -> dict[str, object]:
    params = {"type": "evidently:metric_v2:ValueDrift", "column": column, "method": method}
    return {"metric_config": {"params": params}, "status": status}


def snapshot(share: float, psi: dict[str, float], failed: set[str]) -> dict[str, object]:
    columns = ["Income", "Home", SCORE_COLUMN]
    methods = {"Income": "Wasserstein distance (normed)", "Home": "Jensen-Shannon distance"}
    methods[SCORE_COLUMN] = "Wasserstein distance (normed)"
    return {
        "metrics": [
            {"config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {"count": 1, "share": share}},
            *(value_drift(column, methods[column], 0.05) for column in columns),
            *(value_drift(psi_column(column), CREDIT_PSI, psi[column]) for column in columns),
        ],
        "tests": [
            *(drift_test(c, methods[c], "FAIL" if c in failed else "SUCCESS") for c in columns),
            *(drift_test(psi_column(c), CREDIT_PSI, "FAIL" if psi[c] > 0.25 else "SUCCESS") for c in columns),
        ],
    }


def test_a_stable_snapshot() -> None:
    summary = summarize(
        snapshot(0.0, {"Income": 0.02, "Home": 0.01, SCORE_COLUMN: 0.03}, set()), ["Income", "Home"], THRESHOLDS
    )
    assert summary == {
        "verdict": "stable",
        "verdict_reason": "every PSI below 0.1; Evidently finds 0% of features drifted (dataset drift from 50%)",
        "verdict_level": 0,
        "drift_share": 0.0,
        "drifted_features": 0,
        "drifted_feature_names": [],
        "evidently_dataset_drift": 0,
        "score_drift_method": "Wasserstein distance (normed)",
        "score_drift_score": 0.05,
        "score_drifted": 0,
        "psi_max": 0.03,
        "psi_max_column": SCORE_COLUMN,
        "psi_columns_watch": 0,
        "psi_columns_act": 0,
        "psi.Income": 0.02,
        "psi.Home": 0.01,
        f"psi.{SCORE_COLUMN}": 0.03,
    }
    assert "verdict" not in numeric_part(summary) and numeric_part(summary)["psi.Income"] == 0.02
    assert psi_by_column(summary) == {"Income": 0.02, "Home": 0.01, SCORE_COLUMN: 0.03}


@pytest.mark.parametrize(
    ("share", "psi", "failed", "verdict", "dataset_drift", "reason"),
    [
        (0.0, {"Income": 0.12, "Home": 0.0, SCORE_COLUMN: 0.0}, set(), "watch", 0,
         "PSI from 0.1 to 0.25 for Income"),  # a PSI in 0.10-0.25
        (0.5, {"Income": 0.05, "Home": 0.0, SCORE_COLUMN: 0.0}, {"Income"}, "act", 1,
         "Evidently finds 50% of features drifted, at least 50% (Evidently's dataset drift)"),
        (0.0, {"Income": 0.05, "Home": 0.0, SCORE_COLUMN: 0.0}, {SCORE_COLUMN}, "stable", 0,
         "every PSI below 0.1; Evidently finds 0% of features drifted (dataset drift from 50%)"),  # Evidently alone
        # The score's PSI above 0.25: act, though Evidently's dataset-level test says no drift, and the reason says so.
        (0.0, {"Income": 0.0, "Home": 0.0, SCORE_COLUMN: 0.26}, set(), "act", 0,
         f"PSI above 0.25 for {SCORE_COLUMN}"),
    ],
)  # fmt: skip
def test_the_verdict(
    share: float, psi: dict[str, float], failed: set[str], verdict: str, dataset_drift: int, reason: str
) -> None:
    summary = summarize(snapshot(share, psi, failed), ["Income", "Home"], THRESHOLDS)
    assert summary["verdict"] == verdict
    assert summary["verdict_reason"] == reason
    assert summary["evidently_dataset_drift"] == dataset_drift
    assert summary["drifted_feature_names"] == [f for f in ["Income", "Home"] if f in failed]


def test_thresholds_are_the_ones_given() -> None:
    psi = {"Income": 0.12, "Home": 0.0, SCORE_COLUMN: 0.0}
    assert summarize(snapshot(0.0, psi, set()), ["Income", "Home"], Thresholds(0.15, 0.3, 0.5))["verdict"] == "stable"


def test_a_snapshot_without_the_psi_of_a_feature_is_refused() -> None:
    with pytest.raises(ValueError, match="the PSI of Job"):
        summarize(snapshot(0.0, {"Income": 0.0, "Home": 0.0, SCORE_COLUMN: 0.0}, set()), ["Income", "Job"], THRESHOLDS)


@pytest.fixture(scope="module")
def applicants(credit_frame: pd.DataFrame) -> tuple[pd.DataFrame, FeatureSchema]:
    features = credit_frame.drop(columns=["Status"])
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical = [c for c in features.columns if c not in numeric]
    categories = {c: sorted(features[c].dropna().unique()) for c in categorical}
    schema = FeatureSchema(list(features.columns), numeric, categorical, "Status", "bad", categories)
    frame = normalized_features(features, schema, "credit data")
    # Any deterministic score will do for the report; the job uses the model's.
    frame[SCORE_COLUMN] = (frame["Debt"].fillna(0) / (frame["Income"].fillna(100) + 100)).clip(0, 1)
    return frame, schema


def test_report_and_summary_agree_with_psi_on_the_same_rows(applicants: tuple[pd.DataFrame, FeatureSchema]) -> None:
    frame, schema = applicants
    # A random split (the file's row order is not random): the same population on both sides.
    shuffled = frame.sample(frac=1.0, random_state=5).reset_index(drop=True)
    reference, current = shuffled.iloc[:2500].reset_index(drop=True), shuffled.iloc[2500:].reset_index(drop=True)
    shifted = current.copy()
    shifted["Income"] = shifted["Income"] / 2
    shifted.loc[shifted.index[: len(shifted) // 3], "Home"] = "caravan"

    undrifted = compute_report(reference, current, schema, THRESHOLDS)
    summary = summarize(undrifted.snapshot_dict, schema.features, THRESHOLDS)
    for column in [*schema.features, SCORE_COLUMN]:
        numeric = column not in schema.categorical
        direct = population_stability_index(reference[column], current[column], numeric)
        assert summary[f"psi.{column}"] == pytest.approx(direct, rel=1e-9), column
    assert summary["verdict"] == "stable", summary

    drifted = summarize(
        compute_report(reference, shifted, schema, THRESHOLDS).snapshot_dict, schema.features, THRESHOLDS
    )
    assert drifted["verdict"] == "act"
    assert float(drifted["psi.Income"]) > 0.25 and float(drifted["psi.Home"]) > 0.25
    assert {"Income", "Home"} <= set(drifted["drifted_feature_names"])
    assert float(drifted["psi.Seniority"]) == pytest.approx(float(summary["psi.Seniority"]))
