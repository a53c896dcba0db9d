"""credit_promote under dag.test() against the real tracking server: a refused gate and a rejected sign-off leave
production untouched, are recorded once and park the version; an approval (answered through Airflow's REST API)
promotes exactly the evaluated version with the approver in the audit trail; running a task again moves nothing.
Four eyes: the sign-off is assigned to CREDIT_APPROVERS (Airflow refuses anyone else), the person who staged the
version cannot approve it, a time-out is recorded, and a forged or missing approver, an approval for a version no
longer staging or replayed for one in production are refused and recorded, production untouched.

The tests share the model credit_retrain made (staging, no production) and run in this order: refused, rejected,
approved (production is then version 1), the refused bad inputs, then refused and rejected again with a production
version present, a production that changes during the sign-off, and the four-eyes and time-out runs."""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from orchestration.promotion import (
    GateDecision,
    dag_actor,
    evaluate_staging,
    promote_evaluated,
    record_answer,
    registry_settings_for,
)
from orchestration.settings import ApprovalPolicy, OrchestrationError
from registry import audit
from registry.promotion import stage
from registry.resolve import version_for_alias
from registry.settings import RegistrySettings
from tests.airflow.conftest import ADMIN, APPROVER, AnswerFactory, Retrained, asset_events, run_dag

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
    settings = registry_settings_for(name)
    decision = evaluate_staging(settings, dag_actor("credit_promote", run_id), propose_parked=True)
    assert decision.status == "refused" and "auc_floor" in decision.message
    assert len([r for r in records(client, name, "refused") if r.actor == refusal.actor]) == 1
    # The refused version is parked: the next run proposes nothing and says why.
    parked = evaluate_staging(settings, dag_actor("credit_promote", "next"))
    assert parked.status == "nothing_to_do" and "is parked: refused by the gate" in parked.message


def test_a_rejected_sign_off_leaves_production_untouched_and_is_recorded_once(
    dag_bag: Any, retrained: Retrained, mlflow_server: str, answer_approval: AnswerFactory
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    before = production_of(client, name)
    with answer_approval("Reject") as answerer:
        run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name, "propose_parked": True})
    assert answerer.error is None and answerer.answered is not None and answerer.answered["run_id"] == run_id
    assert states["approval"] == "success" and states["promote"] == "skipped"
    assert states["record_answer"] == "success"
    assert production_of(client, name) == before
    actor = dag_actor("credit_promote", run_id)
    (rejection,) = [r for r in records(client, name, "rejected") if r.actor == actor]
    assert (rejection.reason, rejection.approver, rejection.gate_verdict) == ("rejected by admin", ADMIN, "passed")

    settings = registry_settings_for(name)
    decision = evaluate_staging(settings, actor, propose_parked=True)
    assert record_answer(decision, "rejected", "rejected by admin", actor, settings, approver=ADMIN) is False
    assert len([r for r in records(client, name, "rejected") if r.actor == actor]) == 1
    assert "is parked: rejected by admin" in evaluate_staging(settings, actor).message


def test_an_approved_version_is_promoted_with_its_approver_and_a_rerun_moves_nothing(
    dag_bag: Any, retrained: Retrained, mlflow_server: str, answer_approval: AnswerFactory
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    staged = client.get_model_version_by_alias(name, "staging").version
    with answer_approval("Approve") as answerer:
        run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name, "propose_parked": True})
    assert answerer.error is None and answerer.answered is not None
    assert states["promote"] == "success" and states["record_answer"] == "success"
    assert production_of(client, name) == staged
    actor = dag_actor("credit_promote", run_id)
    (move,) = [r for r in records(client, name, "moved") if r.actor == actor]
    assert (move.to_version, move.reason, move.approver) == (staged, "approved by admin", ADMIN)
    # Stage mirroring is on by default: tools reading the deprecated stages see the same Production.
    assert client.get_model_version(name, staged).current_stage == "Production"

    settings = registry_settings_for(name)
    decision = GateDecision(status="passed", model=name, message="", version=staged)
    result = promote_evaluated(decision, actor, settings, approved_by=ADMIN)
    assert result.action == "no-op"
    assert len(records(client, name, "moved")) == 1
    # With staging gone (graduated), a daily run has nothing to do.
    _, states = run_dag(dag_bag, "credit_promote", {"registered_model": name})
    assert states["evaluate_gate"] == "success" and states["promote"] == "skipped"


