"""Who may do what on the MLflow tracking server (its basic-auth app): the service users, what each may write, and
`python -m registry.access`, which provisions them as the MLflow admin, idempotently (docs/deployment.md).

Everyone signed in reads everything (the server's `default_permission = READ`); writers get EDIT on the experiments
they write and MANAGE on the registered model (a failed registration deletes its versions and a promotion removes
the staging alias: both need MANAGE). The experiments and the registered model are created here, empty, if missing:
a permission on an experiment needs the experiment to exist, and the pipeline uses existing ones as they are.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Self

import click
from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient
from mlflow.tracking import MlflowClient
from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import SettingsConfigDict

from registry.errors import RegistryError, access_problem, first_line, validation_problems
from registry.server import check_tracking_server, displayed
from registry.settings import RegisteredModelSettings

logger = logging.getLogger(__name__)

READ, EDIT, MANAGE = "READ", "EDIT", "MANAGE"
EXPERIMENT, REGISTERED_MODEL = "experiment", "registered_model"
# MLflow's own rule (mlflow.utils.validation): a shorter password is refused when the user is created.
MIN_PASSWORD_LENGTH = 12
PLACEHOLDER_PASSWORDS = {"changeme", "change-me", "password", "password1234", "secret", "admin", "example"}


class AccessError(RegistryError):
    """The provisioning cannot run as configured (no admin credentials, a deleted experiment, ...)."""


class AccessSettings(RegisteredModelSettings):
    """The service users' passwords (secrets) and the names of what they write, from the environment.

    The experiment names are read from the same variables as the packages that write them (CREDIT_EXPERIMENT_NAME,
    REGISTRY_AUDIT_EXPERIMENT, MONITORING_EXPERIMENT_NAME, PORTFOLIO_EXPERIMENT_NAME), with the same defaults
    (tests/registry/test_access.py checks that they agree): this package does not import those.
    """

    model_config = SettingsConfigDict(env_prefix="MLFLOW_", extra="ignore", populate_by_name=True)

    # "development" accepts placeholder passwords (a laptop, the tests); anything else refuses them.
    environment: str = Field(default="production", validation_alias=AliasChoices("MLFLOW_ACCESS_ENVIRONMENT"))
    # Who runs the provisioning: MLflow's client reads the same two variables for every request.
    admin_username: str | None = Field(default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_USERNAME"))
    admin_password: SecretStr | None = Field(default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_PASSWORD"))
    trainer_password: SecretStr
    registry_password: SecretStr
    airflow_password: SecretStr
    gateway_password: SecretStr
    reader_password: SecretStr
    pipeline_experiment: str | None = Field(default=None, validation_alias=AliasChoices("CREDIT_EXPERIMENT_NAME"))
    audit_experiment: str = Field(default="registry-audit", validation_alias=AliasChoices("REGISTRY_AUDIT_EXPERIMENT"))
    monitoring_experiment: str = Field(
        default="monitoring", validation_alias=AliasChoices("MONITORING_EXPERIMENT_NAME")
    )
    portfolio_experiment: str = Field(
        default="portfolio-scoring", validation_alias=AliasChoices("PORTFOLIO_EXPERIMENT_NAME")
    )

    def passwords(self) -> dict[str, SecretStr]:
        return {
            "trainer": self.trainer_password,
            "registry": self.registry_password,
            "airflow": self.airflow_password,
            "gateway": self.gateway_password,
            "reader": self.reader_password,
        }

    @model_validator(mode="after")
    def _refuse_weak_passwords(self) -> Self:
        problems = []
        for user, secret in self.passwords().items():
            password = secret.get_secret_value()
            if len(password) < MIN_PASSWORD_LENGTH:
                problems.append(f"the {user} password is shorter than {MIN_PASSWORD_LENGTH} characters")
            elif self.environment != "development" and password.strip().lower() in PLACEHOLDER_PASSWORDS:
                problems.append(f"the {user} password is a placeholder")
        values = [secret.get_secret_value() for secret in self.passwords().values()]
        if self.environment != "development" and len(set(values)) < len(values):
            problems.append("two service users share a password")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def experiments(self) -> dict[str, str]:
        """Role -> experiment name: the pipeline's (named like the registered model unless CREDIT_EXPERIMENT_NAME
        says otherwise, as `steps.settings.PipelineSettings.experiment`), the audit trail, drift, portfolio."""
        return {
            "pipeline": self.pipeline_experiment or self.model_name,
            "audit": self.audit_experiment,
            "monitoring": self.monitoring_experiment,
            "portfolio": self.portfolio_experiment,
        }


@dataclass(frozen=True)
class Grant:
    user: str
    resource_type: str  # EXPERIMENT (by name here, by id on the server) or REGISTERED_MODEL
    resource: str
    permission: str


# Who writes what (by experiment role); gateway and reader write nothing: they read, as everyone signed in does.
WRITERS: dict[str, tuple[str, ...]] = {
    # `mlflow run . -e main` (runs, registration, the first promotion's audit record); compose's drift one-shot.
    "trainer": ("pipeline", "audit", "monitoring"),
    # People promoting: alias moves and their audit records, model cards written into the versions' source runs.
    "registry": ("pipeline", "audit"),
    # The DAGs: retraining, promotion, drift, the monthly portfolio scoring.
    "airflow": ("pipeline", "audit", "monitoring", "portfolio"),
}
USERS = ("trainer", "registry", "airflow", "gateway", "reader")


def access_plan(settings: AccessSettings) -> list[Grant]:
    """Every grant the service users hold: EDIT on the experiments they write, MANAGE on the registered model."""
    grants = []
    for user, roles in WRITERS.items():
        grants += [Grant(user, EXPERIMENT, settings.experiments[role], EDIT) for role in roles]
        grants.append(Grant(user, REGISTERED_MODEL, settings.model_name, MANAGE))
    return grants


@dataclass
class ProvisionResult:
    created_users: list[str] = field(default_factory=list)
    updated_users: list[str] = field(default_factory=list)  # existing: password set to the configured one
    created_resources: list[str] = field(default_factory=list)
    granted: list[Grant] = field(default_factory=list)  # new or changed grants
    unchanged_grants: int = 0


def provision(settings: AccessSettings) -> ProvisionResult:
    """Create or update the service users, the experiments and the registered model, and the grants of the plan.

    Safe to run again: an existing user gets the configured password (the secrets are the source of truth, so a
    rotation is: change the secret, run this, restart the user's processes) and loses an admin flag; an existing
    grant with another permission is replaced; nothing is deleted (a user or grant added by hand stays).
    MLflow's clients sign in with MLFLOW_TRACKING_USERNAME/PASSWORD, the variables `admin_username` and
    `admin_password` are read from: the process's environment must hold the admin's.
    """
    if not settings.admin_username or settings.admin_password is None:
        raise AccessError(
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD must name the MLflow admin (the server's "
            "MLFLOW_AUTH_ADMIN_USERNAME, default admin, and MLFLOW_AUTH_ADMIN_PASSWORD)"
        )
    check_tracking_server(settings.tracking_uri)
    uri = str(settings.tracking_uri)
    auth, client = AuthServiceClient(uri), MlflowClient(uri)
    if not auth.get_user(settings.admin_username).is_admin:
        raise AccessError(f"MLflow user {settings.admin_username} is not an admin: it cannot provision users")
    result = ProvisionResult()
    for user in USERS:
        _ensure_user(auth, user, settings.passwords()[user].get_secret_value(), result)
    experiment_ids = {name: _ensure_experiment(client, name, result) for name in settings.experiments.values()}
    _ensure_registered_model(client, settings.model_name, result)
    for grant in access_plan(settings):
        resource_id = experiment_ids[grant.resource] if grant.resource_type == EXPERIMENT else grant.resource
        _ensure_grant(auth, grant, resource_id, result)
    logger.info(
        "MLflow access at %s: users created %s, updated %s; created %s; %d grant(s) set, %d unchanged",
        displayed(uri), result.created_users or "none", result.updated_users or "none",
        result.created_resources or "nothing", len(result.granted), result.unchanged_grants,
    )  # fmt: skip
    return result


def _ensure_user(auth: AuthServiceClient, user: str, password: str, result: ProvisionResult) -> None:
    try:
        auth.create_user(user, password)
        result.created_users.append(user)
        return
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    auth.update_user_password(user, password)
    if auth.get_user(user).is_admin:
        auth.update_user_admin(user, False)  # a service user is never an admin, whoever made it one
    result.updated_users.append(user)


def _ensure_experiment(client: MlflowClient, name: str, result: ProvisionResult) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        result.created_resources.append(f"experiment {name}")
        return client.create_experiment(name)
    if experiment.lifecycle_stage == "deleted":
        raise AccessError(f"experiment {name} is deleted: restore it (mlflow experiments restore) or name another")
    return str(experiment.experiment_id)


def _ensure_registered_model(client: MlflowClient, name: str, result: ProvisionResult) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        # Empty: registration (registry.versions.registration) adds versions to an existing model as it is.
        client.create_registered_model(name, description="Credit-scoring MLP (ONNX); probability of default.")
        result.created_resources.append(f"registered model {name}")


def _ensure_grant(auth: AuthServiceClient, grant: Grant, resource_id: str, result: ProvisionResult) -> None:
    try:
        auth.grant_user_permission(grant.user, grant.resource_type, resource_id, grant.permission)
        result.granted.append(grant)
        return
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    current = auth.get_user_permission(grant.user, grant.resource_type, resource_id).permission
    if current == grant.permission:
        result.unchanged_grants += 1
        return
    auth.revoke_user_permission(grant.user, grant.resource_type, resource_id)
    auth.grant_user_permission(grant.user, grant.resource_type, resource_id, grant.permission)
    result.granted.append(grant)


@click.command(help="Provision MLflow's service users and their permissions, as the MLflow admin (idempotent).")
def cli() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        provision(AccessSettings())  # type: ignore[call-arg]  # the passwords come from the environment
    except ValidationError as error:
        _fail(validation_problems(error))
    except RegistryError as error:
        _fail(str(error))
    except MlflowException as error:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        _fail(f"MLflow: {access_problem(error, user) or first_line(error)}")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(2)


if __name__ == "__main__":
    cli(prog_name="python -m registry.access")
