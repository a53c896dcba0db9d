"""Settings of the DAGs' tasks: which tracking server (from `MLFLOW_TRACKING_URI`, else an Airflow connection) and
which registered model. Resolved when a task runs, never when a DAG file is parsed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from registry.errors import validation_problems
from registry.settings import RegisteredModelSettings

logger = logging.getLogger(__name__)

DEFAULT_CONNECTION_ID = "mlflow_default"


class ConnectionLike(Protocol):
    """What is read of an Airflow connection (airflow.sdk.Connection has these attributes)."""

    @property
    def conn_type(self) -> str | None: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def schema(self) -> str | None: ...


class OrchestrationError(Exception):
    """A mistake in a DAG's configuration or Params, meant for the person who triggered it."""


class OrchestrationSettings(RegisteredModelSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_", extra="ignore", populate_by_name=True)

    # Used only when MLFLOW_TRACKING_URI is unset: an Airflow connection (UI, `airflow connections add`, or
    # AIRFLOW_CONN_MLFLOW_DEFAULT='http://mlflow:5000') holding the tracking server's address.
    mlflow_conn_id: str = Field(
        default=DEFAULT_CONNECTION_ID, validation_alias=AliasChoices("CREDIT_MLFLOW_CONN_ID", "mlflow_conn_id")
    )

    def resolved_tracking_uri(self, lookup: Callable[[str], ConnectionLike] | None = None) -> str:
        """The tracking URI: `MLFLOW_TRACKING_URI` if set, else the address held by the Airflow connection."""
        if self.tracking_uri:
            return self.tracking_uri
        connection = (lookup or airflow_connection)(self.mlflow_conn_id)
        return connection_uri(connection, self.mlflow_conn_id)


class ApprovalPolicy(BaseSettings):
    """Who may answer credit_promote's sign-off (`CREDIT_FOUR_EYES`, `CREDIT_APPROVERS`)."""

    model_config = SettingsConfigDict(env_prefix="CREDIT_", extra="ignore")

    # Four eyes: the approver is neither the user who triggered the DAG run nor the one who proposed (staged) the
    # version. On unless turned off; `make airflow` (one local user) turns it off.
    four_eyes: bool = True
    # Comma-separated Airflow user ids; when set, the sign-off is assigned to them alone (Airflow refuses anyone
    # else's answer) and the promote task checks it again. Empty: any user who may answer Airflow's approvals.
    approvers: str = ""

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.approvers.split(",") if name.strip())


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A Param validator: the value must be one of `choices` (named in the error)."""

    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    return check


class DagParams(BaseModel):
    """A DAG's Params, checked once when a task reads them: a bad value is an OrchestrationError naming its Param."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Self:
        try:
            return cls.model_validate(dict(params))
        except ValidationError as error:
            raise OrchestrationError(validation_problems(error, prefix="Param ")) from error


def airflow_connection(conn_id: str) -> ConnectionLike:
    """The Airflow connection `conn_id` (imported here: the rest of the package runs without Airflow)."""
    from airflow.sdk import BaseHook

    try:
        connection: ConnectionLike = BaseHook.get_connection(conn_id)
    except Exception as error:  # Airflow raises its own "not defined" error; the message says what to set instead
        raise OrchestrationError(
            f"MLFLOW_TRACKING_URI is not set and the Airflow connection {conn_id!r} (CREDIT_MLFLOW_CONN_ID) cannot be "
            f"read: {error}"
        ) from error
    return connection


def connection_uri(connection: ConnectionLike, conn_id: str) -> str:
    """`http://host:port/path` of a connection whose type is the scheme (`http`, `https`) and whose host is the
    server; a host that is already a URL is taken as it is."""
    host = (connection.host or "").strip()
    if not host:
        raise OrchestrationError(f"the Airflow connection {conn_id!r} has no host: set it to the tracking server")
    if "://" in host:
        return host.rstrip("/")
    scheme = (connection.conn_type or "http").lower()
    if scheme not in ("http", "https"):
        scheme = "http"
    address = f"{host}:{connection.port}" if connection.port else host
    path = f"/{connection.schema.strip('/')}" if connection.schema else ""
    return f"{scheme}://{address}{path}"
