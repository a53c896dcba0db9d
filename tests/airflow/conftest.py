"""Real Airflow for the DAG tests: one AIRFLOW_HOME (SQLite, migrated once), the repository's DAG folder, and one
API server sharing the metadata database (the approvals are answered through its REST API).

Airflow reads its configuration when it is first imported, so the environment is set in pytest_configure, before
any test module imports Airflow, and restored (the temporary home removed) in pytest_unconfigure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from scripts.tracking_server import free_port, stop_group
from tests.monitoring.conftest import gateway_process  # noqa: F401 - the drift DAG reads the monitored gateway's stream

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "airflow" / "dags"
ADMIN, ADMIN_PASSWORD = "admin", "airflow-tests"
# A second person: the approver named by CREDIT_APPROVERS in the four-eyes tests.
APPROVER, APPROVER_PASSWORD = "risk-approver", "airflow-tests-approver"

# Filled by pytest_configure (one temporary AIRFLOW_HOME per session, removed at the end).
AIRFLOW_ENV: dict[str, str] = {}
_SAVED_ENV: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Airflow reads its configuration when first imported: point it at a temporary home before any test imports it
    (pytest calls this when it loads this conftest, before collecting the test modules here)."""
    home = Path(tempfile.mkdtemp(prefix="airflow-home-"))
    AIRFLOW_ENV.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin,{APPROVER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": "airflow-tests-jwt-secret",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
    )
    _SAVED_ENV.update({key: os.environ.get(key) for key in AIRFLOW_ENV})
    os.environ.update(AIRFLOW_ENV)
    (home / "passwords.json").write_text(json.dumps({ADMIN: ADMIN_PASSWORD, APPROVER: APPROVER_PASSWORD}))


def pytest_unconfigure(config: pytest.Config) -> None:
    """The environment as it was, and the temporary home removed."""
    if "AIRFLOW_HOME" in AIRFLOW_ENV:
        shutil.rmtree(AIRFLOW_ENV["AIRFLOW_HOME"], ignore_errors=True)
    for key, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def airflow_home() -> Path:
    return Path(AIRFLOW_ENV["AIRFLOW_HOME"])


def require_airflow() -> None:
    """Skip without Airflow installed here; fail under CI, so CI cannot pass by skipping."""
    try:
        import airflow  # noqa: F401
    except ImportError:
        reason = "Airflow is not installed (scripts/bootstrap.sh installs requirements.lock, which has it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The session's metadata database, migrated once (about 5 s)."""
    require_airflow()
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return airflow_home()


# The DAGs' Param defaults as parsed. In one process, dag.test() writes a run's conf into the DAG's own Param objects
# (process_params updates the Params it copied by reference), so a later run would inherit an earlier run's conf:
# every run here passes the defaults explicitly. A real worker runs each task in a fresh process.
PARAM_DEFAULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="session")
def dag_bag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    for dag_id, dag in bag.dags.items():
        PARAM_DEFAULTS[dag_id] = dict(dag.params.dump())
    return bag


def load_dag(dag_bag: Any, dag_id: str) -> Any:
    dag = dag_bag.get_dag(dag_id)
    assert dag is not None, dag_bag.import_errors
    return dag


@dataclass(frozen=True)
class ApiServer:
    url: str
    log_path: Path

    def token(self, user: str = ADMIN) -> str:
        password = {ADMIN: ADMIN_PASSWORD, APPROVER: APPROVER_PASSWORD}[user]
        response = requests.post(f"{self.url}/auth/token", json={"username": user, "password": password}, timeout=10)
        assert response.status_code in (200, 201), response.text
        return str(response.json()["access_token"])


