"""The promotion DAG's tasks: the gate on `staging` vs `production` (nothing moved; a parked version is not proposed),
who may answer the sign-off, a rejected or timed-out sign-off recorded once, and the move of exactly the evaluated
version after the sign-off is checked again (four eyes, the allow-list, staging and production unchanged), each safe to
run again for the same DAG run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from mlflow.tracking import MlflowClient

from orchestration.settings import ApprovalPolicy, OrchestrationError, OrchestrationSettings
from registry import audit
from registry.errors import RegistryError
from registry.gate import GateReport
from registry.promotion import GateEvaluation, MoveResult, describe_parking, gate_report, promote, record_decision
from registry.resolve import version_for_alias
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS, model_exists

logger = logging.getLogger(__name__)

NOTHING_TO_DO, REFUSED, PASSED = "nothing_to_do", "refused", "passed"
# ApprovalOperator's options (Airflow is not imported here; tests/airflow checks they agree).
APPROVE, REJECT = "Approve", "Reject"


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
    """The audit trail's actor for a DAG run (the approver has a tag of its own)."""
    return audit.dag_run_actor(dag_id, run_id)


def _recorded_before(settings: RegistrySettings, version: str, actor: str, outcome: str) -> bool:
    """Whether this DAG run (`actor`) recorded this decision on `version` already (a retried or cleared task)."""
    client = MlflowClient(settings.tracking_uri)
    return bool(
        audit.history(client, settings, audit.query(action="promote", outcome=outcome, to_version=version, actor=actor))
    )


def _promoted_by(settings: RegistrySettings, version: str, dag_run_actor: str) -> bool:
    """Whether this DAG run moved `version` to production."""
    return _recorded_before(settings, version, dag_run_actor, audit.MOVED)


