"""Who may do what, against a real `mlflow server --app-name basic-auth` (SQLite, a temporary auth database): the
provisioning of the service users, the pipeline as the trainer on the provisioned (empty) model and experiments,
an anonymous and a read-only alias move refused with production unchanged, and the registry CLI as its own user."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from monitoring.settings import MonitoringSettings
from portfolio.settings import PortfolioSettings
from registry.access import USERS, AccessSettings, access_plan, provision
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS
from scripts import tracking_server
from steps.main import main
from steps.model import MLPParams
from steps.settings import PipelineSettings
from tests.conftest import REPO_ROOT, mlflow_cli_environment

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-for-tests"
PASSWORDS = {user: f"{user}-password-{uuid.uuid4().hex[:8]}" for user in USERS}


@contextlib.contextmanager
def signed_in(user: str | None, password: str | None = None) -> Iterator[None]:
    """MLflow's client reads MLFLOW_TRACKING_USERNAME/PASSWORD on every request: set (or unset) them for a block."""
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    previous = {key: os.environ.get(key) for key in keys}
    for key, value in zip(keys, (user, password if user else None), strict=True):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server --app-name basic-auth` as compose runs it: READ for everyone signed in, the admin's password
    from the environment, MLFLOW_BASIC_AUTH_FAIL_CLOSED=false (so that a signed-in reader may scrape /metrics)."""
    root = tmp_path_factory.mktemp("mlflow-auth").resolve()
    config = root / "basic_auth.ini"
    config.write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{root / 'auth.db'}\nadmin_username = {ADMIN}\n"
        "auth_cache_ttl_seconds = 60\n"  # as docker/mlflow-auth.ini: without it the pipeline takes ~18 times as long
    )
    environment = {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
        "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "false",
    }
    port = tracking_server.free_port()
    url = f"http://127.0.0.1:{port}"
    process = tracking_server.start(root, port, app_name="basic-auth", environment=environment)
    try:
        tracking_server.wait_until_healthy(url, process, root / "server.log")
        yield url
    finally:
        tracking_server.stop(process)


def access_settings(url: str, model: str, **overrides: str) -> AccessSettings:
    values = {f"{user}_password": password for user, password in PASSWORDS.items()}
    values |= {"tracking_uri": url, "model_name": model, "pipeline_experiment": f"{model}-runs"}
    values |= {"admin_username": ADMIN, "admin_password": ADMIN_PASSWORD, **overrides}
    return AccessSettings(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Provisioned:
    url: str
    model: str
    settings: AccessSettings
    production: str  # the version the trainer's first deployment put in production
    staging: str


@pytest.fixture(scope="module")
def provisioned(auth_server: str, small_csv: Path) -> Provisioned:
    """The users provisioned (the model and experiments created empty), then the pipeline's main as the trainer."""
    model = f"credit-access-{uuid.uuid4().hex[:8]}"
    settings = access_settings(auth_server, model)
    with signed_in(ADMIN, ADMIN_PASSWORD):
        provision(settings)
    pipeline = PipelineSettings(
        tracking_uri=auth_server, experiment_name=settings.experiments["pipeline"], model_name=model
    )
    previous_uri = mlflow.get_tracking_uri()
    try:
        with signed_in("trainer", PASSWORDS["trainer"]):
            main(
                small_csv,
                params=MLPParams(hidden_layers=(16,), max_epochs=30, patience=5),
                cv_folds=0,
                batch_sizes=[1],
                benchmark_repeats=20,
                candidate="fp32",
                settings=pipeline,
            )
    finally:
        mlflow.set_tracking_uri(previous_uri)
    with signed_in("reader", PASSWORDS["reader"]):
        aliases = MlflowClient(auth_server).get_registered_model(model).aliases
    return Provisioned(auth_server, model, settings, aliases["production"], aliases["staging"])


def production_of(provisioned: Provisioned) -> str:
    with signed_in("reader", PASSWORDS["reader"]):
        return MlflowClient(provisioned.url).get_model_version_by_alias(provisioned.model, PRODUCTION_ALIAS).version


def test_the_experiment_names_are_those_the_packages_write_to(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("CREDIT_EXPERIMENT_NAME", "REGISTRY_AUDIT_EXPERIMENT", "MONITORING_EXPERIMENT_NAME"):
        monkeypatch.delenv(variable, raising=False)
    settings = access_settings("http://127.0.0.1:1", "credit-scoring", pipeline_experiment="")
    assert settings.experiments == {
        "pipeline": PipelineSettings(model_name="credit-scoring").experiment,
        "audit": RegistrySettings().audit_experiment,
        "monitoring": MonitoringSettings().experiment_name,
        "portfolio": PortfolioSettings().experiment_name,
    }
    monkeypatch.setenv("MONITORING_EXPERIMENT_NAME", "drift-elsewhere")
    monkeypatch.setenv("REGISTRY_AUDIT_EXPERIMENT", "audit-elsewhere")
    passwords = {f"MLFLOW_{user.upper()}_PASSWORD": password for user, password in PASSWORDS.items()}
    for variable, value in passwords.items():
        monkeypatch.setenv(variable, value)
    from_environment = AccessSettings()  # type: ignore[call-arg]
    assert from_environment.experiments["monitoring"] == MonitoringSettings().experiment_name == "drift-elsewhere"
    assert from_environment.experiments["audit"] == RegistrySettings().audit_experiment == "audit-elsewhere"


def test_placeholder_short_and_shared_passwords_are_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="reader password is a placeholder"):
        access_settings("http://x", "m", reader_password="password1234")
    with pytest.raises(ValidationError, match="gateway password is shorter than 12"):
        access_settings("http://x", "m", gateway_password="short")
    with pytest.raises(ValidationError, match="two service users share a password"):
        access_settings("http://x", "m", gateway_password=PASSWORDS["reader"])
    development = access_settings("http://x", "m", environment="development", reader_password="password1234")
    assert development.reader_password.get_secret_value() == "password1234"


def test_only_the_writers_get_grants_and_nobody_writes_everything() -> None:
    plan = access_plan(access_settings("http://x", "credit-scoring"))
    writers = {grant.user for grant in plan}
    assert writers == {"trainer", "registry", "airflow"}  # gateway and reader only read
    assert {(g.user, g.resource) for g in plan if g.resource_type == "registered_model"} == {
        (user, "credit-scoring") for user in writers
    }
    registry_experiments = {g.resource for g in plan if g.user == "registry" and g.resource_type == "experiment"}
    assert registry_experiments == {"credit-scoring-runs", "registry-audit"}


def test_provisioning_creates_the_users_and_is_idempotent(provisioned: Provisioned) -> None:
    with signed_in(ADMIN, ADMIN_PASSWORD):
        again = provision(provisioned.settings)
        auth = get_app_client("basic-auth", tracking_uri=provisioned.url)
        users = {user: auth.get_user(user) for user in USERS}
        experiment = MlflowClient(provisioned.url).get_experiment_by_name("registry-audit")
        assert experiment is not None
        permission = auth.get_user_permission("registry", "experiment", experiment.experiment_id).permission
    assert not any(user.is_admin for user in users.values())
    assert again.created_users == [] and sorted(again.updated_users) == sorted(USERS)
    assert again.created_resources == [] and again.granted == []
    assert again.unchanged_grants == len(access_plan(provisioned.settings))
    assert permission == "EDIT"
    # Every service user signs in with the configured password (updated, not duplicated, on the second run).
    for user, password in PASSWORDS.items():
        answer = requests.get(f"{provisioned.url}/api/2.0/mlflow/registered-models/get",
                              params={"name": provisioned.model}, auth=(user, password), timeout=10)  # fmt: skip
        assert answer.status_code == 200, (user, answer.text)


def test_provisioning_as_a_non_admin_is_refused_in_one_line(provisioned: Provisioned) -> None:
    env = mlflow_cli_environment(provisioned.url, MLFLOW_TRACKING_USERNAME="reader",
                                 MLFLOW_TRACKING_PASSWORD=PASSWORDS["reader"],
                                 **{f"MLFLOW_{u.upper()}_PASSWORD": p for u, p in PASSWORDS.items()})  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "registry.access"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip().splitlines()[-1] == "error: MLflow user reader is not an admin: it cannot provision users"
    )
    assert "Traceback" not in done.stderr


def test_the_trainer_registered_into_the_provisioned_model(provisioned: Provisioned) -> None:
    with signed_in("reader", PASSWORDS["reader"]):
        client = MlflowClient(provisioned.url)
        versions = client.search_model_versions(f"name = '{provisioned.model}'")
        runs_experiment = client.get_experiment_by_name(provisioned.settings.experiments["pipeline"])
        experiments = {client.get_run(v.run_id).info.experiment_id for v in versions}
    assert {v.version for v in versions} == {provisioned.production, provisioned.staging}
    assert runs_experiment is not None and experiments == {runs_experiment.experiment_id}


def test_an_anonymous_alias_move_is_refused_and_production_stays(provisioned: Provisioned) -> None:
    with signed_in(None), pytest.raises(MlflowException) as refused:
        MlflowClient(provisioned.url).set_registered_model_alias(
            provisioned.model, PRODUCTION_ALIAS, provisioned.staging
        )
    assert refused.value.get_http_status_code() == 401
    move = {"name": provisioned.model, "alias": PRODUCTION_ALIAS, "version": provisioned.staging}
    answer = requests.post(f"{provisioned.url}/api/2.0/mlflow/registered-models/alias", json=move, timeout=10)
    assert answer.status_code == 401
    assert production_of(provisioned) == provisioned.production


def test_the_reader_can_neither_register_nor_promote(provisioned: Provisioned) -> None:
    with signed_in("reader", PASSWORDS["reader"]):
        client = MlflowClient(provisioned.url)
        source = client.get_model_version(provisioned.model, provisioned.production)
        with pytest.raises(MlflowException) as register:
            client.create_model_version(provisioned.model, source.source, run_id=source.run_id)
        with pytest.raises(MlflowException) as promote:
            client.set_registered_model_alias(provisioned.model, PRODUCTION_ALIAS, provisioned.staging)
        with pytest.raises(MlflowException) as unset:
            client.delete_registered_model_alias(provisioned.model, PRODUCTION_ALIAS)
        versions = client.search_model_versions(f"name = '{provisioned.model}'")
    assert [e.value.get_http_status_code() for e in (register, promote, unset)] == [403, 403, 403]
    assert len(versions) == 2
    assert production_of(provisioned) == provisioned.production


def test_a_signed_in_reader_may_scrape_metrics_and_nobody_else(provisioned: Provisioned) -> None:
    assert requests.get(f"{provisioned.url}/health", timeout=10).status_code == 200  # health checks stay open
    assert requests.get(f"{provisioned.url}/metrics", timeout=10).status_code == 401
    scraped = requests.get(f"{provisioned.url}/metrics", auth=("reader", PASSWORDS["reader"]), timeout=10)
    assert scraped.status_code == 200 and "mlflow_http_request" in scraped.text


def registry_cli(
    provisioned: Provisioned, user: str | None, password: str | None, *args: str
) -> subprocess.CompletedProcess[str]:
    env = mlflow_cli_environment(provisioned.url, CREDIT_REGISTERED_MODEL_NAME=provisioned.model)
    env.pop("MLFLOW_TRACKING_USERNAME", None)
    env.pop("MLFLOW_TRACKING_PASSWORD", None)
    if user is not None:
        env |= {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password or ""}
    command = [sys.executable, "-m", "registry", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


@pytest.mark.parametrize(
    ("user", "password", "expected"),
    [
        (None, None, "error: MLflow: not signed in: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
        ("registry", "not-the-password", "error: MLflow: the tracking server refused user registry's credentials"),
        ("reader", PASSWORDS["reader"], "error: MLflow: permission denied: MLflow user reader may not do this"),
    ],
)
def test_the_cli_refuses_a_promotion_without_the_right_user_in_one_line(
    provisioned: Provisioned, user: str | None, password: str | None, expected: str
) -> None:
    done = registry_cli(provisioned, user, password, "promote", "--version", provisioned.staging, "--force",
                        "--reason", "access test")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(expected), done.stderr
    assert "Traceback" not in done.stderr
    assert production_of(provisioned) == provisioned.production


def test_the_registry_user_moves_production_through_the_cli(provisioned: Provisioned) -> None:
    promoted = registry_cli(provisioned, "registry", PASSWORDS["registry"], "promote", "--version",
                            provisioned.staging, "--force", "--reason", "access test")  # fmt: skip
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert production_of(provisioned) == provisioned.staging
    rolled_back = registry_cli(provisioned, "registry", PASSWORDS["registry"], "rollback", "--reason", "access test")
    assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
    assert production_of(provisioned) == provisioned.production
    history = registry_cli(provisioned, "reader", PASSWORDS["reader"], "history")
    assert history.returncode == 0 and "rollback" in history.stdout and "promote" in history.stdout, history.stderr
