"""The promotion gate: re-score candidate and incumbent on the same held-out data and check recorded quality.

Checks (thresholds in `RegistrySettings`): `auc_floor` (always), `auc_vs_incumbent` (with an incumbent), `parity`
(fp32: |Δp| vs sklearn; INT8: |Δp| vs its fp32 source), `int8_agreement` (INT8 only), `latency` (single-row p99 from
the benchmark), `schema` (the same inputs as the incumbent: names, kinds, order); when configured, `ece` (expected
calibration error on the evaluation data) and one `<metric>_gap[<slice>]` per fairness slice (`max_*_gap`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from registry.errors import RegistryError
from registry.fairness import fairness_report
from registry.lineage import read_split
from registry.resolve import ResolvedModel
from registry.settings import RegistrySettings
from registry.slices import DEFAULT_SLICES, GAP_METRICS, parse_slices
from scoring.calibration import ECE_BINS, expected_calibration_error
from scoring.contract import (
    DECISION_AGREEMENT_TAG,
    FAIRNESS_SLICES_TAG,
    LATENCY_P99_TAG,
    PARITY_TAG,
    PREPARE_RUN_ID,
    split_artifact,
)
from scoring.onnx_runtime import inference_session, onnx_inputs, predict_default_probability

logger = logging.getLogger(__name__)

EVALUATION_SPLIT = "test"


PASSED, FORCED, REFUSED = "passed", "forced", "refused"  # the verdicts


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    observed: str
    threshold: str
    detail: str


@dataclass(frozen=True)
class EvaluationData:
    frame: pd.DataFrame
    prepare_run_id: str
    sha256: str


@dataclass
class GateReport:
    model: str
    candidate_version: str
    incumbent_version: str | None
    evaluation: dict[str, object]
    checks: list[Check]
    forced: bool = False
    reason: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed_checks(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    @property
    def verdict(self) -> str:
        if self.passed:
            return PASSED
        return FORCED if self.forced else REFUSED

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed, "verdict": self.verdict}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateReport:
        """The report back from `to_dict()` (a report handed between processes, e.g. between two Airflow tasks)."""
        checks = [Check(**check) for check in data["checks"]]
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data and name != "checks"}
        return cls(checks=checks, **fields)

    def to_markdown(self) -> str:
        incumbent = f"version {self.incumbent_version}" if self.incumbent_version else "none (first deployment)"
        lines = [
            f"# Promotion gate: {self.model} version {self.candidate_version}",
            "",
            f"- verdict: **{self.verdict}**" + (f" (reason: {self.reason})" if self.reason else ""),
            f"- incumbent: {incumbent}",
            f"- evaluation data: `{split_artifact(EVALUATION_SPLIT)}` of prepare run "
            f"`{self.evaluation['prepare_run_id']}`, "
            f"{self.evaluation['rows']} rows, sha256 `{str(self.evaluation['sha256'])[:16]}…`",
            f"- at: {self.created_at}",
            "",
            "| check | verdict | observed | threshold | detail |",
            "| --- | --- | --- | --- | --- |",
        ]
        for check in self.checks:
            verdict = "pass" if check.passed else "FAIL"
            lines.append(f"| {check.name} | {verdict} | {check.observed} | {check.threshold} | {check.detail} |")
        return "\n".join(lines) + "\n"


class GateRefusedError(RegistryError):
    """The gate refused the candidate; nothing was moved. The report says why, check by check."""

    def __init__(self, report: GateReport):
        failed = ", ".join(f"{c.name} ({c.detail})" for c in report.failed_checks)
        super().__init__(f"gate refused version {report.candidate_version}: {failed}")
        self.report = report


def newest_evaluation_data(
    client: MlflowClient, versions: list[ModelVersion], required_columns: set[str]
) -> EvaluationData:
    """The test split of the newest prepare run (of any registered version) that has every required column.

    Candidate and incumbent are scored on the same rows; a split without a column one of them needs is skipped.
    """
    prepare_run_ids = {v.tags[PREPARE_RUN_ID] for v in versions if v.tags.get(PREPARE_RUN_ID)}
    if not prepare_run_ids:
        raise RegistryError("no registered version records a prepare_run_id: no held-out data to evaluate on")
    runs = sorted((client.get_run(run_id) for run_id in prepare_run_ids), key=lambda r: r.info.start_time)
    for run in reversed(runs):
        split = read_split(client, run.info.run_id, EVALUATION_SPLIT)
        if required_columns <= set(split.frame.columns):
            return EvaluationData(frame=split.frame, prepare_run_id=run.info.run_id, sha256=split.sha256)
    raise RegistryError(
        f"no held-out split known to the registry has all of the columns {', '.join(sorted(required_columns))}"
    )


def evaluation_columns(candidate: ResolvedModel, incumbent: ResolvedModel | None) -> set[str]:
    """The columns the evaluation data needs: both models' when they take the same inputs, else the candidate's
    (the incumbent then cannot be scored on it, and the `schema` check says why)."""
    models = [candidate]
    if incumbent is not None and not candidate.feature_schema.differences(incumbent.feature_schema):
        models.append(incumbent)
    return {column for model in models for column in [*model.feature_schema.features, model.feature_schema.target]}


def score(model: ResolvedModel, data: EvaluationData) -> np.ndarray:
    """The version's probabilities of default for the evaluation rows."""
    schema = model.feature_schema
    missing = [name for name in [*schema.features, schema.target] if name not in data.frame.columns]
    if missing:
        raise RegistryError(
            f"version {model.version} needs column(s) {', '.join(missing)} absent from the evaluation data"
        )
    return predict_default_probability(inference_session(model.onnx_path), onnx_inputs(data.frame, schema))