def evaluate_staging(
    settings: RegistrySettings,
    actor: str,
    named_explicitly: bool = False,
    propose_parked: bool = False,
    requested_by: str = "",
) -> GateDecision:
    """The gate report of the staging version against production, moving nothing.

    Nothing to do when the model (unless `named_explicitly` by a Param: then an error) or its staging version is
    absent, staging is production already, or the staging version is parked (rejected, or refused by the gate,
    since it was staged) unless `propose_parked`. A refusal is recorded in the audit trail (once per DAG run: `actor`
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
    parked = None if propose_parked else audit.parked_by(client, settings, str(staged.version))
    if parked is not None:
        return GateDecision(
            NOTHING_TO_DO, name, f"nothing to do: {name} version {staged.version} is {describe_parking(parked)}"
        )
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
    if _recorded_before(settings, version, actor, audit.REFUSED):
        logger.info("the refusal of version %s is in the audit trail already (an earlier attempt)", version)
    else:
        record_decision(settings, evaluation, audit.REFUSED, actor, "", requested_by=requested_by)
    return GateDecision(REFUSED, message=f"the gate refused {name} version {version}: {failed}", **common)


def approver_of(answer: Mapping[str, Any] | None) -> str | None:
    """Who answered an approval (the HITL answer's `responded_by_user` id), None without one."""
    if not answer:
        return None
    user = answer.get("responded_by_user") or {}
    name = (user.get("id") or user.get("name")) if isinstance(user, Mapping) else user
    return str(name) if name else None


def chosen_option(answer: Mapping[str, Any] | None) -> str | None:
    options = (answer or {}).get("chosen_options") or []
    return str(options[0]) if options else None


def askers(settings: RegistrySettings, version: str, requested_by: str) -> set[str]:
    """Who asked for this promotion, and so may not sign it off under four eyes: `requested_by` (the user who
    triggered the DAG run) and the person who last staged `version` (either unknown: left out)."""
    client = MlflowClient(settings.tracking_uri)
    staged = audit.history(client, settings, audit.query(action="stage", outcome=audit.MOVED, to_version=version))
    proposer = staged[0].requested_by if staged else ""
    return {user for user in (requested_by, proposer) if user}


def unmoved_outcome(answer: Mapping[str, Any] | None, timeout: timedelta) -> tuple[str, str, str] | None:
    """The audit outcome, reason and approver of a sign-off that moved nothing (a time-out, a refused assignment, a
    "Reject"), or None: no sign-off, or an approval (`promote` records the move or its refusal)."""
    if not answer:
        return None
    if answer.get("timed_out"):
        return audit.TIMED_OUT, f"no answer within {timeout / timedelta(days=1):g} days", ""
    if answer.get("refused"):
        return audit.REFUSED, str(answer["refused"]), ""
    if chosen_option(answer) == REJECT:
        approver = approver_of(answer) or ""
        return audit.REJECTED, f"rejected by {approver or 'unknown user'}", approver
    return None


def assigned_approvers(policy: ApprovalPolicy, excluded: set[str]) -> list[str] | None:
    """The users the sign-off is assigned to (Airflow then takes no one else's answer): the allow-list without the
    excluded users (the requester and proposer, under four eyes); None without an allow-list (anyone may answer;
    the promote task still applies four eyes). An allow-list that leaves nobody is an error."""
    if not policy.allowed:
        return None
    eligible = sorted(policy.allowed - excluded) if policy.four_eyes else sorted(policy.allowed)
    if not eligible:
        raise OrchestrationError(
            f"nobody may answer this sign-off: CREDIT_APPROVERS ({', '.join(sorted(policy.allowed))}) holds only the "
            f"user(s) who asked for it ({', '.join(sorted(excluded))}) and four eyes are required"
        )
    return eligible


def sign_off_policy(require_approval: bool, policy: ApprovalPolicy) -> ApprovalPolicy | None:
    """The policy `promote` checks the sign-off against, or None when no sign-off is needed: only when the Param
    `require_approval` is off and neither four eyes nor an allow-list is configured."""
    return policy if require_approval or policy.four_eyes or policy.allowed else None


def sign_off_problem(
    policy: ApprovalPolicy, approver: str | None, excluded: set[str], chosen: str | None = APPROVE
) -> str | None:
    """Why a sign-off does not authorise the move (None: it does). `approver` is who answered and `chosen` what,
    `excluded` the requester and the proposer."""
    if not approver:
        return "no approver is recorded for the sign-off"
    if chosen != APPROVE:
        return f"the sign-off's answer is {chosen!r} by {approver}, not {APPROVE!r}"
    if policy.allowed and approver not in policy.allowed:
        return f"{approver} is not one of the approvers (CREDIT_APPROVERS)"
    if policy.four_eyes and approver in excluded:
        return f"four eyes: {approver} asked for this promotion (triggered the run or staged the version)"
    return None


def record_answer(
    decision: GateDecision,
    outcome: str,
    reason: str,
    dag_run_actor: str,
    settings: RegistrySettings,
    approver: str = "",
    requested_by: str = "",
) -> bool:
    """Record a sign-off that moved nothing (rejected, timed out, or refused) in the audit trail, once per DAG run;
    production is not touched. Returns whether a record was written (False: an earlier attempt wrote it)."""
    evaluation = decision.evaluation()
    if _recorded_before(settings, evaluation.version, dag_run_actor, outcome):
        logger.info("the %s sign-off of version %s is in the audit trail already", outcome, evaluation.version)
        return False
    record_decision(settings, evaluation, outcome, dag_run_actor, reason, approver, requested_by)
    logger.info("%s version %s: promotion %s (%s)", decision.model, evaluation.version, outcome, reason)
    return True


def promote_evaluated(
    decision: GateDecision,
    dag_run_actor: str,
    settings: RegistrySettings,
    *,
    approved_by: str | None = None,
    chosen: str | None = APPROVE,
    requested_by: str = "",
    policy: ApprovalPolicy | None = None,
) -> MoveResult:
    """Promote exactly the version the gate evaluated, over exactly the production version it was evaluated against.

    With a `policy`, the sign-off is checked again here (a bypass of Airflow's UI is refused too): an approver must
    be recorded, have chosen "Approve" (a cleared `promote` after a "Reject" is refused), be on the allow-list (when
    there is one) and, under four eyes, be neither `requested_by`
    nor the version's proposer. The version must still be staging, production must still be what the approver saw,
    and a version in production already (an approval replayed) is not moved again. Each refusal is recorded and the
    task fails; nothing moves. The gate runs again at the move. Run again for the same DAG run, it moves nothing."""
    evaluation = decision.evaluation()
    version = evaluation.version
    if _promoted_by(settings, version, dag_run_actor):
        message = f"{decision.model} version {version} was promoted by this DAG run already"
        logger.info(message)
        return MoveResult("no-op", decision.model, version, version, message)
    problem = _move_problem(settings, evaluation, approved_by, chosen, requested_by, policy)
    if problem is not None:
        record_answer(decision, audit.REFUSED, problem, dag_run_actor, settings, approved_by or "", requested_by)
        raise OrchestrationError(f"{decision.model} version {version} was not promoted: {problem}")
    reason = f"approved by {approved_by}" if approved_by else "scheduled promotion (no sign-off required)"
    return promote(
        version=version,
        reason=reason,
        actor=dag_run_actor,
        settings=settings,
        approver=approved_by or "",
        requested_by=requested_by,
    )


def _move_problem(
    settings: RegistrySettings,
    evaluation: GateEvaluation,
    approved_by: str | None,
    chosen: str | None,
    requested_by: str,
    policy: ApprovalPolicy | None,
) -> str | None:
    version = evaluation.version
    if policy is not None:
        problem = sign_off_problem(policy, approved_by, askers(settings, version, requested_by), chosen)
        if problem is not None:
            return problem
    current = _production_now(settings)
    if current == version:
        return f"version {version} is in production already (an approval replayed?)"
    if current != evaluation.incumbent_version:
        # The approver signed off "version N replacing M"; replacing another version is not what was approved.
        return (
            f"production changed from {evaluation.incumbent_version or 'none'} to {current or 'none'} during the "
            "sign-off: run credit_promote again"
        )
    staged = version_for_alias(MlflowClient(settings.tracking_uri), settings.model_name, STAGING_ALIAS)
    if staged is None or str(staged.version) != version:
        return f"version {version} is no longer staging (staging: {staged.version if staged else 'none'})"
    return None


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
