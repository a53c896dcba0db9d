"""Every alias move: staging a candidate, promotion through the gate (or forced, with a reason), and rollback.

An alias is moved with one update, so a reader always finds a version behind it (reassigned, never deleted and
re-created). Every move is written to the audit trail before it happens, and so is every refusal by the gate or the
schema rule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from mlflow.tracking import MlflowClient

from registry import audit, gate
from registry.card import refresh_card
from registry.errors import RegistryError
from registry.resolve import ResolvedModel, get_version, load_version, require_model, version_for_alias
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS, remove_alias, set_alias
from scoring.schema import FeatureSchema

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MoveResult:
    action: str  # "promote", "stage", "rollback" or "no-op"
    model: str
    from_version: str | None
    to_version: str
    message: str
    report: gate.GateReport | None = None
    audit_run_id: str | None = None


class SchemaChangeError(RegistryError):
    """A version whose inputs differ from production's was refused (the gateway could not route rows to it)."""

    def __init__(self, model: str, differences: list[str], what: str):
        super().__init__(
            f"{what} takes other inputs than {model}'s production version ({', '.join(differences)}): register it "
            "under another registered model, or allow the schema change explicitly"
        )
        self.differences = differences


def production_schema(client: MlflowClient, settings: RegistrySettings) -> ResolvedModel | None:
    """The production version with its feature schema, or None when the model or its production alias is absent."""
    name = settings.model_name
    try:
        require_model(client, name)
    except RegistryError:
        return None
    current = version_for_alias(client, name, PRODUCTION_ALIAS)
    return None if current is None else load_version(client, name, current.version, settings)


def require_production_schema(
    client: MlflowClient, settings: RegistrySettings, schema: FeatureSchema, what: str, allow_change: bool = False
) -> None:
    """Refuse `schema` (of `what`, e.g. "version 5") if production takes other inputs, unless `allow_change`."""
    production = production_schema(client, settings)
    if production is None:
        return
    differences = schema.differences(production.feature_schema)
    if not differences:
        return
    if allow_change:
        logger.warning("%s takes other inputs than production (%s): allowed", what, ", ".join(differences))
        return
    raise SchemaChangeError(settings.model_name, differences, what)


def stage(
    version: str,
    reason: str = "",
    actor: str | None = None,
    allow_schema_change: bool = False,
    settings: RegistrySettings | None = None,
    requested_by: str | None = None,
) -> MoveResult:
    """Point `staging` at `version`: the candidate the gateway serves as variant B and the gate promotes next.

    Refused for the production version itself and, unless `allow_schema_change`, for a version whose inputs differ
    from production's (the gateway could route no row to it).
    """
    settings = settings or RegistrySettings()
    client = MlflowClient(settings.tracking_uri)
    name, actor = settings.model_name, actor or audit.current_actor()
    require_model(client, name)
    version = get_version(client, name, version).version
    production = version_for_alias(client, name, PRODUCTION_ALIAS)
    if production is not None and production.version == version:
        raise RegistryError(f"{name} version {version} is in production; staging holds the next candidate")
    previous = version_for_alias(client, name, STAGING_ALIAS)
    if previous is not None and previous.version == version:
        return MoveResult("no-op", name, version, version, f"{name} version {version} is already staged")
    schema = load_version(client, name, version, settings).feature_schema
    from_version = previous.version if previous else None
    requested_by = audit.current_user() if requested_by is None else requested_by
    entry = audit.Entry("stage", from_version, version, actor, reason, requested_by=requested_by)
    try:
        require_production_schema(client, settings, schema, f"version {version}", allow_schema_change)
    except SchemaChangeError as error:
        refusal = f"refused: other inputs than production ({', '.join(error.differences)})"
        why = f"{reason}; {refusal}" if reason else refusal
        audit.record(client, settings, replace(entry, reason=why), audit.REFUSED)
        raise
    audit_run_id = audit.audited_move(
        client, settings, entry, lambda: set_alias(client, name, STAGING_ALIAS, version, settings.mirror_stages)
    )
    message = f"{name} version {version} is now staged (previous: {from_version or 'none'})"
    logger.info(message)
    return MoveResult("stage", name, from_version, version, message, None, audit_run_id)