@pytest.mark.parametrize(
    ("version", "incumbent", "approved_by", "chosen", "problem"),
    [
        ("2", "1", "mallory", "Approve", "mallory is not one of the approvers (CREDIT_APPROVERS)"),
        ("2", "1", None, None, "no approver is recorded for the sign-off"),
        ("2", "1", ADMIN, "Reject", "the sign-off's answer is 'Reject' by admin, not 'Approve'"),
        ("2", "1", ADMIN, "Approve", "version 2 is no longer staging (staging: none)"),
        ("1", None, ADMIN, "Approve", "version 1 is in production already (an approval replayed?)"),
    ],
    ids=["forged approver", "missing approver", "rejected, promote cleared", "no longer staging", "replayed approval"],
)
def test_a_bad_sign_off_is_refused_recorded_and_moves_nothing(
    retrained: Retrained,
    mlflow_server: str,
    version: str,
    incumbent: str | None,
    approved_by: str | None,
    chosen: str | None,
    problem: str,
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    settings = registry_settings_for(name)
    assert production_of(client, name) == "1"  # promoted by the test before; staging is empty
    decision = GateDecision(status="passed", model=name, message="", version=version, incumbent_version=incumbent)
    actor = dag_actor("credit_promote", f"manual__bad-{version}-{approved_by}-{chosen}")
    with pytest.raises(OrchestrationError, match=re.escape(problem)):
        promote_evaluated(
            decision, actor, settings, approved_by=approved_by, chosen=chosen, policy=ApprovalPolicy(approvers=ADMIN)
        )
    assert production_of(client, name) == "1"
    (refusal,) = [r for r in records(client, name, "refused") if r.actor == actor]
    assert (refusal.reason, refusal.to_version, refusal.approver) == (problem, version, approved_by or "")


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
    stage("2", reason="tests", actor="tests", settings=registry_settings_for(name), requested_by="")
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
        run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name, "propose_parked": True})
    assert answerer.error is None and answerer.detail is not None
    assert states["promote"] == "skipped" and states["record_answer"] == "success"
    assert production_of(client, name) == "1"
    # What the approver was shown: the version, the one it replaces, and the gate report.
    assert answerer.detail["subject"] == f"Promote {name} version 2 to production (replacing version 1)?"
    assert "auc_vs_incumbent" in answerer.detail["body"] and "parity" in answerer.detail["body"]
    (rejection,) = [r for r in records(client, name, "rejected") if r.actor == dag_actor("credit_promote", run_id)]
    assert (rejection.from_version, rejection.to_version) == ("1", second_candidate)


