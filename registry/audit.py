"""The audit trail of alias moves and promotion decisions: one MLflow run per record in the `registry-audit`
experiment.

MLflow keeps no history of alias moves. A move is written *before* it happens (outcome `pending`) and completed
afterwards (`moved` or `failed`), so a crash between the two still leaves a record: `audited_move` is the one place
that does this. Decisions that move nothing are recorded once each (`record`): refused (by the gate or a rule),
rejected (by a person), timed out (nobody answered the sign-off). `query` builds every filter on the trail.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from registry import gate
from registry.gate import GateReport
from registry.settings import RegistrySettings

logger = logging.getLogger(__name__)

PENDING, MOVED, FAILED = "pending", "moved", "failed"
REFUSED, REJECTED, TIMED_OUT = "refused", "rejected", "timed out"
UNPARKED = "unparked"


@dataclass(frozen=True)
class Entry:
    """What one record says, before it is written."""

    action: str  # "stage", "promote", "rollback" or "unpark"
    from_version: str | None
    to_version: str
    actor: str  # who acted: "user@host", or the DAG run ("airflow credit_promote/<run id>")
    reason: str = ""
    forced: bool = False
    report: GateReport | None = None
    approver: str = ""  # who answered the sign-off (Airflow user id), if there was one
    requested_by: str = ""  # the person behind the request (the user who triggered the DAG run), if known


@dataclass(frozen=True)
class AuditRecord:
    run_id: str
    at: str
    action: str
    model: str
    from_version: str | None
    to_version: str
    outcome: str
    actor: str
    reason: str
    forced: bool
    gate_verdict: str
    approver: str = ""
    requested_by: str = ""

    @property
    def parks(self) -> bool:
        """A decision against the version itself: a person rejected it or the gate refused it. Other refusals (a
        production change during the sign-off, the four-eyes rule, a replayed approval) and time-outs judged
        nothing about the version and park nothing."""
        if self.action != "promote":
            return False
        return self.outcome == REJECTED or (self.outcome == REFUSED and self.gate_verdict == gate.REFUSED)

    @property
    def unparks(self) -> bool:
        """Staging pointed at the version again, or someone asked to propose it again."""
        return (self.action == "stage" and self.outcome == MOVED) or self.action == "unpark"


def dag_run_actor(dag_id: str, run_id: str) -> str:
    """The audit trail's actor for an Airflow DAG run (the one format)."""
    return f"airflow {dag_id}/{run_id}"


def current_actor() -> str:
    """Who is acting: the Airflow DAG run when inside one, else user@host."""
    dag, run = os.environ.get("AIRFLOW_CTX_DAG_ID"), os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    if dag and run:
        return dag_run_actor(dag, run)
    return f"{current_user()}@{socket.gethostname()}"


def current_user() -> str:
    """The person behind the current request: inside an Airflow task, the user who triggered its DAG run ('' for a
    scheduled or Asset-triggered run); else the login name."""
    if os.environ.get("AIRFLOW_CTX_DAG_RUN_ID"):
        return _triggering_user()
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _triggering_user() -> str:
    try:
        from airflow.sdk import get_current_context

        return str(get_current_context()["dag_run"].triggering_user_name or "")
    except (ImportError, RuntimeError, KeyError, AttributeError):  # a subprocess of a task has no task context
        return ""


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, tags={"purpose": "audit trail of model registry alias moves"})


