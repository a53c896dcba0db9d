"""credit_promote under dag.test() against the real tracking server: a refused gate and a rejected sign-off leave
production untouched and are recorded once; an approval (answered through Airflow's REST API) promotes exactly the
evaluated version with the approver in the audit trail; running a task again moves nothing.

The tests share the model credit_retrain made (staging, no production) and run in this order: refused, rejected,
approved (production is then version 1), then refused and rejected again with a production version present, and a
production that changes during the sign-off."""

from __future__ import annotations

import logging
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
from orchestration.settings import OrchestrationError
from registry import audit
from registry.promotion import stage
from registry.resolve import version_for_alias
from registry.settings import RegistrySettings
from tests.airflow.conftest import AnswerFactory, Retrained, asset_events, run_dag

pytestmark = pytest.mark.integration


def production_of(client: MlflowClient, name: str) -> str | None:
    version = version_for_alias(client, name, "production")
    return None if version is None else str(version.version)


def records(client: MlflowClient, name: str, outcome: str) -> list[audit.AuditRecord]:
    settings = RegistrySettings(tracking_uri=client.tracking_uri, model_name=name)
    return audit.history(client, settings, f"tags.action = 'promote' and tags.outcome = '{outcome}'")


def test_a_refused_gate_leaves_production_untouched_and_is_recorded_once(
    dag_bag: Any,
    retrained: Retrained,
    mlflow_server: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    before = production_of(client, name)
    monkeypatch.setenv("REGISTRY_AUC_FLOOR", "0.99")  # no model of this data reaches it
    caplog.set_level(logging.INFO)
    # Started as the staging event starts it: the model is the event's (the Param is left empty).
    (staged_event,) = asset_events("credit_staging_version", retrained.run_id)
    run_id, states = run_dag(dag_bag, "credit_promote", {"require_approval": False}, consumed_events=[staged_event])
    assert states["evaluate_gate"] == "success"
    assert "gate report:" in caplog.text and "auc_floor" in caplog.text  # the report is in evaluate_gate's log
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


LENIENT_GATE = {  # the int8 version 2 passes against the fp32 production version 1 (what is gated is not the point)
    "REGISTRY_AUC_TOLERANCE": "1",
    "REGISTRY_MAX_INT8_PARITY": "1",
    "REGISTRY_MIN_INT8_AGREEMENT": "0",
    "REGISTRY_LATENCY_BUDGET_MS": "10000",
}


@pytest.fixture
def second_candidate(retrained: Retrained, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Version 2 staged against production version 1 (promoted by the test before), with a lenient gate."""
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    assert production_of(client, name) == "1"
    for key, value in LENIENT_GATE.items():
        monkeypatch.setenv(key, value)
    stage("2", reason="tests", actor="tests", settings=registry_settings_for(name))
    return "2"


def test_with_production_present_a_refusal_and_a_rejection_leave_it_untouched(
    dag_bag: Any,
    retrained: Retrained,
    mlflow_server: str,
    second_candidate: str,
    answer_approval: AnswerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name

    with monkeypatch.context() as strict:
        strict.setenv("REGISTRY_AUC_FLOOR", "0.99")
        run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name, "require_approval": False})
    assert states["evaluate_gate"] == "success" and states["promote"] == "skipped"
    assert production_of(client, name) == "1"
    (refusal,) = [r for r in records(client, name, "refused") if r.actor == f"airflow credit_promote/{run_id}"]
    assert (refusal.from_version, refusal.to_version) == ("1", second_candidate)

    with answer_approval("Reject") as answerer:
        run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name})
    assert answerer.error is None and answerer.detail is not None
    assert states["promote"] == "skipped" and states["record_rejection"] == "success"
    assert production_of(client, name) == "1"
    # What the approver was shown: the version, the one it replaces, and the gate report.
    assert answerer.detail["subject"] == f"Promote {name} version 2 to production (replacing version 1)?"
    assert "auc_vs_incumbent" in answerer.detail["body"] and "parity" in answerer.detail["body"]
    actor = f"airflow credit_promote/{run_id} rejected by admin"
    (rejection,) = [r for r in records(client, name, "refused") if r.actor == actor]
    assert (rejection.from_version, rejection.to_version) == ("1", second_candidate)


def test_a_production_change_during_the_sign_off_refuses_the_move(
    retrained: Retrained, mlflow_server: str, second_candidate: str
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    settings = registry_settings_for(name)
    actor = dag_actor("credit_promote", "manual__race")
    decision = evaluate_staging(settings, actor)  # the approver is shown "version 2 replacing version 1"
    assert (decision.status, decision.version, decision.incumbent_version) == ("passed", "2", "1")
    # Meanwhile someone else changes production (here: takes version 1 out of it).
    client.delete_registered_model_alias(name, "production")

    with pytest.raises(OrchestrationError, match="production changed from 1 to none during the sign-off"):
        promote_evaluated(decision, "admin", actor, settings)
    assert production_of(client, name) is None  # nothing moved
    (refusal,) = [r for r in records(client, name, "refused") if r.actor == f"{actor} approved by admin"]
    assert "run credit_promote again" in refusal.reason and refusal.to_version == "2"


def test_a_mistyped_model_param_fails_instead_of_nothing_to_do(mlflow_server: str) -> None:
    settings = registry_settings_for("credit-no-such-model")
    with pytest.raises(OrchestrationError, match="Param registered_model: no registered model 'credit-no-such-model'"):
        evaluate_staging(settings, "tests", named_explicitly=True)
    assert evaluate_staging(settings, "tests").status == "nothing_to_do"  # not named by a Param: nothing to do
