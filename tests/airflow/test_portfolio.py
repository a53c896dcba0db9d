"""credit_portfolio_score under dag.test() against the session's real tracking server and registered model: the book
(the shipped data with account ids, as Parquet) is scored into its month's folder with every row exactly once, the
record is the XCom and the Asset event's extra, the MLflow run is in `portfolio-scoring`, a second run of the month
resumes (nothing scored twice, no second event), a missing book fails without retries; and the task's plain functions
(the month's folder, the Params, the configured input, which errors are not retried) without a server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from orchestration.events import announced_before
from orchestration.failures import fail_fast
from orchestration.portfolio import (
    MonthlyPortfolioSettings,
    MonthScores,
    PortfolioParams,
    month_folder,
    month_of,
    portfolio_settings,
    score_month,
)
from orchestration.settings import OrchestrationError, OrchestrationSettings
from portfolio.errors import PortfolioInputError, RejectRateExceededError
from portfolio.job import ScoringOutcome
from tests.airflow.conftest import asset_events, require_airflow, run_dag
from tests.conftest import Served

DAG_ID = "credit_portfolio_score"
ASSET = "credit_portfolio_scores"
# A run with this logical date covers [2026-05-02 04:00, 2026-06-02 04:00) UTC: the month 2026-05 (a scheduled run
# on 2026-06-02 has the same interval).
LOGICAL_DATE = datetime(2026, 6, 15, 12, tzinfo=UTC)
SAME_MONTH_AGAIN = datetime(2026, 6, 20, 12, tzinfo=UTC)
MONTH = "2026-05"
# Other runs (dag.test() replaces a run of the same logical date).
OTHER_MONTH_DATE = datetime(2026, 6, 24, 12, tzinfo=UTC)
TOO_MANY_REJECTS_DATE = datetime(2026, 6, 25, 12, tzinfo=UTC)
MISSING_BOOK_DATE = datetime(2026, 6, 26, 12, tzinfo=UTC)
NO_SERVER = "http://127.0.0.1:9"  # nothing listens: a check that calls a server fails loudly


@pytest.fixture
def no_portfolio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("PORTFOLIO_BOOK_PATH", "PORTFOLIO_OUTPUT_ROOT", "PORTFOLIO_MAX_REJECT_RATE"):
        monkeypatch.delenv(variable, raising=False)


def offline_settings(**values: Any) -> MonthlyPortfolioSettings:
    return MonthlyPortfolioSettings(tracking_uri=NO_SERVER, **values)


# --- the plain functions ---------------------------------------------------------------------------------------------


def test_the_month_is_the_data_interval_starts_else_the_param_and_each_has_its_own_folder() -> None:
    # The run on 2026-12-02 04:00 UTC covers [2026-11-02 04:00, 2026-12-02 04:00): November's book.
    assert month_of(datetime(2026, 11, 2, 4, tzinfo=UTC)) == "2026-11"
    assert month_of(datetime(2026, 11, 2, 4, tzinfo=UTC), "2026-09") == "2026-09"  # a past month by hand
    assert month_folder(Path("/data/portfolio"), "2026-11") == Path("/data/portfolio/2026-11")
    with pytest.raises(OrchestrationError, match=r"no data interval .*: give the Param month \(YYYY-MM\)"):
        month_of(None)


def test_a_bad_param_names_the_param() -> None:
    with pytest.raises(OrchestrationError) as error:
        PortfolioParams.of({"month": "2026-13", "id_columns": " , ", "max_reject_rate": 2, "version": " "})
    message = str(error.value)
    assert "Param month: Value error, expected YYYY-MM, got '2026-13'" in message
    assert "Param id_columns: Value error, name at least one id column" in message
    assert "Param max_reject_rate: Input should be less than or equal to 1" in message
    assert "Param version: Value error, an alias (production) or a version number" in message
    params = PortfolioParams.of({"id_columns": "account_id, branch,account_id", "max_reject_rate": None})
    assert params.version == "production" and params.max_reject_rate is None


@pytest.mark.usefixtures("no_portfolio_env")
def test_a_missing_book_or_output_root_names_the_param_and_the_variable(tmp_path: Path) -> None:
    interval_start = datetime(2026, 11, 2, 4, tzinfo=UTC)
    with pytest.raises(OrchestrationError) as error:
        score_month(PortfolioParams.of({}), interval_start, offline_settings())
    assert str(error.value) == (
        "Param book_path is empty and PORTFOLIO_BOOK_PATH is not set: give the book to score (a file or folder)"
    )
    with pytest.raises(OrchestrationError, match="^Param book_path: no such file or folder on this worker: /no/book$"):
        score_month(PortfolioParams.of({"book_path": "/no/book"}), interval_start, offline_settings())
    book = tmp_path / "book.parquet"
    book.write_bytes(b"not read before the output root is checked")
    with pytest.raises(OrchestrationError, match="^PORTFOLIO_BOOK_PATH: 'book.parquet' is not an absolute path"):
        score_month(PortfolioParams.of({}), interval_start, offline_settings(book_path="book.parquet"))
    with pytest.raises(OrchestrationError, match="^Param output_root is empty and PORTFOLIO_OUTPUT_ROOT is not set"):
        score_month(PortfolioParams.of({"book_path": str(book)}), interval_start, offline_settings())
    with pytest.raises(OrchestrationError, match="^Param output_root is empty"):  # a blank Param is an empty one
        score_month(PortfolioParams.of({"book_path": " "}), interval_start, offline_settings(book_path=str(book)))
    missing_root = tmp_path / "unmounted"
    with pytest.raises(OrchestrationError, match=r"^PORTFOLIO_OUTPUT_ROOT: no such folder on this worker \(is its"):
        score_month(
            PortfolioParams.of({"book_path": str(book)}),
            interval_start,
            offline_settings(output_root=str(missing_root)),
        )
    assert not missing_root.exists()  # never created: a missing mount must not put the scores on a worker's disk


def test_the_settings_take_the_params_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTFOLIO_BOOK_PATH", "/books/latest.parquet")
    monkeypatch.setenv("PORTFOLIO_MAX_REJECT_RATE", "0.05")
    monkeypatch.setenv("CREDIT_REGISTERED_MODEL_NAME", "credit-env")
    base = OrchestrationSettings(tracking_uri="http://tracking:5000")
    settings = portfolio_settings(PortfolioParams.of({}), base)
    assert (settings.book_path, settings.max_reject_rate, settings.model_name) == (
        "/books/latest.parquet", 0.05, "credit-env",
    )  # fmt: skip
    assert settings.tracking_uri == "http://tracking:5000" and settings.experiment_name == "portfolio-scoring"
    overridden = portfolio_settings(PortfolioParams.of({"max_reject_rate": 0.0, "registered_model": "other"}), base)
    assert (overridden.max_reject_rate, overridden.model_name) == (0.0, "other")
    monkeypatch.setenv("PORTFOLIO_BATCH_ROWS", "lots")
    with pytest.raises(OrchestrationError, match=r"^the portfolio job's settings \(PORTFOLIO_\*\): batch_rows: "):
        portfolio_settings(PortfolioParams.of({}), base)


def test_the_record_of_a_month() -> None:
    outcome = ScoringOutcome(
        model="credit-scoring", version="7", precision="fp32", output=Path("/data/portfolio/2026-11"),
        rows_in=20_000_000, scored=19_998_000, rejected=2_000, rows_this_run=12_806_173, rows_per_s=312_345.678,
        seconds=41.0,
        psi={"probability_of_default": 0.0123, "Age": 0.002},
        rejects_by_reason={f"reason {i}": 100 - i for i in range(12)}, run_id="abc", run_url="http://mlflow/#/runs/abc",
    )  # fmt: skip
    record = MonthScores.of("2026-11", "production", Path("/books/2026-11.parquet"), outcome)
    xcom = record.as_xcom()
    assert xcom["rows_scored_this_run"] == 12_806_173  # this run's rows: a resumed month skipped the others
    assert (xcom["version"], xcom["version_requested"], xcom["score_psi"]) == ("7", "production", 0.0123)
    assert xcom["reject_rate"] == 2_000 / 20_000_000 and len(xcom["rejects_by_reason"]) == 10
    assert (xcom["mlflow_run_id"], xcom["output"]) == ("abc", "/data/portfolio/2026-11")
    assert record.summary().startswith(
        "portfolio 2026-11: credit-scoring version 7 (fp32, requested production) scored 19,998,000 of 20,000,000 "
        "rows, 12,806,173 of them this run, 2,000 rejected (0.01%), 312,346 rows/s, score PSI 0.0123; output "
        "/data/portfolio/2026-11; MLflow run http://mlflow/#/runs/abc"
    )


def test_a_month_is_announced_once_unless_rows_were_scored() -> None:
    record = {"model": "m", "version": "3", "output": "/out/2026-11", "rows_scored_this_run": 0}
    same = {"model": "m", "version": "3", "output": "/out/2026-11", "rows_scored_this_run": 10}
    assert announced_before(record, [None, same])
    assert not announced_before(record, [{**same, "output": "/out/2026-10"}, {**same, "version": "4"}, None])
    assert not announced_before({**record, "rows_scored_this_run": 5}, [same])  # rescored (resumed or renewed)


@pytest.mark.parametrize(
    "error",
    [
        OrchestrationError("Param book_path is empty"),
        PortfolioInputError("input /x: missing column Income"),
        RejectRateExceededError("12 of 100 rows rejected"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_user_mistake_or_too_many_rejects_fails_without_retries(error: Exception) -> None:
    require_airflow()
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=str(error)), fail_fast():
        raise error


def test_a_dropped_connection_is_retried() -> None:
    with pytest.raises(ConnectionError), fail_fast():
        raise ConnectionError("tracking server restarting")


# --- the DAG under dag.test() ----------------------------------------------------------------------------------------


def book_frame(credit_frame: pd.DataFrame) -> pd.DataFrame:
    """The shipped applicants with unique account ids; two of them with an income no model can read."""
    frame = credit_frame.drop(columns=["Status"]).reset_index(drop=True)
    frame.insert(0, "account_id", [f"A{i:08d}" for i in range(len(frame))])
    # A text column (as a CSV export would give it), so that it can hold a value that is not a number.
    frame["Income"] = [None if pd.isna(value) else f"{value:g}" for value in frame["Income"]]
    frame.loc[1, "Income"] = "lots"
    frame.loc[2, "Income"] = "inf"
    return frame


@pytest.fixture
def book(credit_frame: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    frame = book_frame(credit_frame)
    # Row groups of 1,000: the job's parts are whole row groups, so the book is several parts.
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "book.parquet", row_group_size=1000)
    return frame


@pytest.fixture
def portfolio_env(
    served: Served, book: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """What a worker's environment gives the DAG: the book and the output root (the Params left empty)."""
    output_root = tmp_path / "portfolio"
    output_root.mkdir()
    monkeypatch.setenv("PORTFOLIO_BOOK_PATH", str(tmp_path / "book.parquet"))
    monkeypatch.setenv("PORTFOLIO_OUTPUT_ROOT", str(output_root))
    monkeypatch.setenv("PORTFOLIO_MODEL_CACHE_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("PORTFOLIO_ROWS_PER_PART", "1000")
    monkeypatch.delenv("PORTFOLIO_MAX_REJECT_RATE", raising=False)
    yield output_root


def xcom_of(run_id: str, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=run_id, key="return_value", task_ids=task_id, dag_ids=DAG_ID)
        (row,) = session.scalars(query).all()
        return XComModel.deserialize_value(row)


def tries(run_id: str) -> dict[str, int]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.try_number).where(
                TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id
            )
        ).all()
    return dict(rows)


