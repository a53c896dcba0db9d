"""The promotion gate: re-score candidate and incumbent on the same held-out data and check recorded quality.

Checks (thresholds in `RegistrySettings`): `auc_floor` (always), `auc_vs_incumbent` (with an incumbent), `parity`
(fp32: |Δp| vs sklearn; INT8: |Δp| vs its fp32 source), `int8_agreement` (INT8 only), `latency` (single-row p99 from
the benchmark), `schema` (same ONNX inputs as the incumbent).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from registry.errors import RegistryError
from registry.resolve import ResolvedModel
from registry.settings import RegistrySettings
from scoring.onnx_runtime import inference_session, onnx_inputs, predict_default_probability

logger = logging.getLogger(__name__)

TEST_SPLIT_ARTIFACT = "splits/test.parquet"


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
            return "passed"
        return "forced" if self.forced else "refused"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed, "verdict": self.verdict}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        incumbent = f"version {self.incumbent_version}" if self.incumbent_version else "none (first deployment)"
        lines = [
            f"# Promotion gate: {self.model} version {self.candidate_version}",
            "",
            f"- verdict: **{self.verdict}**" + (f" (reason: {self.reason})" if self.reason else ""),
            f"- incumbent: {incumbent}",
            f"- evaluation data: `{TEST_SPLIT_ARTIFACT}` of prepare run `{self.evaluation['prepare_run_id']}`, "
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


def newest_evaluation_data(
    client: MlflowClient, versions: list[ModelVersion], required_columns: set[str]
) -> EvaluationData:
    """The test split of the newest prepare run (of any registered version) that has every required column.

    Candidate and incumbent are scored on the same rows; a split without a column one of them needs is skipped.
    """
    prepare_run_ids = {v.tags["prepare_run_id"] for v in versions if v.tags.get("prepare_run_id")}
    if not prepare_run_ids:
        raise RegistryError("no registered version records a prepare_run_id: no held-out data to evaluate on")
    runs = sorted((client.get_run(run_id) for run_id in prepare_run_ids), key=lambda r: r.info.start_time)
    for run in reversed(runs):
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path=TEST_SPLIT_ARTIFACT, tracking_uri=client.tracking_uri
            )
        )
        frame = pd.read_parquet(local)
        if required_columns <= set(frame.columns):
            digest = run.data.tags.get("split_sha256_test") or hashlib.sha256(local.read_bytes()).hexdigest()
            return EvaluationData(frame=frame, prepare_run_id=run.info.run_id, sha256=digest)
    raise RegistryError(
        f"no held-out split known to the registry has all of the columns {', '.join(sorted(required_columns))}"
    )


def required_columns(*models: ResolvedModel | None) -> set[str]:
    return {
        column
        for model in models
        if model is not None
        for column in [*model.feature_schema.features, model.feature_schema.target]
    }


def score_auc(model: ResolvedModel, data: EvaluationData) -> float:
    schema = model.feature_schema
    missing = [name for name in [*schema.features, schema.target] if name not in data.frame.columns]
    if missing:
        raise RegistryError(
            f"version {model.version} needs column(s) {', '.join(missing)} absent from the evaluation data"
        )
    probabilities = predict_default_probability(inference_session(model.onnx_path), onnx_inputs(data.frame, schema))
    return float(roc_auc_score(data.frame[schema.target].to_numpy(dtype=np.int64), probabilities))


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
            _at_most("parity", _recorded(candidate, "parity_max_abs_diff"), settings.max_int8_parity, "INT8 vs fp32"),
        ]
        agreement = _recorded(candidate, "decision_agreement")
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
        checks = [
            _at_most("parity", _recorded(candidate, "parity_max_abs_diff"), settings.max_fp32_parity, "ONNX vs sklearn")
        ]
    checks.append(
        _at_most(
            "latency",
            _recorded(candidate, "latency_p99_ms_single_row"),
            settings.latency_budget_ms,
            "single-row p99 ms",
        )
    )
    return checks


def schema_check(candidate: ResolvedModel, incumbent: ResolvedModel) -> Check:
    if candidate.input_signature == incumbent.input_signature:
        return Check("schema", True, f"{len(candidate.input_signature)} inputs", "same as incumbent", "identical")
    ours, theirs = dict(candidate.input_signature), dict(incumbent.input_signature)
    differences = [f"-{n}" for n in theirs if n not in ours] + [f"+{n}" for n in ours if n not in theirs]
    differences += [f"{n}: {theirs[n]}->{ours[n]}" for n in ours if n in theirs and ours[n] != theirs[n]]
    if not differences:
        differences = ["same inputs in another order"]
    return Check("schema", False, f"{len(ours)} inputs", "same as incumbent", "; ".join(differences))


def evaluate(
    candidate: ResolvedModel,
    incumbent: ResolvedModel | None,
    data: EvaluationData,
    settings: RegistrySettings,
) -> GateReport:
    candidate_auc = score_auc(candidate, data)
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
        try:
            incumbent_auc = score_auc(incumbent, data)
            checks.append(
                Check(
                    "auc_vs_incumbent",
                    candidate_auc >= incumbent_auc - settings.auc_tolerance,
                    f"{candidate_auc:.4f} vs {incumbent_auc:.4f}",
                    f">= incumbent - {settings.auc_tolerance:g}",
                    f"delta {candidate_auc - incumbent_auc:+.4f}",
                )
            )
        except RegistryError as error:
            checks.append(Check("auc_vs_incumbent", False, "n/a", "comparable", str(error)))
    checks += quality_checks(candidate, settings)
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
