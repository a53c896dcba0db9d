"""credit_drift: hourly drift report of the gateway's prediction stream; drift starts credit_retrain.

`measure` runs the drift job (`monitoring.job.run_drift`) over the DAG run's data interval (the past hour), so a
re-run reads the same rows and finds the report it logged instead of logging a second one. When a version's verdict
is `act` (a PSI above MONITORING_PSI_ACT or the drift share at MONITORING_DRIFT_SHARE), `alert_retraining` emits an
event of the Asset `credit_drift_alert` (credit_retrain is scheduled on it) with the reason and the report runs,
once per set of reports (they are tagged `retraining_requested_by`; a re-run over the same window skips);
otherwise `drift_found` short-circuits and the run succeeds with the numbers in `measure`'s log.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, get_current_context, task

from orchestration.dag_policy import DRIFT_ALERT_ASSET, DRIFT_CRON, DRIFT_DAG_ID, network_retries

DRIFT_ALERT = Asset(DRIFT_ALERT_ASSET)
logger = logging.getLogger(__name__)


@dag(
    dag_id=DRIFT_DAG_ID,
    # A data-interval timetable, not a trigger: each run covers the hour before it, [start, end).
    schedule=CronDataIntervalTimetable(DRIFT_CRON, timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,  # old hours of traffic are no reason to retrain now; a past window can be run by hand (Params)
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),  # well inside the hour, so runs never pile up
    # measure's 3 attempts x 12 min, alert_retraining's 3 x 2 min and the retry delays fit in the 50 min (tested).
    default_args={**network_retries(), "execution_timeout": timedelta(minutes=12)},
    params={
        "registered_model": Param("", type="string", description="empty: CREDIT_REGISTERED_MODEL_NAME"),
        "window_start": Param("", type="string", description="empty: the data interval's start; else ISO or Unix s"),
        "window_end": Param("", type="string", description="empty: the data interval's end; else ISO or Unix s"),
    },
    tags=["credit-scoring", "monitoring"],
    doc_md=__doc__,
)
def credit_drift() -> None:
    @task(multiple_outputs=False)
    def measure() -> dict[str, Any]:
        """One drift report per version that scored traffic in the window; the numbers go to this log."""
        from orchestration.drift import check_drift, monitoring_settings_for, window_of
        from orchestration.failures import fail_fast

        context = get_current_context()
        params = context["params"]
        # None for a run triggered without a logical date: the window Params are then required (window_of says so).
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        with fail_fast():
            window = window_of(
                None if start is None else start.timestamp(),
                None if end is None else end.timestamp(),
                params["window_start"],
                params["window_end"],
            )
            check = check_drift(monitoring_settings_for(str(params["registered_model"])), window)
        logger.info("%s (window %s .. %s)", check.reason, window.start, window.end)
        return check.as_xcom()

    @task.short_circuit(retries=0, execution_timeout=timedelta(minutes=1))
    def drift_found(check: dict[str, Any]) -> bool:
        """Stop here (a success) unless the report says `act`."""
        return bool(check["drifted"])

    @task(outlets=[DRIFT_ALERT], execution_timeout=timedelta(minutes=2), multiple_outputs=False)
    def alert_retraining(check: dict[str, Any]) -> dict[str, Any]:
        """The Asset event that starts credit_retrain, carrying the reason and the drift reports' MLflow runs."""
        from airflow.sdk.exceptions import AirflowSkipException

        from orchestration.drift import monitoring_settings_for, request_retraining

        context = get_current_context()
        ti = context["ti"]
        requester = f"{ti.dag_id}/{ti.run_id}"
        tracking_uri = monitoring_settings_for(check["model"]).tracking_uri
        earlier = request_retraining(tracking_uri, list(check["report_run_ids"]), requester)
        if earlier is not None:  # a skipped task emits no Asset event
            raise AirflowSkipException(f"these drift reports started retraining already ({earlier})")
        extra = {
            "reason": check["reason"],
            "model": check["model"],
            "report_run_ids": check["report_run_ids"],
            "window_start": check["window_start"],
            "window_end": check["window_end"],
            "drift_dag_run_id": ti.run_id,
        }
        context["outlet_events"][DRIFT_ALERT].extra = extra
        logger.info("retraining requested: %s", check["reason"])
        return extra

    check = measure()
    drift_found(check) >> alert_retraining(check)


credit_drift()