def test_a_production_change_during_the_sign_off_refuses_the_move(
    retrained: Retrained, mlflow_server: str, second_candidate: str
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    settings = registry_settings_for(name)
    actor = dag_actor("credit_promote", "manual__race")
    # The approver is shown "version 2 replacing version 1" (rejected by the test before: asked for explicitly).
    decision = evaluate_staging(settings, actor, propose_parked=True)
    assert (decision.status, decision.version, decision.incumbent_version) == ("passed", "2", "1")
    # Meanwhile someone else changes production (here: takes version 1 out of it).
    client.delete_registered_model_alias(name, "production")

    with pytest.raises(OrchestrationError, match="production changed from 1 to none during the sign-off"):
        promote_evaluated(decision, actor, settings, approved_by=ADMIN)
    assert production_of(client, name) is None  # nothing moved
    (refusal,) = [r for r in records(client, name, "refused") if r.actor == actor]
    assert "run credit_promote again" in refusal.reason and (refusal.to_version, refusal.approver) == ("2", ADMIN)


def test_a_mistyped_model_param_fails_instead_of_nothing_to_do(mlflow_server: str) -> None:
    settings = registry_settings_for("credit-no-such-model")
    with pytest.raises(OrchestrationError, match="Param registered_model: no registered model 'credit-no-such-model'"):
        evaluate_staging(settings, "tests", named_explicitly=True)
    assert evaluate_staging(settings, "tests").status == "nothing_to_do"  # not named by a Param: nothing to do


def test_four_eyes_the_proposer_cannot_approve_and_the_sign_off_goes_to_the_approvers(
    dag_bag: Any,
    retrained: Retrained,
    mlflow_server: str,
    answer_approval: AnswerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    settings = registry_settings_for(name)
    for key, value in LENIENT_GATE.items():
        monkeypatch.setenv(key, value)
    client.set_registered_model_alias(name, "production", "1")  # the test before took it away
    client.delete_registered_model_alias(name, "staging")
    stage("2", reason="tests", actor="tests", settings=settings, requested_by=ADMIN)  # admin proposes version 2 anew

    # Without an allow-list anyone may answer in Airflow, but the proposer's approval is refused at the move.
    with answer_approval("Approve") as answerer:
        run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name})
    assert answerer.error is None and answerer.answered is not None
    assert (states["approval"], states["promote"], states["record_answer"]) == ("success", "failed", "success")
    assert production_of(client, name) == "1"
    (refusal,) = [r for r in records(client, name, "refused") if r.actor == dag_actor("credit_promote", run_id)]
    assert refusal.approver == ADMIN and refusal.reason.startswith("four eyes: admin asked for this promotion")
    assert refusal.requested_by == "dag_test" and refusal.to_version == "2"  # who dag.test() says triggered it

    # With CREDIT_APPROVERS the sign-off is assigned: Airflow refuses admin's answer and takes the approver's.
    monkeypatch.setenv("CREDIT_APPROVERS", f"{ADMIN},{APPROVER}")
    with answer_approval("Approve", users=(ADMIN, APPROVER)) as answerer:
        run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name})
    assert answerer.error is None and answerer.detail is not None
    assert answerer.attempts == [(ADMIN, 403), (APPROVER, 200)]
    assert [user["id"] for user in answerer.detail["assigned_users"]] == [APPROVER]  # the proposer is left out
    assert states["promote"] == "success"
    assert production_of(client, name) == "2"
    (move,) = [r for r in records(client, name, "moved") if r.actor == dag_actor("credit_promote", run_id)]
    assert (move.approver, move.reason, move.from_version) == (APPROVER, f"approved by {APPROVER}", "1")


def test_a_sign_off_that_times_out_is_recorded_and_moves_nothing(
    dag_bag: Any, retrained: Retrained, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's own sweep (check_awaiting_input_timeouts) fails the waiting approval once its deadline has
    passed; the deadline is moved into the past instead of waiting three days."""
    client = MlflowClient(mlflow_server)
    name = retrained.model_name
    for key, value in LENIENT_GATE.items():
        monkeypatch.setenv(key, value)
    stage("1", reason="tests", actor="tests", settings=registry_settings_for(name), requested_by="")
    production_before = production_of(client, name)
    finished = threading.Event()
    sweeper = threading.Thread(target=expire_the_approval, args=(finished,), daemon=True)
    sweeper.start()
    try:
        run_id, states = run_dag(dag_bag, "credit_promote", {"registered_model": name, "propose_parked": True})
    finally:
        finished.set()  # a sweeper left behind would time out a later test's approval
    sweeper.join(5)
    assert not sweeper.is_alive(), "the approval never waited for input"
    assert (states["approval"], states["promote"], states["record_answer"]) == ("failed", "upstream_failed", "success")
    assert production_of(client, name) == production_before
    (timeout,) = [r for r in records(client, name, "timed out") if r.actor == dag_actor("credit_promote", run_id)]
    assert timeout.to_version == "1" and timeout.reason == "no answer within 3 days"
    # Nobody decided anything about version 1: it is not parked, the next run proposes it again.
    decision = evaluate_staging(registry_settings_for(name), dag_actor("credit_promote", "next"))
    assert decision.status == "passed" and decision.version == "1"


def expire_the_approval(finished: threading.Event, deadline_s: float = 400.0) -> None:
    """Once the approval waits for input, move its deadline into the past and run the scheduler's time-out sweep.
    A failed attempt (SQLite busy while dag.test() writes) is tried again: dying here would leave the run waiting
    for its three-day deadline. Gives up when the run has `finished` or after `deadline_s` (within pytest's 600 s)."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up and not finished.is_set():
        try:
            with create_session() as session:
                waiting = session.scalars(
                    select(TaskInstance).where(
                        TaskInstance.dag_id == "credit_promote",
                        TaskInstance.task_id == "approval",
                        TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                    )
                ).all()
                for ti in waiting:
                    ti.trigger_timeout = datetime.now(UTC) - timedelta(seconds=1)
            if waiting:
                SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()
                return
        except Exception:  # logged and tried again until the deadline
            logging.getLogger(__name__).exception("expiring the approval failed; trying again")
        time.sleep(0.5)
