"""Registry tests run against two real tracking servers: SQLite-backed and PostgreSQL-backed.

Each backend gets real registered versions made by the pipeline's `main` on small real data: the base model
(fp32/int8; `main` deploys its fp32 version to production and stages the int8 one), a deliberately weak model, a model
without the `Price` column and with a `Region` column (another input schema, registered with the change allowed), a
copy of the base fp32 version (a candidate as good as production), a copy of it whose recorded parity is out of
bounds, a copy of the base int8 version whose recorded INT8 agreement is too low, and a model that takes `Seniority`
as a category (a kind change). Tests look versions up by role.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS, VersionSpec, registration
from scripts import tracking_server
from steps.main import main
from steps.model import MLPParams
from steps.settings import PipelineSettings

POSTGRES = "host=127.0.0.1 port=5432 user=postgres"


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
class RegisteredVersions:
    url: str
    model_name: str
    versions: dict[str, str]  # role -> version number, as registered
    main_run_id: str


# candidate="fp32": the version numbers and aliases below must not depend on which precision a benchmark favours.
FAST = {"cv_folds": 0, "batch_sizes": [1], "benchmark_repeats": 20, "candidate": "fp32"}


@pytest.fixture(scope="module")
def registered_versions(
    backend_server: str, small_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> RegisteredVersions:
    name = f"credit-registry-{uuid.uuid4().hex[:8]}"
    settings = PipelineSettings(tracking_uri=backend_server, experiment_name=f"{name}-runs", model_name=name)
    # Another input schema: one column fewer and one the base model's data does not have at all.
    other_columns = tmp_path_factory.mktemp("schema") / "credit_other_columns.csv"
    frame = pd.read_csv(small_csv).drop(columns=["Price"])
    frame.assign(Region=np.where(frame.index % 3 == 0, "north", "south")).to_csv(other_columns, index=False)
    good = MLPParams(hidden_layers=(16,), max_epochs=40, patience=5)
    base = main(small_csv, params=good, settings=settings, **FAST)
    weak = MLPParams(hidden_layers=(1,), max_epochs=1, learning_rate=1e-5, patience=1, seed=3)
    weak_run = main(small_csv, params=weak, settings=settings, promote_first=False, **FAST)
    other = main(other_columns, params=good, settings=settings, allow_schema_change=True, **FAST)
    # The same columns, one of another kind: integer seniority declared categorical.
    kind = main(small_csv, params=good, settings=settings, categorical_columns=["Seniority"], allow_schema_change=True,
                promote_first=False, **FAST)  # fmt: skip
    client = MlflowClient(backend_server)
    fp32 = client.get_model_version(name, base.versions["fp32"])
    int8 = client.get_model_version(name, base.versions["int8"])
    copies = [
        VersionSpec(fp32.source, dict(fp32.tags)),
        VersionSpec(fp32.source, {**fp32.tags, "parity_max_abs_diff": "0.01"}),
        VersionSpec(int8.source, {**int8.tags, "decision_agreement": "0.5"}),
    ]
    with registration(client, name, copies) as created:
        copy_of_production, bad_parity, bad_agreement = (version.version for version in created)
    roles = {
        "base_fp32": base.versions["fp32"],
        "base_int8": base.versions["int8"],
        "weak_fp32": weak_run.versions["fp32"],
        "other_schema": other.versions["fp32"],
        "kind_change": kind.versions["fp32"],
        "copy_of_production": copy_of_production,
        "bad_parity": bad_parity,
        "bad_agreement": bad_agreement,
    }
    return RegisteredVersions(backend_server, name, roles, base.run_id)


@pytest.fixture
def registry_settings(registered_versions: RegisteredVersions, tmp_path: Path) -> RegistrySettings:
    """Settings for the module's model with production back on the base fp32 version and no staging alias."""
    client = MlflowClient(registered_versions.url)
    name = registered_versions.model_name
    client.set_registered_model_alias(name, PRODUCTION_ALIAS, registered_versions.versions["base_fp32"])
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.delete_registered_model_alias(name, STAGING_ALIAS)
    return RegistrySettings(tracking_uri=registered_versions.url, model_name=name, cache_dir=tmp_path / "cache")