@dataclass(frozen=True)
class GateEvaluation:
    """The gate's verdict on a version against production, before anything moves.

    `report` is None when the version is already in production: there is nothing to evaluate.
    """

    model: str
    version: str
    incumbent_version: str | None
    report: gate.GateReport | None


def gate_report(version: str | None = None, settings: RegistrySettings | None = None) -> GateEvaluation:
    """The gate report of `version` (default: the `staging` version) against `production`; moves and records
    nothing (what the promotion DAG shows a reviewer before `promote` moves the alias)."""
    settings = settings or RegistrySettings()
    client = MlflowClient(settings.tracking_uri)
    require_model(client, settings.model_name)
    return _evaluate(client, settings, version)


def record_decision(
    settings: RegistrySettings,
    evaluation: GateEvaluation,
    outcome: str,
    actor: str,
    reason: str,
    approver: str = "",
    requested_by: str = "",
) -> str:
    """Record in the audit trail a promotion decision that moved nothing: refused (by the gate or a rule), rejected
    (by a person) or timed out (nobody answered)."""
    client = MlflowClient(settings.tracking_uri)
    entry = audit.Entry(
        "promote",
        evaluation.incumbent_version,
        evaluation.version,
        actor,
        reason,
        report=evaluation.report,
        approver=approver,
        requested_by=requested_by,
    )
    run_id = audit.record(client, settings, entry, outcome)
    refresh_card(client, settings, evaluation.version)  # the card lists the gate's verdicts
    return run_id


def describe_parking(record: audit.AuditRecord) -> str:
    """Why a version is parked, in words (the DAG's log, `registry parked`)."""
    how = (
        f"rejected by {record.approver or 'unknown user'}"
        if record.outcome == audit.REJECTED
        else "refused by the gate"
    )
    return (
        f"parked: {how} at {record.at} ({record.actor}); it is proposed again once staging moves to it anew, after "
        "`python -m registry unpark --version N --reason ...`, or by a run with the Param propose_parked"
    )


def unpark(version: str, reason: str, actor: str | None = None, settings: RegistrySettings | None = None) -> str:
    """Ask for a parked version (rejected, or refused by the gate) to be proposed for promotion again."""
    settings = settings or RegistrySettings()
    client = MlflowClient(settings.tracking_uri)
    name = settings.model_name
    require_model(client, name)
    version = get_version(client, name, version).version
    if not reason.strip():
        raise RegistryError("unparking a version needs a reason (--reason)")
    parked = audit.parked_by(client, settings, version)
    if parked is None:
        raise RegistryError(f"{name} version {version} is not parked")
    entry = audit.Entry(
        "unpark", None, version, actor or audit.current_actor(), reason, requested_by=audit.current_user()
    )
    return audit.record(client, settings, entry, audit.UNPARKED)


def staging_or(client: MlflowClient, name: str, version: str | None) -> str:
    """`version` checked to exist, or the staging version when None."""
    if version is None:
        staged = version_for_alias(client, name, STAGING_ALIAS)
        if staged is None:
            raise RegistryError(f"{name} has no alias {STAGING_ALIAS!r}: give the version to promote")
        return str(staged.version)
    return str(get_version(client, name, version).version)


def _evaluate(client: MlflowClient, settings: RegistrySettings, version: str | None) -> GateEvaluation:
    name = settings.model_name
    version = staging_or(client, name, version)
    incumbent_version = version_for_alias(client, name, PRODUCTION_ALIAS)
    if incumbent_version is not None and incumbent_version.version == version:
        return GateEvaluation(name, version, version, None)
    candidate = load_version(client, name, version, settings)
    incumbent = load_version(client, name, incumbent_version.version, settings) if incumbent_version else None
    evaluation = gate.newest_evaluation_data(
        client,
        list(client.search_model_versions(f"name = '{name}'")),
        gate.evaluation_columns(candidate, incumbent),
    )
    report = gate.evaluate(candidate, incumbent, evaluation, settings)
    return GateEvaluation(name, version, incumbent.version if incumbent else None, report)


