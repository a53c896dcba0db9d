"""What the DAGs agree on, importable at DAG-parse time (the standard library only): Asset names, retry and
timeout policy. docs/airflow.md explains each choice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

# Asset events: credit_drift -> credit_retrain (drift found), credit_retrain -> credit_promote (a new staging version).
DRIFT_ALERT_ASSET = "credit_drift_alert"
STAGING_VERSION_ASSET = "credit_staging_version"
# credit_portfolio_score -> what uses a month's scores (limit reviews, provisioning): the extra is the month's record.
PORTFOLIO_SCORES_ASSET = "credit_portfolio_scores"

RETRAIN_DAG_ID = "credit_retrain"
PROMOTE_DAG_ID = "credit_promote"
DRIFT_DAG_ID = "credit_drift"
PORTFOLIO_DAG_ID = "credit_portfolio_score"

# Weekly retraining (Monday 03:00 UTC), daily promotion (06:00 UTC, after a night's retraining), hourly drift, the
# portfolio monthly on the 2nd at 04:00 UTC (a day for the month-end book to land; before the day's promotion).
RETRAIN_CRON = "0 3 * * 1"
PROMOTE_CRON = "0 6 * * *"
DRIFT_CRON = "0 * * * *"
PORTFOLIO_CRON = "0 4 2 * *"

# Scoring a 20 M-row book took 21 s here (0.97 M rows/s, docs/benchmarks.md), plus the version's download and its
# training reference; 30 minutes leave a margin of more than 50x for a slower or shared worker or a bigger book. A
# retry resumes the finished parts, so a timed-out attempt's work is not lost.
PORTFOLIO_SCORE_TIMEOUT = timedelta(minutes=30)

# A human has three days to sign off; no answer then fails the approval (production untouched) and the next day's
# run asks again.
APPROVAL_TIMEOUT = timedelta(days=3)


def network_retries() -> dict[str, Any]:
    """For tasks that talk to MLflow or Redis: a restarting server or a dropped connection is worth two more tries,
    30 s then 60 s later (exponential, capped at 10 minutes). Every such task is idempotent, so a retry is safe."""
    return {
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    }
