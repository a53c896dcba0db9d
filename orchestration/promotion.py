"""The promotion DAG's tasks: the gate on `staging` vs `production` (nothing moved), a rejected sign-off recorded
once, and the move of exactly the evaluated version, each safe to run again for the same DAG run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mlflow.tracking import MlflowClient

from orchestration.settings import OrchestrationError, OrchestrationSettings
from registry import audit
from registry.errors import RegistryError
from registry.gate import GateReport
from registry.promotion import GateEvaluation, MoveResult, gate_report, promote, record_refusal
from registry.resolve import version_for_alias
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS, model_exists

logger = logging.getLogger(__name__)

NOTHING_TO_DO, REFUSED, PASSED = "nothing_to_do", "refused", "passed"


@dataclass(frozen=True)
class GateDecision:
    """The gate's outcome as the DAG hands it from task to task (an XCom: plain values only)."""

    status: str  # NOTHING_TO_DO, REFUSED or PASSED
    model: str
    message: str
    version: str | None = None
    incumbent_version: str | None = None
    subject: str = ""
    markdown: str = ""
    report: dict[str, Any] | None = None

    def as_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> GateDecision:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})

    def evaluation(self) -> GateEvaluation:
        if self.version is None:
            raise RegistryError(f"no version was evaluated ({self.message})")
        report = GateReport.from_dict(self.report) if self.report else None
        return GateEvaluation(self.model, self.version, self.incumbent_version, report)


def dag_actor(dag_id: str, run_id: str) -> str:
    """The audit trail's actor for a DAG run (the approver is appended when there is one)."""
    return audit.dag_run_actor(dag_id, run_id)


def _refused_before(settings: RegistrySettings, version: str, actor: str) -> bool:
    client = MlflowClient(settings.tracking_uri)
    records = audit.history(
        client,
        settings,
        f"tags.action = 'promote' and tags.outcome = 'refused' and tags.to_version = '{version}' "
        f"and tags.actor = '{actor}'",
    )
    return bool(records)


def _promoted_by(settings: RegistrySettings, version: str, dag_run_actor: str) -> bool:
    """Whether this DAG run (with or without an approver after its name) moved `version` to production."""
    client = MlflowClient(settings.tracking_uri)
    records = audit.history(
        client,
        settings,
        f"tags.action = 'promote' and tags.outcome = 'moved' and tags.to_version = '{version}' "
        f"and tags.actor LIKE '{dag_run_actor}%'",
    )
    return any(r.actor == dag_run_actor or r.actor.startswith(f"{dag_run_actor} ") for r in records)


def evaluate_staging(settings: RegistrySettings, actor: str, named_explicitly: bool = False) -> GateDecision:
    """The gate report of the staging version against production, moving nothing.

    Nothing to do when the model (unless `named_explicitly` by a Param: then an error) or its staging version is
    absent, or staging is production already. A refusal is recorded in the audit trail (once per DAG run: `actor`
    names it), as `registry promote` records one.
    """
    client = MlflowClient(settings.tracking_uri)
    name = settings.model_name
    if not model_exists(client, name):
        if named_explicitly:  # a mistyped Param must not look like a green "nothing to do"
            raise OrchestrationError(f"Param registered_model: no registered model {name!r} on this tracking server")
        return GateDecision(NOTHING_TO_DO, name, f"nothing to do: {name} is not registered yet")
    staged = version_for_alias(client, name, STAGING_ALIAS)
    if staged is None:
        return GateDecision(NOTHING_TO_DO, name, f"nothing to do: {name} has no {STAGING_ALIAS} version")
    evaluation = gate_report(str(staged.version), settings)
    version, incumbent, report = evaluation.version, evaluation.incumbent_version, evaluation.report
    if report is None:
        return GateDecision(NOTHING_TO_DO, name, f"nothing to do: {name} version {version} is already in production")
    replacing = f"replacing version {incumbent}" if incumbent else "first deployment"
    subject = f"Promote {name} version {version} to production ({replacing})?"
    common: dict[str, Any] = {
        "model": name,
        "version": version,
        "incumbent_version": incumbent,
        "subject": subject,
        "markdown": report.to_markdown(),
        "report": report.to_dict(),
    }
    if report.passed:
        return GateDecision(PASSED, message=f"the gate passed {name} version {version} ({replacing})", **common)
    failed = ", ".join(f"{check.name} ({check.detail})" for check in report.failed_checks)
    if _refused_before(settings, version, actor):
        logger.info("the refusal of version %s is in the audit trail already (an earlier attempt)", version)
    else:
        record_refusal(settings, evaluation, actor, "", report)
    return GateDecision(REFUSED, message=f"the gate refused {name} version {version}: {failed}", **common)