@pytest.fixture(scope="session")
def api_server(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`airflow api-server` on a free port, sharing the tests' metadata database (SimpleAuthManager, user admin)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("airflow-api") / "api-server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--host", "127.0.0.1"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass  # not listening yet
            assert process.poll() is None, f"api-server exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"api-server not up: {log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        yield ApiServer(url, log_path)
    finally:
        stop_group(process.pid, timeout=20, process=process)


class Answerer:
    """Answers the next pending approval of a DAG through the REST API, from a thread, while dag.test() runs: as
    each of `users` in turn until one is let through (the HTTP status each got is in `attempts`)."""

    def __init__(self, server: ApiServer, dag_id: str, task_id: str, option: str, users: tuple[str, ...] = (ADMIN,)):
        self.server, self.dag_id, self.task_id, self.option, self.users = server, dag_id, task_id, option, users
        self.attempts: list[tuple[str, int]] = []
        self.answered: dict[str, Any] | None = None
        self.detail: dict[str, Any] | None = None  # the request as the approver saw it (subject, body)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Answerer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            headers = {"Authorization": f"Bearer {self.server.token()}"}
            while not self._stop.is_set():
                detail = self._pending(headers)
                if detail is not None:
                    self.detail = detail
                    run_id = str(detail["task_instance"]["dag_run_id"])
                    url = (
                        f"{self.server.url}/api/v2/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/"
                        f"{self.task_id}/-1/hitlDetails"
                    )
                    for user in self.users:
                        response = requests.patch(
                            url,
                            json={"chosen_options": [self.option], "params_input": {}},
                            headers={"Authorization": f"Bearer {self.server.token(user)}"},
                            timeout=10,
                        )
                        self.attempts.append((user, response.status_code))
                        if response.status_code == 200:
                            self.answered = {"run_id": run_id, "user": user, **response.json()}
                            return
                    raise AssertionError(f"no user could answer: {self.attempts}")
                time.sleep(0.5)
        except BaseException as error:  # reported by the test, which otherwise would only see a timeout
            self.error = error

    def _pending(self, headers: dict[str, str]) -> dict[str, Any] | None:
        response = requests.get(
            f"{self.server.url}/api/v2/dags/{self.dag_id}/dagRuns/~/hitlDetails",
            params={"response_received": "false"},
            headers=headers,
            timeout=10,
        )
        if response.status_code != 200:
            return None
        for detail in response.json().get("hitl_details", []):
            ti = detail.get("task_instance") or {}
            # Answered only once the task waits for it (as a person answers what the UI shows): an answer written
            # while the task is still on its way to `awaiting_input` can leave it `scheduled` and never resumed.
            waiting = ti.get("state") == "awaiting_input"
            if ti.get("task_id") == self.task_id and not detail.get("response_received") and waiting:
                return dict(detail)
        return None


AnswerFactory = Callable[..., Answerer]


@pytest.fixture
def answer_approval(api_server: ApiServer) -> AnswerFactory:
    def start(
        option: str, dag_id: str = "credit_promote", task_id: str = "approval", users: tuple[str, ...] = (ADMIN,)
    ) -> Answerer:
        return Answerer(api_server, dag_id, task_id, option, users)

    return start


def asset_events(uri: str, source_run_id: str | None = None) -> list[Any]:
    """The Asset events recorded in the metadata database for the Asset `uri` (optionally of one DAG run)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.uri == uri)
        if source_run_id is not None:
            query = query.where(AssetEvent.source_run_id == source_run_id)
        events = list(session.scalars(query.order_by(AssetEvent.id)))
        session.expunge_all()
        return events


def task_states(dag_id: str, run_id: str) -> dict[str, str | None]:
    """task id -> state of one DAG run, read from the metadata database."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id
            )
        ).all()
    return {task_id: (str(state.value) if hasattr(state, "value") else state) for task_id, state in rows}


def run_dag(
    dag_bag: Any,
    dag_id: str,
    conf: dict[str, Any],
    consumed_events: list[Any] | None = None,
    **test_kwargs: Any,
) -> tuple[str, dict[str, str | None]]:
    """`dag.test()` with these Params (and `test_kwargs`, e.g. logical_date=None); returns the DAG run's id and its
    tasks' states.

    `consumed_events` (AssetEvents from the metadata database) are linked to the new DAG run as the scheduler links
    the events that trigger an Asset-scheduled run (the `dagrun_asset_event` table): the tasks then find them in
    `triggering_asset_events`, built by Airflow itself. dag.test() has no parameter for it, so the link is written
    when the run's row is inserted.
    """
    from airflow.models.asset import association_table
    from airflow.models.dagrun import DagRun
    from sqlalchemy import event

    def link_events(mapper: Any, connection: Any, target: Any) -> None:
        if target.dag_id == dag_id and consumed_events:
            rows = [{"dag_run_id": target.id, "event_id": e.id} for e in consumed_events]
            connection.execute(association_table.insert(), rows)

    dag = load_dag(dag_bag, dag_id)
    event.listen(DagRun, "after_insert", link_events)
    try:
        dag_run = dag.test(run_conf={**PARAM_DEFAULTS[dag_id], **conf}, **test_kwargs)
    finally:
        event.remove(DagRun, "after_insert", link_events)
    return dag_run.run_id, task_states(dag_id, dag_run.run_id)


def small_training(data_path: Path, model_name: str) -> dict[str, Any]:
    """credit_retrain Params for the small data: a few seconds of training, a short benchmark."""
    return {
        "data_path": str(data_path),
        "registered_model": model_name,
        "experiment_name": f"{model_name}-runs",
        "hidden_layers": "16",
        "max_epochs": 30,
        "patience": 5,
        "cv_folds": 0,
        "batch_sizes": "1",
        "benchmark_repeats": 20,
        "candidate": "fp32",
    }


@dataclass(frozen=True)
class Retrained:
    model_name: str
    run_id: str  # the credit_retrain DAG run
    states: dict[str, str | None]
    conf: dict[str, Any]


@pytest.fixture(scope="session")
def retrained(dag_bag: Any, mlflow_server: str, small_csv: Path) -> Retrained:
    """One credit_retrain run (dag.test) on the small data: a registered model with a staging version, no production."""
    import uuid

    name = f"credit-airflow-{uuid.uuid4().hex[:8]}"
    conf = small_training(small_csv, name)
    run_id, states = run_dag(dag_bag, "credit_retrain", conf)
    return Retrained(name, run_id, states, conf)


def queued_assets(target_dag_id: str, clear: bool = False) -> set[str]:
    """The Assets whose events have queued a run of `target_dag_id` (what a scheduler would start next); `clear`
    empties that queue first and returns nothing."""
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    with create_session() as session:
        if clear:
            session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == target_dag_id))
            return set()
        query = (
            select(AssetModel.uri)
            .join(AssetDagRunQueue, AssetDagRunQueue.asset_id == AssetModel.id)
            .where(AssetDagRunQueue.target_dag_id == target_dag_id)
        )
        return set(session.scalars(query))