def record(client: MlflowClient, settings: RegistrySettings, entry: Entry, outcome: str) -> str:
    """Write one finished record (a decision, or `pending` through `audited_move`); returns its run id."""
    tags = {
        "action": entry.action,
        "model": settings.model_name,
        "from_version": entry.from_version or "",
        "to_version": entry.to_version,
        "outcome": outcome,
        "actor": entry.actor,
        "approver": entry.approver,
        "requested_by": entry.requested_by,
        "reason": entry.reason,
        "forced": str(entry.forced).lower(),
        "gate_verdict": entry.report.verdict if entry.report else "not run",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    run = client.create_run(
        _experiment_id(client, settings.audit_experiment),
        tags=tags,
        run_name=f"{entry.action} {settings.model_name} v{entry.from_version or '-'} -> v{entry.to_version}",
    )
    if entry.report is not None:
        client.log_text(run.info.run_id, entry.report.to_json(), "gate/report.json")
        client.log_text(run.info.run_id, entry.report.to_markdown(), "gate/report.md")
    if outcome != PENDING:
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    run_id: str = run.info.run_id
    return run_id


def audited_move(client: MlflowClient, settings: RegistrySettings, entry: Entry, move: Callable[[], None]) -> str:
    """Record `entry` as pending, run `move`, then mark the record moved (or failed, re-raising); returns its id."""
    run_id = record(client, settings, entry, PENDING)
    try:
        move()
    except BaseException:
        _finish(client, run_id, FAILED)
        raise
    _finish(client, run_id, MOVED)
    return run_id


def _finish(client: MlflowClient, run_id: str, outcome: str) -> None:
    client.set_tag(run_id, "outcome", outcome)
    status = RunStatus.FINISHED if outcome == MOVED else RunStatus.FAILED
    client.set_terminated(run_id, RunStatus.to_string(status))


def query(
    *,
    action: str | None = None,
    outcome: str | None = None,
    to_version: str | None = None,
    actor: str | None = None,
    approver: str | None = None,
) -> str:
    """The filter on the trail for these tags (exact matches), for `history`."""
    wanted = {"action": action, "outcome": outcome, "to_version": to_version, "actor": actor, "approver": approver}
    return " and ".join(f"tags.{key} = '{_quoted(value)}'" for key, value in wanted.items() if value is not None)


def _quoted(value: str) -> str:
    # MLflow's filter grammar has no escape for a quote inside a string: such a value cannot be searched for.
    if "'" in value:
        raise ValueError(f"cannot search the audit trail for a value with a quote: {value!r}")
    return value


def history(client: MlflowClient, settings: RegistrySettings, filter_string: str = "") -> list[AuditRecord]:
    """Records for the configured model, newest first (`filter_string`: from `query`)."""
    experiment = client.get_experiment_by_name(settings.audit_experiment)
    if experiment is None:
        return []
    model_filter = f"tags.model = '{_quoted(settings.model_name)}'"
    where = f"{model_filter} and {filter_string}" if filter_string else model_filter
    runs = client.search_runs([experiment.experiment_id], where, order_by=["attributes.start_time DESC"])
    return [
        AuditRecord(
            run_id=run.info.run_id,
            at=run.data.tags.get("at", ""),
            action=run.data.tags["action"],
            model=run.data.tags["model"],
            from_version=run.data.tags.get("from_version") or None,
            to_version=run.data.tags["to_version"],
            outcome=run.data.tags.get("outcome", ""),
            actor=run.data.tags.get("actor", ""),
            reason=run.data.tags.get("reason", ""),
            forced=run.data.tags.get("forced") == "true",
            gate_verdict=run.data.tags.get("gate_verdict", ""),
            approver=run.data.tags.get("approver", ""),
            requested_by=run.data.tags.get("requested_by", ""),
        )
        for run in runs
    ]


def parked_by(client: MlflowClient, settings: RegistrySettings, version: str) -> AuditRecord | None:
    """The decision that parks `version` (a rejection or a gate refusal since it was last staged or unparked), or
    None: a parked version is not proposed for promotion again until staging moves to it anew or someone asks."""
    for entry in history(client, settings, query(to_version=version)):
        if entry.unparks:
            return None
        if entry.parks:
            return entry
    return None


def version_before(client: MlflowClient, settings: RegistrySettings, version: str) -> str | None:
    """The production version that `version` replaced when it was last promoted (None: first deployment)."""
    records = history(client, settings, query(action="promote", outcome=MOVED, to_version=version))
    return records[0].from_version if records else None