def approver_of(answer: Mapping[str, Any] | None) -> str | None:
    """Who answered an approval (the HITL answer's `responded_by_user`: id and name), None without an answer."""
    if not answer:
        return None
    user = answer.get("responded_by_user") or {}
    name = (user.get("name") or user.get("id")) if isinstance(user, Mapping) else user
    return str(name) if name else "unknown user"


def chosen_option(answer: Mapping[str, Any] | None) -> str | None:
    options = (answer or {}).get("chosen_options") or []
    return str(options[0]) if options else None


def record_rejection(decision: GateDecision, rejected_by: str, dag_run_actor: str, settings: RegistrySettings) -> bool:
    """Record a rejected sign-off in the audit trail as a refusal, once per DAG run; production is not touched.

    Returns whether a record was written (False: an earlier attempt wrote it).
    """
    actor = f"{dag_run_actor} rejected by {rejected_by}"
    evaluation = decision.evaluation()
    if _refused_before(settings, evaluation.version, actor):
        logger.info("the rejection of version %s is in the audit trail already", evaluation.version)
        return False
    record_refusal(settings, evaluation, actor, f"rejected by {rejected_by}", evaluation.report)
    logger.info("%s version %s: promotion rejected by %s", decision.model, evaluation.version, rejected_by)
    return True


def promote_evaluated(
    decision: GateDecision, approved_by: str | None, dag_run_actor: str, settings: RegistrySettings
) -> MoveResult:
    """Promote exactly the version the gate evaluated, over exactly the production version it was evaluated against.

    If production changed while the sign-off was pending, nothing moves: the refusal is recorded and the task fails
    (the person approved "N replacing M", not "N replacing K"). The gate runs again at the move. Run again for the
    same DAG run, it moves nothing."""
    evaluation = decision.evaluation()
    version = evaluation.version
    if _promoted_by(settings, version, dag_run_actor):
        message = f"{decision.model} version {version} was promoted by this DAG run already"
        logger.info(message)
        return MoveResult("no-op", decision.model, version, version, message)
    actor = f"{dag_run_actor} approved by {approved_by}" if approved_by else dag_run_actor
    current = _production_now(settings)
    if current != evaluation.incumbent_version:
        # The approver signed off "version N replacing M"; replacing another version is not what was approved.
        reason = (
            f"production changed from {evaluation.incumbent_version or 'none'} to {current or 'none'} during the "
            "sign-off: run credit_promote again"
        )
        if not _refused_before(settings, version, actor):
            record_refusal(settings, evaluation, actor, reason, evaluation.report)
        raise OrchestrationError(f"{decision.model} version {version} was not promoted: {reason}")
    reason = f"approved by {approved_by}" if approved_by else "scheduled promotion (no sign-off required)"
    return promote(version=version, reason=reason, actor=actor, settings=settings)


def _production_now(settings: RegistrySettings) -> str | None:
    current = version_for_alias(MlflowClient(settings.tracking_uri), settings.model_name, PRODUCTION_ALIAS)
    return None if current is None else str(current.version)


def registry_settings_for(registered_model: str = "", mirror_stages: bool = True) -> RegistrySettings:
    """The registry's settings for a DAG run: the tracking server resolved now, the Params' model and mirroring, the
    gate's thresholds from the environment (`REGISTRY_*`)."""
    base = OrchestrationSettings()
    return RegistrySettings.of(base).model_copy(
        update={
            "tracking_uri": base.resolved_tracking_uri(),
            "model_name": registered_model or base.model_name,
            "mirror_stages": mirror_stages,
        }
    )