def promote(
    version: str | None = None,
    force: bool = False,
    reason: str = "",
    actor: str | None = None,
    settings: RegistrySettings | None = None,
    approver: str = "",
    requested_by: str | None = None,
) -> MoveResult:
    """Promote `version` (default: the `staging` version) to `production` if the gate passes (or `force`).

    `approver` is who signed the promotion off (the DAG's sign-off), `requested_by` the person who asked (default:
    the user running this)."""
    settings = settings or RegistrySettings()
    client = MlflowClient(settings.tracking_uri)
    name = settings.model_name
    actor = actor or audit.current_actor()
    requested_by = audit.current_user() if requested_by is None else requested_by
    require_model(client, name)
    if force and not reason.strip():
        raise RegistryError("a forced promotion needs a reason (--reason)")
    evaluated = _evaluate(client, settings, version)
    version, previous, report = evaluated.version, evaluated.incumbent_version, evaluated.report
    if report is None:
        return MoveResult("no-op", name, version, version, f"{name} version {version} is already in production")
    report.forced, report.reason = force and not report.passed, reason or None
    if not report.passed and not force:
        record_decision(settings, evaluated, audit.REFUSED, actor, reason, approver, requested_by)
        raise gate.GateRefusedError(report)

    def move() -> None:
        set_alias(client, name, PRODUCTION_ALIAS, version, settings.mirror_stages)
        if _staging_is(client, name, version):
            # The candidate graduated: it is no longer a staging candidate.
            remove_alias(client, name, STAGING_ALIAS)

    entry = audit.Entry("promote", previous, version, actor, reason, report.forced, report, approver, requested_by)
    audit_run_id = audit.audited_move(client, settings, entry, move)
    _tag_move(client, settings, version, previous, actor, audit_run_id, report.verdict)
    refresh_card(client, settings, version)
    how = "forced past the gate" if report.forced else "gate passed"
    message = f"{name} version {version} is now in production ({how}; previous: {previous or 'none'})"
    logger.info(message)
    return MoveResult("promote", name, previous, version, message, report, audit_run_id)


def rollback(reason: str = "", actor: str | None = None, settings: RegistrySettings | None = None) -> MoveResult:
    """Move `production` back to the version it replaced when it was promoted."""
    settings = settings or RegistrySettings()
    client = MlflowClient(settings.tracking_uri)
    name = settings.model_name
    actor = actor or audit.current_actor()
    require_model(client, name)
    current = version_for_alias(client, name, PRODUCTION_ALIAS)
    if current is None:
        raise RegistryError(f"{name} has no {PRODUCTION_ALIAS!r} version to roll back")
    target = audit.version_before(client, settings, current.version)
    if target is None:
        raise RegistryError(f"nothing to roll back to: {name} version {current.version} was the first in production")
    get_version(client, name, target)  # the previous version may have been deleted since
    entry = audit.Entry(
        "rollback", current.version, target, actor, reason or "rollback", requested_by=audit.current_user()
    )
    audit_run_id = audit.audited_move(
        client, settings, entry, lambda: set_alias(client, name, PRODUCTION_ALIAS, target, settings.mirror_stages)
    )
    _tag_move(client, settings, target, current.version, actor, audit_run_id, "rollback")
    message = f"{name} production rolled back from version {current.version} to version {target}"
    logger.info(message)
    return MoveResult("rollback", name, current.version, target, message, None, audit_run_id)


def _staging_is(client: MlflowClient, name: str, version: str) -> bool:
    staged = version_for_alias(client, name, STAGING_ALIAS)
    return staged is not None and staged.version == version


def _tag_move(
    client: MlflowClient,
    settings: RegistrySettings,
    version: str,
    previous: str | None,
    actor: str,
    audit_run_id: str,
    verdict: str,
) -> None:
    at = datetime.now(UTC).isoformat(timespec="seconds")
    name = settings.model_name
    for key, value in {
        "production_since": at,
        "promoted_by": actor,
        "previous_production_version": previous or "",
        "gate_verdict": verdict,
        "audit_run_id": audit_run_id,
    }.items():
        client.set_model_version_tag(name, version, key, value)
    if previous:
        client.set_model_version_tag(name, previous, "archived_at", at)
