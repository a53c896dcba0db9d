"""credit_portfolio_score: monthly, the whole loan book re-scored with the production version; the scores' Asset.

`score` scores the configured book (Param `book_path`, else PORTFOLIO_BOOK_PATH) with `version` (default the alias
`production`, resolved when the task runs; the version used is recorded) into `<output_root>/<YYYY-MM>/`, the month of
the data interval's start (the run on the 2nd scores the month just closed). A retry, or a re-run of the month,
resumes in the same folder: finished parts are skipped, every row is written exactly once. It logs one summary line
and returns the month's record (an XCom): model, version, rows, rejects, reject rate, rows/s, output, the MLflow run
(experiment `portfolio-scoring`) and the score's PSI against the training reference. `publish` emits an event of the
Asset `credit_portfolio_scores` whose extra is that record, so limit reviews or provisioning can be scheduled on it;
a re-run that scored nothing new for an output announced before is skipped (no second event).

A missing book or output root, a missing column, an alias that points nowhere, a month's folder holding another
version's results, and too many rejected rows fail at once, without retries.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, get_current_context, task

from orchestration.dag_policy import (
    PORTFOLIO_CRON,
    PORTFOLIO_DAG_ID,
    PORTFOLIO_SCORE_TIMEOUT,
    PORTFOLIO_SCORES_ASSET,
    network_retries,
)

PORTFOLIO_SCORES = Asset(PORTFOLIO_SCORES_ASSET)
logger = logging.getLogger(__name__)


@dag(
    dag_id=PORTFOLIO_DAG_ID,
    # A data-interval timetable: the run on the 2nd covers the month before it, whose name its output folder takes.
    schedule=CronDataIntervalTimetable(PORTFOLIO_CRON, timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,  # last month's book is what matters; a past month can be scored by hand (Param month)
    max_active_runs=1,  # two runs of the same month would write the same folder at once
    # score's 3 attempts x 30 min, publish's 3 x 2 min and the retry delays take 1 h 39 min at worst (tested).
    dagrun_timeout=timedelta(hours=2),
    default_args={**network_retries(), "execution_timeout": PORTFOLIO_SCORE_TIMEOUT},
    params={
        "book_path": Param(
            "",
            type="string",
            description="the book on the workers: a Parquet/CSV file or a folder of them; empty: PORTFOLIO_BOOK_PATH",
        ),
        "output_root": Param(
            "",
            type="string",
            description="an existing folder on the workers; each month goes to <output_root>/<YYYY-MM>/; "
            "empty: PORTFOLIO_OUTPUT_ROOT",
        ),
        "id_columns": Param("account_id", type="string", description="comma-separated, passed through to the output"),
        "version": Param("production", type="string", description="an alias or a version number"),
        "max_reject_rate": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            description="fail above this share of rejected rows; empty: PORTFOLIO_MAX_REJECT_RATE, else 0.01",
        ),
        "registered_model": Param("", type="string", description="empty: CREDIT_REGISTERED_MODEL_NAME"),
        "month": Param("", type="string", description="YYYY-MM; empty: the month of the data interval's start"),
    },
    tags=["credit-scoring", "portfolio"],
    doc_md=__doc__,
)
def credit_portfolio_score() -> None:
    @task(multiple_outputs=False)
    def score() -> dict[str, Any]:
        """Score the book into its month's folder (resuming finished parts); the month's record is the XCom."""
        from orchestration.failures import fail_fast
        from orchestration.portfolio import PortfolioParams, portfolio_settings, score_month

        context = get_current_context()
        with fail_fast():
            params = PortfolioParams.of(context["params"])
            # None for a run triggered without a logical date: the Param month is then required (month_of says so).
            record = score_month(params, context.get("data_interval_start"), portfolio_settings(params))
        return record.as_xcom()

    @task(
        inlets=[PORTFOLIO_SCORES],  # read: the events announced before, to announce a month's scores once
        outlets=[PORTFOLIO_SCORES],
        execution_timeout=timedelta(minutes=2),
        multiple_outputs=False,
    )
    def publish(record: dict[str, Any]) -> dict[str, Any]:
        """The Asset event that tells consumers a month's scores are ready; its extra is the month's record."""
        from airflow.sdk.exceptions import AirflowSkipException

        from orchestration.events import announced_before

        context = get_current_context()
        earlier = [event.extra for event in context["inlet_events"][PORTFOLIO_SCORES]]
        if announced_before(record, earlier):  # a skipped task emits no Asset event
            raise AirflowSkipException(f"{record['output']} was announced before and nothing new was scored")
        extra = {**record, "dag_run_id": context["ti"].run_id}
        context["outlet_events"][PORTFOLIO_SCORES].extra = extra
        logger.info("announced %s's scores: %s", record["month"], record["output"])
        return extra

    publish(score())


credit_portfolio_score()
