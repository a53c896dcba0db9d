"""credit_promote under dag.test() against the real tracking server: a refused gate and a rejected sign-off leave
production untouched and are recorded once; an approval (answered through Airflow's REST API) promotes exactly the
evaluated version with the approver in the audit trail; running a task again moves nothing.

The tests share the model credit_retrain made (staging, no production) and run in this order: refused, rejected,
approved (the last one changes production)."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from orchestration.promotion import (
    GateDecision,
    dag_actor,
    evaluate_staging,
    promote_evaluated,
    record_rejection,
    registry_settings_for,
)
from registry import audit
from registry.resolve import version_for_alias
from registry.settings import RegistrySettings
from tests.airflow.conftest import AnswerFactory, Retrained, run_dag

pytestmark = pytest.mark.integration


def production_of(client: MlflowClient, name: str) -> str | None:
    version = version_for_alias(client, name, "production")
    return None if version is None else str(version.version)


def records(client: MlflowClient, name: str, outcome: str) -> list[audit.AuditRecord]:
    settings = RegistrySettings(tracking_uri=client.tracking_uri, model_name=name)
    return audit.history(client, settings, f"tags.action = 'promote' and tags.outcome = '{outcome}'")


def test_a_refused_gate_leaves_production_untouched_and_is_recorded_once(
    dag_bag: Any, retrained: Retrained, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    before = production_of(client, name)
    monkeypatch.setenv("REGISTRY_AUC_FLOOR", "0.99")  # no model of this data reaches it
    run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name, "require_approval": False})
    assert states["evaluate_gate"] == "success"
    assert {states[t] for t in ("approval", "no_approval_required", "promote")} == {"skipped"}
    assert production_of(client, name) == before
    (refusal,) = [r for r in records(client, name, "refused") if r.actor == f"airflow credit_promote/{run_id}"]
    assert refusal.gate_verdict == "refused" and refusal.to_version == "1"

    # The same task run again (a retry, a cleared task) records nothing more.
    decision = evaluate_staging(registry_settings_for(name), dag_actor("credit_promote", run_id))
    assert decision.status == "refused" and "auc_floor" in decision.message
    assert len([r for r in records(client, name, "refused") if r.actor == refusal.actor]) == 1


def test_a_rejected_sign_off_leaves_production_untouched_and_is_recorded_once(
    dag_bag: Any, retrained: Retrained, mlflow_server: str, answer_approval: AnswerFactory
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    before = production_of(client, name)
    with answer_approval("Reject") as answerer:
        run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name})
    assert answerer.error is None and answerer.answered is not None and answerer.answered["run_id"] == run_id
    assert states["approval"] == "success" and states["promote"] == "skipped"
    assert states["record_rejection"] == "success"
    assert production_of(client, name) == before
    actor = f"airflow credit_promote/{run_id} rejected by admin"
    (rejection,) = [r for r in records(client, name, "refused") if r.actor == actor]
    assert rejection.reason == "rejected by admin" and rejection.gate_verdict == "passed"

    settings = registry_settings_for(name)
    decision = evaluate_staging(settings, dag_actor("credit_promote", run_id))
    assert record_rejection(decision, "admin", dag_actor("credit_promote", run_id), settings) is False
    assert len([r for r in records(client, name, "refused") if r.actor == actor]) == 1


def test_an_approved_version_is_promoted_with_its_approver_and_a_rerun_moves_nothing(
    dag_bag: Any, retrained: Retrained, mlflow_server: str, answer_approval: AnswerFactory
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    staged = client.get_model_version_by_alias(name, "staging").version
    with answer_approval("Approve") as answerer:
        run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name})
    assert answerer.error is None and answerer.answered is not None
    assert states["promote"] == "success" and states["record_rejection"] == "skipped"
    assert production_of(client, name) == staged
    actor = f"airflow credit_promote/{run_id} approved by admin"
    (move,) = [r for r in records(client, name, "moved") if r.actor == actor]
    assert move.to_version == staged and move.reason == "approved by admin"
    # Stage mirroring is on by default: tools reading the deprecated stages see the same Production.
    assert client.get_model_version(name, staged).current_stage == "Production"

    settings = registry_settings_for(name)
    decision = GateDecision(status="passed", model=name, message="", version=staged)
    result = promote_evaluated(decision, "admin", dag_actor("credit_promote", run_id), settings)
    assert result.action == "no-op"
    assert len(records(client, name, "moved")) == 1
    # With staging gone (graduated), a daily run has nothing to do.
    _, states = run_dag(dag_bag, "credit_promote", {"registered_model": name})
    assert states["evaluate_gate"] == "success" and states["promote"] == "skipped"