def outcomes(model: ResolvedModel, data: EvaluationData) -> np.ndarray:
    outcome: np.ndarray = data.frame[model.feature_schema.target].to_numpy(dtype=np.int64)
    return outcome


def score_auc(model: ResolvedModel, data: EvaluationData) -> float:
    return float(roc_auc_score(outcomes(model, data), score(model, data)))


def calibration_checks(
    candidate: ResolvedModel, probabilities: np.ndarray, data: EvaluationData, settings: RegistrySettings
) -> list[Check]:
    """`ece` and the fairness gaps the settings bound (none when none is set)."""
    y = outcomes(candidate, data)
    checks = []
    if settings.max_ece is not None:
        ece = expected_calibration_error(y, probabilities)
        checks.append(
            Check(
                "ece", ece <= settings.max_ece, f"{ece:.4f}", f"<= {settings.max_ece:g}", f"{ECE_BINS} equal-mass bins"
            )
        )
    bounded = {metric: getattr(settings, name) for metric, name in GAP_METRICS.items()}
    bounded = {metric: limit for metric, limit in bounded.items() if limit is not None}
    if not bounded:
        return checks
    if candidate.decision_threshold is None:
        return [*checks, Check("fairness", False, "n/a", "a decision threshold", "the version records no threshold")]
    slices = settings.fairness_slices or candidate.tags.get(FAIRNESS_SLICES_TAG) or DEFAULT_SLICES
    try:
        specs = parse_slices(slices)
    except ValueError as error:  # a hand-edited version tag (the setting is checked when it is read)
        raise RegistryError(f"version {candidate.version}'s {FAIRNESS_SLICES_TAG} tag: {error}") from None
    report = fairness_report(
        data.frame, y, probabilities, candidate.decision_threshold, specs, settings.fairness_min_group_rows
    )
    for metric, limit in bounded.items():
        for result in report.slices:
            gap = result.gaps[metric]
            name = f"{metric}_gap[{result.column}]"
            if math.isnan(gap):  # fewer than two groups big enough to compare
                checks.append(Check(name, True, "n/a", f"<= {limit:g}", "fewer than two groups large enough"))
                continue
            low, high = result.extremes[metric]
            values = result.table[metric]
            detail = f"{result.column}: {low} {values[low]:.3f} vs {high} {values[high]:.3f}"
            checks.append(Check(name, gap <= limit, f"{gap:.4f}", f"<= {limit:g}", detail))
        for skipped, why in report.skipped.items():
            checks.append(Check(f"{metric}_gap[{skipped}]", True, "n/a", f"<= {limit:g}", f"skipped: {why}"))
    return checks


def _recorded(model: ResolvedModel, tag: str) -> float | None:
    try:
        return float(model.tags[tag])
    except (KeyError, ValueError):
        return None


