"""Registry tests run against two real tracking servers: SQLite-backed and PostgreSQL-backed.

Each backend gets real registered versions made by the pipeline's `main` on small real data:
v1/v2 base model (fp32/int8; `main` deploys v1 to production and stages v2), v3/v4 a deliberately weak model,
v5/v6 a model without the `Price` column (another input schema), v7 a copy of v1 (a candidate as good as production),
v8 a copy of v1 whose recorded parity is out of bounds, v9 a copy of v2 whose recorded INT8 agreement is too low.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS, VersionSpec, register_versions
from scripts import tracking_server
from steps.main import main
from steps.model import MLPParams
from steps.settings import PipelineSettings

POSTGRES = "host=127.0.0.1 port=5432 user=postgres"


@contextlib.contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@contextlib.contextmanager
def postgres_tracking_server(root: Path) -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(f"{POSTGRES} dbname=postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(
            "PostgreSQL is not reachable at 127.0.0.1:5432 (start it: pg_ctlcluster --skip-systemctl-redirect "
            f"$(ls /etc/postgresql) main start): the PostgreSQL-backed registry tests need it ({error})"
        )
    database = f"mlflow_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{database}"')
    port = tracking_server.free_port()
    url = f"http://127.0.0.1:{port}"
    backend = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    process = tracking_server.start(root, port, backend_uri=backend)
    try:
        tracking_server.wait_until_healthy(url, process, root / "server.log")
        yield url
    finally:
        tracking_server.stop(process)
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        # The session's server is SQLite-backed; the module's models get their own name on it.
        yield request.getfixturevalue("mlflow_server")
        return
    with postgres_tracking_server(tmp_path_factory.mktemp("mlflow-postgres")) as url:
        yield url


@dataclass(frozen=True)
class RegistryFixture:
    url: str
    model_name: str
    versions: dict[str, str]  # role -> version number
    main_run_id: str


FAST = {"cv_folds": 0, "batch_sizes": [1], "benchmark_repeats": 20}


@pytest.fixture(scope="module")
def registry_models(backend_server: str, small_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> RegistryFixture:
    name = f"credit-registry-{uuid.uuid4().hex[:8]}"
    settings = PipelineSettings(tracking_uri=backend_server, experiment_name=f"{name}-runs", registered_model_name=name)
    without_price = tmp_path_factory.mktemp("schema") / "credit_without_price.csv"
    pd.read_csv(small_csv).drop(columns=["Price"]).to_csv(without_price, index=False)
    with global_tracking_uri(backend_server):
        good = MLPParams(hidden_layers=(16,), max_epochs=40, patience=5)
        base = main(small_csv, params=good, settings=settings, **FAST)
        weak = MLPParams(hidden_layers=(1,), max_epochs=1, learning_rate=1e-5, patience=1, seed=3)
        main(small_csv, params=weak, settings=settings, promote_first=False, **FAST)
        main(without_price, params=good, settings=settings, **FAST)
        client = MlflowClient()
        v1, v2 = client.get_model_version(name, "1"), client.get_model_version(name, "2")
        copies = [
            VersionSpec(v1.source, dict(v1.tags)),
            VersionSpec(v1.source, {**v1.tags, "parity_max_abs_diff": "0.01"}),
            VersionSpec(v2.source, {**v2.tags, "decision_agreement": "0.5"}),
        ]
        register_versions(name, copies)
    roles = {
        "base_fp32": "1",
        "base_int8": "2",
        "weak_fp32": "3",
        "other_schema": "5",
        "copy_of_production": "7",
        "bad_parity": "8",
        "bad_agreement": "9",
    }
    return RegistryFixture(backend_server, name, roles, base.run_id)


@pytest.fixture
def registry(registry_models: RegistryFixture, tmp_path: Path) -> Iterator[RegistrySettings]:
    """Settings for the module's model, the global tracking URI on its server, production back on v1, no staging."""
    client = MlflowClient(registry_models.url)
    client.set_registered_model_alias(registry_models.model_name, PRODUCTION_ALIAS, "1")
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.delete_registered_model_alias(registry_models.model_name, STAGING_ALIAS)
    with global_tracking_uri(registry_models.url):
        yield RegistrySettings(
            tracking_uri=registry_models.url, model_name=registry_models.model_name, cache_dir=tmp_path / "cache"
        )
