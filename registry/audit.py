"""The audit trail of alias moves: one MLflow run per move in the `registry-audit` experiment.

MLflow keeps no history of alias moves. Each move is written *before* it happens (outcome `pending`) and completed
afterwards (`moved` or `failed`), so a crash between the two still leaves a record. Refused gates are recorded too
(`refused`), although they move nothing.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from registry.gate import GateReport
from registry.settings import RegistrySettings

logger = logging.getLogger(__name__)


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


def dag_run_actor(dag_id: str, run_id: str) -> str:
    """The audit trail's actor for an Airflow DAG run (the one format: the DAGs append "approved by <user>")."""
    return f"airflow {dag_id}/{run_id}"


def current_actor() -> str:
    """Who is acting: the Airflow DAG run when inside one, else user@host."""
    dag, run = os.environ.get("AIRFLOW_CTX_DAG_ID"), os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    if dag and run:
        return dag_run_actor(dag, run)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, tags={"purpose": "audit trail of model registry alias moves"})


def start(
    client: MlflowClient,
    settings: RegistrySettings,
    action: str,
    from_version: str | None,
    to_version: str,
    actor: str,
    reason: str,
    forced: bool,
    report: GateReport | None,
    outcome: str = "pending",
) -> str:
    """Write the record of a move about to happen; returns its run id."""
    tags = {
        "action": action,
        "model": settings.model_name,
        "from_version": from_version or "",
        "to_version": to_version,
        "outcome": outcome,
        "actor": actor,
        "reason": reason,
        "forced": str(forced).lower(),
        "gate_verdict": report.verdict if report else "not run",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    run = client.create_run(
        _experiment_id(client, settings.audit_experiment),
        tags=tags,
        run_name=f"{action} {settings.model_name} v{from_version or '-'} -> v{to_version}",
    )
    if report is not None:
        client.log_text(run.info.run_id, report.to_json(), "gate/report.json")
        client.log_text(run.info.run_id, report.to_markdown(), "gate/report.md")
    if outcome != "pending":
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    run_id: str = run.info.run_id
    return run_id


def finish(client: MlflowClient, run_id: str, outcome: str) -> None:
    client.set_tag(run_id, "outcome", outcome)
    status = RunStatus.FINISHED if outcome == "moved" else RunStatus.FAILED
    client.set_terminated(run_id, RunStatus.to_string(status))


def history(client: MlflowClient, settings: RegistrySettings, filter_string: str = "") -> list[AuditRecord]:
    """Records for the configured model, newest first."""
    experiment = client.get_experiment_by_name(settings.audit_experiment)
    if experiment is None:
        return []
    query = f"tags.model = '{settings.model_name}'" + (f" and {filter_string}" if filter_string else "")
    runs = client.search_runs([experiment.experiment_id], query, order_by=["attributes.start_time DESC"])
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
        )
        for run in runs
    ]


def version_before(client: MlflowClient, settings: RegistrySettings, version: str) -> str | None:
    """The production version that `version` replaced when it was last promoted (None: first deployment)."""
    records = history(
        client, settings, f"tags.action = 'promote' and tags.outcome = 'moved' and tags.to_version = '{version}'"
    )
    return records[0].from_version if records else None