def read_dataset(folder: Path) -> pd.DataFrame:
    files = sorted(folder.glob("*.parquet"))
    return pd.concat([pq.read_table(file).to_pandas() for file in files], ignore_index=True)


@pytest.mark.integration
def test_a_month_is_scored_once_recorded_announced_and_resumed_by_a_second_run(
    dag_bag: Any, served: Served, book: pd.DataFrame, portfolio_env: Path
) -> None:
    conf = {"registered_model": served.model_name}
    run_id, states = run_dag(dag_bag, DAG_ID, conf, logical_date=LOGICAL_DATE)
    assert states == {"score": "success", "publish": "success"}

    # The record: the XCom of `score`, the version production pointed at when the task ran.
    record = xcom_of(run_id, "score")
    output = portfolio_env / MONTH
    assert record["month"] == MONTH and record["output"] == str(output)
    assert (record["model"], record["version"], record["version_requested"]) == (served.model_name, "1", "production")
    assert record["rows"] == len(book) == record["rows_scored_this_run"]
    assert (record["scored"], record["rejected"]) == (len(book) - 2, 2)
    assert record["reject_rate"] == pytest.approx(2 / len(book)) and record["rows_per_s"] > 0
    assert 0 <= record["score_psi"] < 0.1  # the shipped data against its own training split
    assert set(record["psi"]) >= {"probability_of_default", "Income", "Age"}

    # The output: every input row exactly once, scored or rejected with its reason.
    scores, rejected = read_dataset(output / "scores"), read_dataset(output / "rejected")
    assert len(scores) + len(rejected) == len(book)
    ids = pd.concat([scores["account_id"], rejected["account_id"]])
    assert ids.is_unique and set(ids) == set(book["account_id"])
    assert set(rejected["account_id"]) == {"A00000001", "A00000002"}
    assert scores["probability_of_default"].between(0, 1).all()

    # The MLflow run in `portfolio-scoring`, finished, with what the record says.
    client = MlflowClient(served.url)
    run = client.get_run(record["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "portfolio-scoring"
    assert run.info.status == "FINISHED" and run.data.tags["version"] == "1"
    assert run.data.metrics["rows_in"] == len(book) and run.data.metrics["rows_rejected"] == 2
    assert record["mlflow_run_url"].endswith(f"/runs/{run.info.run_id}")

    # The Asset event: the record, and which DAG run made it.
    (event,) = asset_events(ASSET, run_id)
    assert event.extra == {**record, "dag_run_id": run_id}
    assert xcom_of(run_id, "publish") == event.extra

    # The same month again (a re-run, or a scheduled run after a failed one): the finished parts are skipped, nothing
    # is written twice, and the month is not announced a second time.
    parts = {path: path.stat().st_mtime_ns for path in output.rglob("*.parquet")}
    again, states = run_dag(dag_bag, DAG_ID, conf, logical_date=SAME_MONTH_AGAIN)
    assert again != run_id and states == {"score": "success", "publish": "skipped"}
    second = xcom_of(again, "score")
    assert second["output"] == str(output) and second["rows_scored_this_run"] == 0
    assert (second["rows"], second["scored"], second["rejected"]) == (record["rows"], record["scored"], 2)
    assert second["mlflow_run_id"] != record["mlflow_run_id"]  # each run of the job is recorded
    assert {path: path.stat().st_mtime_ns for path in output.rglob("*.parquet")} == parts
    assert asset_events(ASSET, again) == []
    assert sorted(path.name for path in portfolio_env.iterdir()) == [MONTH]

    # Another month (here named by the Param, as when a past month is scored by hand): a folder of its own, scored
    # afresh and announced; the month before is left as it was.
    other, states = run_dag(dag_bag, DAG_ID, {**conf, "month": "2026-06"}, logical_date=OTHER_MONTH_DATE)
    assert states == {"score": "success", "publish": "success"}
    third = xcom_of(other, "score")
    assert third["output"] == str(portfolio_env / "2026-06") and third["rows_scored_this_run"] == len(book)
    assert [event.extra["output"] for event in asset_events(ASSET, other)] == [third["output"]]
    assert {path: path.stat().st_mtime_ns for path in output.rglob("*.parquet")} == parts
    assert sorted(path.name for path in portfolio_env.iterdir()) == [MONTH, "2026-06"]


@pytest.mark.integration
def test_too_many_rejects_fail_the_month_without_retries_and_announce_nothing(
    dag_bag: Any, served: Served, book: pd.DataFrame, portfolio_env: Path
) -> None:
    conf = {"registered_model": served.model_name, "month": "2026-02", "max_reject_rate": 0.0}
    run_id, states = run_dag(dag_bag, DAG_ID, conf, logical_date=TOO_MANY_REJECTS_DATE)
    assert states == {"score": "failed", "publish": "upstream_failed"}
    assert tries(run_id)["score"] == 1  # failed at once: no retry
    assert asset_events(ASSET, run_id) == []
    # The output is complete all the same (rejects with their reasons), in the month the Param named.
    scores = read_dataset(portfolio_env / "2026-02" / "scores")
    assert len(scores) == len(book) - 2


@pytest.mark.integration
def test_a_missing_book_fails_without_retries(
    dag_bag: Any, served: Served, portfolio_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PORTFOLIO_BOOK_PATH")
    run_id, states = run_dag(dag_bag, DAG_ID, {"registered_model": served.model_name}, logical_date=MISSING_BOOK_DATE)
    assert states == {"score": "failed", "publish": "upstream_failed"}
    assert tries(run_id)["score"] == 1
    assert list(portfolio_env.iterdir()) == []  # nothing written
