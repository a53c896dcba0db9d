"""credit_promote: the registry gate on `staging` vs `production`, a human sign-off, then the move.

Daily, and whenever credit_retrain emits a `credit_staging_version` Asset event. `evaluate_gate` moves nothing: it
logs the gate report and ends the run when there is nothing to do, the staging version is parked (rejected, or
refused by the gate, since it was staged; the Param `propose_parked` asks again), or the gate refuses (the refusal is
in the audit trail). With `require_approval` on, an ApprovalOperator shows the report and waits (3 days at most),
assigned to the approvers of `CREDIT_APPROVERS` other than whoever asked (four eyes, `CREDIT_FOUR_EYES`). `promote`
checks the sign-off again and moves exactly the version that was evaluated; "Reject", a time-out or a refused
sign-off moves nothing and `record_answer` writes it to the audit trail once. docs/airflow.md has who may do what.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task

from orchestration.dag_policy import (
    APPROVAL_TIMEOUT,
    PROMOTE_CRON,
    PROMOTE_DAG_ID,
    STAGING_VERSION_ASSET,
    network_retries,
)

if TYPE_CHECKING:  # for the annotation only: nothing of the registry is imported when the file is parsed
    from registry.settings import RegistrySettings

STAGING_VERSION = Asset(STAGING_VERSION_ASSET)
GATE_TASK = "evaluate_gate"
APPROVAL_TASK = "approval"
ANSWER_KEY = "answer"
logger = logging.getLogger(__name__)


def _announced() -> list[dict[str, Any]]:
    """The extras of the `credit_staging_version` events that started this run (none for a daily or manual run)."""
    from orchestration.events import event_extras

    return event_extras(get_current_context().get("triggering_asset_events"), STAGING_VERSION_ASSET)


def _settings() -> RegistrySettings:
    from orchestration.events import model_of
    from orchestration.promotion import registry_settings_for

    params = get_current_context()["params"]
    # Started by a new staging version with the Param empty: the model the event is about.
    model = model_of(str(params["registered_model"]), _announced())
    return registry_settings_for(model, bool(params["mirror_stages"]))


def _actor() -> str:
    from orchestration.promotion import dag_actor

    ti = get_current_context()["ti"]
    return dag_actor(ti.dag_id, ti.run_id)


def _requested_by() -> str:
    """The user who triggered this DAG run ('' for a scheduled or Asset-triggered run)."""
    from registry.audit import current_user

    return current_user()


class RecordedApproval(ApprovalOperator):
    """The standard ApprovalOperator, assigned to the eligible approvers when it runs, that keeps the answer (option
    and who chose it, as Airflow hands it back) or the time-out in the XCom `answer`.

    On "Reject" the operator skips its downstream tasks by raising, and on a time-out it fails: its return value is
    then never pushed, and `record_answer` would not know what happened.
    """

    def execute(self, context: Any) -> Any:
        from orchestration.promotion import GateDecision, askers, assigned_approvers
        from orchestration.settings import ApprovalPolicy, OrchestrationError

        decision = GateDecision.of(context["ti"].xcom_pull(task_ids=GATE_TASK))
        try:
            approvers = assigned_approvers(
                ApprovalPolicy(), askers(_settings(), str(decision.version), _requested_by())
            )
        except OrchestrationError as error:
            context["ti"].xcom_push(key=ANSWER_KEY, value={"refused": str(error)})
            raise
        if approvers is not None:
            self.assigned_users = [{"id": user, "name": user} for user in approvers]
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if event.get("error_type") == "timeout":
            context["ti"].xcom_push(key=ANSWER_KEY, value={"timed_out": True})
        elif "error" not in event:
            answer = {"chosen_options": event["chosen_options"], "responded_by_user": event.get("responded_by_user")}
            context["ti"].xcom_push(key=ANSWER_KEY, value=answer)
        return super().execute_complete(context, event)


def _answer() -> Any:
    return get_current_context()["ti"].xcom_pull(task_ids=APPROVAL_TASK, key=ANSWER_KEY)


@dag(
    dag_id=PROMOTE_DAG_ID,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(PROMOTE_CRON, timezone="UTC"), assets=[STAGING_VERSION]
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,  # one evaluation of the current staging version is all a missed day needs
    max_active_runs=1,  # one pending sign-off at a time: two runs could otherwise promote two versions in turn
    default_args={**network_retries(), "execution_timeout": timedelta(minutes=10)},
    params={
        "registered_model": Param("", type="string", description="empty: CREDIT_REGISTERED_MODEL_NAME"),
        "require_approval": Param(True, type="boolean", description="ask a person to sign off before the move"),
        "mirror_stages": Param(True, type="boolean", description="also move the deprecated MLflow stages"),
        "propose_parked": Param(
            False, type="boolean", description="propose the staging version even if it was rejected or refused before"
        ),
    },
    tags=["credit-scoring", "registry"],
    doc_md=__doc__,
)
def credit_promote() -> None:
    @task(task_id=GATE_TASK, multiple_outputs=False)  # one XCom: the decision as a whole
    def evaluate_gate() -> dict[str, Any]:
        """Gate report of staging vs production, logged as Markdown; nothing is moved."""
        from orchestration.events import announced_version
        from orchestration.failures import fail_fast
        from orchestration.promotion import evaluate_staging

        with fail_fast():
            params = get_current_context()["params"]
            decision = evaluate_staging(
                _settings(),
                _actor(),
                named_explicitly=bool(params["registered_model"]),
                propose_parked=bool(params["propose_parked"]),
                requested_by=_requested_by(),
            )
        announced = announced_version(_announced(), decision.model)
        if announced is not None and announced != decision.version:
            logger.warning(
                "started for %s version %s, but staging is version %s now: the gate evaluates the current staging "
                "version",
                decision.model,
                announced,
                decision.version,
            )
        logger.info("%s", decision.message)
        if decision.markdown:
            logger.info("gate report:\n%s", decision.markdown)
        return decision.as_xcom()

    @task.branch(retries=0)
    def route(decision: dict[str, Any]) -> list[str]:
        """Stop unless the gate passed; then the sign-off, or straight to the move without `require_approval`."""
        if decision["status"] != "passed":
            logger.info("nothing to promote: %s", decision["message"])
            return []
        if get_current_context()["params"]["require_approval"]:
            return [APPROVAL_TASK]
        return ["no_approval_required"]

    approval = RecordedApproval(
        task_id=APPROVAL_TASK,
        subject=f"{{{{ ti.xcom_pull(task_ids='{GATE_TASK}')['subject'] }}}}",
        body=f"{{{{ ti.xcom_pull(task_ids='{GATE_TASK}')['markdown'] }}}}",
        response_timeout=APPROVAL_TIMEOUT,  # the wait for the answer (Airflow 3.3: the scheduler's sweep)
        execution_timeout=timedelta(minutes=5),  # the short phase before the wait: writing the request
        retries=0,  # an answer is given once; a retry would ask again
    )
    no_approval_required = EmptyOperator(task_id="no_approval_required")

    # The two tasks below read the gate's decision from XCom rather than taking it as an argument: an argument would
    # make evaluate_gate a direct upstream, and its success would satisfy their trigger rules after a stop.
    @task(trigger_rule="none_failed_min_one_success")
    def promote() -> str:
        """Check the sign-off again, then move `production` to exactly the evaluated version (the gate runs again)."""
        from orchestration.failures import fail_fast
        from orchestration.promotion import GateDecision, approver_of, chosen_option, promote_evaluated, sign_off_policy
        from orchestration.settings import ApprovalPolicy

        decision, answer = get_current_context()["ti"].xcom_pull(task_ids=GATE_TASK), _answer()
        policy = sign_off_policy(bool(get_current_context()["params"]["require_approval"]), ApprovalPolicy())
        with fail_fast():
            result = promote_evaluated(
                GateDecision.of(decision),
                _actor(),
                _settings(),
                approved_by=approver_of(answer),
                chosen=chosen_option(answer),
                requested_by=_requested_by(),
                policy=policy,
            )
        logger.info("%s", result.message)
        return result.message

    @task(trigger_rule="all_done", retries=0)  # writes the audit record once; a failure is looked at, not retried
    def record_answer() -> str:
        """After `promote` ran or did not: a rejection, a time-out or a refused assignment goes to the audit trail."""
        from orchestration.promotion import GateDecision, unmoved_outcome
        from orchestration.promotion import record_answer as audit_answer

        decision, answer = get_current_context()["ti"].xcom_pull(task_ids=GATE_TASK), _answer()
        unmoved = unmoved_outcome(answer, APPROVAL_TIMEOUT)
        if unmoved is None:
            return "nothing to record: no sign-off, or an approval (promote records the move or its refusal)"
        outcome, reason, approver = unmoved
        args = (GateDecision.of(decision), outcome, reason, _actor(), _settings())
        audit_answer(*args, approver=approver, requested_by=_requested_by())
        return outcome

    moved = promote()
    route(evaluate_gate()) >> [approval, no_approval_required] >> moved
    moved >> record_answer()


credit_promote()