def _at_most(name: str, value: float | None, limit: float, what: str) -> Check:
    if value is None:
        return Check(name, False, "not recorded", f"<= {limit:g}", f"{what} missing from the version's tags")
    return Check(name, value <= limit, f"{value:.4g}", f"<= {limit:g}", what)


def quality_checks(candidate: ResolvedModel, settings: RegistrySettings) -> list[Check]:
    """Checks of what the pipeline recorded on the candidate version (no scoring)."""
    if candidate.precision == "int8":
        checks = [
            _at_most("parity", _recorded(candidate, PARITY_TAG), settings.max_int8_parity, "INT8 vs fp32"),
        ]
        agreement = _recorded(candidate, DECISION_AGREEMENT_TAG)
        checks.append(
            Check(
                "int8_agreement",
                agreement is not None and agreement >= settings.min_int8_agreement,
                "not recorded" if agreement is None else f"{agreement:.4f}",
                f">= {settings.min_int8_agreement:g}",
                "share of test decisions equal to the fp32 source's",
            )
        )
    else:
        checks = [_at_most("parity", _recorded(candidate, PARITY_TAG), settings.max_fp32_parity, "ONNX vs sklearn")]
    checks.append(
        _at_most(
            "latency",
            _recorded(candidate, LATENCY_P99_TAG),
            settings.latency_budget_ms,
            "single-row p99 ms",
        )
    )
    return checks


def schema_check(candidate: ResolvedModel, incumbent: ResolvedModel) -> Check:
    differences = candidate.feature_schema.differences(incumbent.feature_schema)
    inputs = f"{len(candidate.feature_schema.features)} inputs"
    if not differences:
        return Check("schema", True, inputs, "same as incumbent", "identical")
    return Check("schema", False, inputs, "same as incumbent", ", ".join(differences))


def incumbent_check(candidate: ResolvedModel, candidate_auc: float, incumbent: ResolvedModel, data: EvaluationData,
                    settings: RegistrySettings) -> Check:  # fmt: skip
    """Candidate AUC against the incumbent's on the same rows; not comparable when they take other inputs (a column
    of another kind would not even convert, and a subset of columns would score the incumbent on what it never saw)."""
    if candidate.feature_schema.differences(incumbent.feature_schema):
        return Check("auc_vs_incumbent", False, "n/a", "comparable", "not comparable: the models take other inputs")
    try:
        incumbent_auc = score_auc(incumbent, data)
    except RegistryError as error:
        return Check("auc_vs_incumbent", False, "n/a", "comparable", str(error))
    return Check(
        "auc_vs_incumbent",
        candidate_auc >= incumbent_auc - settings.auc_tolerance,
        f"{candidate_auc:.4f} vs {incumbent_auc:.4f}",
        f">= incumbent - {settings.auc_tolerance:g}",
        f"delta {candidate_auc - incumbent_auc:+.4f}",
    )


def evaluate(
    candidate: ResolvedModel,
    incumbent: ResolvedModel | None,
    data: EvaluationData,
    settings: RegistrySettings,
) -> GateReport:
    probabilities = score(candidate, data)
    candidate_auc = float(roc_auc_score(outcomes(candidate, data), probabilities))
    checks = [
        Check(
            "auc_floor",
            candidate_auc >= settings.auc_floor,
            f"{candidate_auc:.4f}",
            f">= {settings.auc_floor:g}",
            "candidate ROC AUC on the evaluation data",
        )
    ]
    if incumbent is not None:
        checks.append(incumbent_check(candidate, candidate_auc, incumbent, data, settings))
    checks += quality_checks(candidate, settings)
    checks += calibration_checks(candidate, probabilities, data, settings)
    if incumbent is not None:
        checks.append(schema_check(candidate, incumbent))
    report = GateReport(
        model=candidate.name,
        candidate_version=candidate.version,
        incumbent_version=incumbent.version if incumbent else None,
        evaluation={"prepare_run_id": data.prepare_run_id, "sha256": data.sha256, "rows": len(data.frame)},
        checks=checks,
    )
    logger.info("gate for %s version %s: %s", candidate.name, candidate.version, report.verdict)
    return report
