"""Every environment variable, port, command and path that compose, the Dockerfiles, Kubernetes and the workflow
name is one the code reads, listens on, runs or ships: a renamed setting cannot leave a deployment file behind."""

from __future__ import annotations

import importlib
import importlib.util
import re
from typing import Any

import click
import mlflow.environment_variables
import pytest
from mlflow.cli import cli as mlflow_cli
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from monitoring.settings import MonitoringSettings
from orchestration.portfolio import MonthlyPortfolioSettings
from orchestration.settings import ApprovalPolicy, OrchestrationSettings
from registry.access import AccessSettings
from registry.settings import RegistrySettings
from serving.server import ServerSettings
from serving.settings import ServingSettings
from steps.settings import PipelineSettings
from tests.deploy.conftest import (
    COMPOSE,
    DOCKERFILES,
    KUBERNETES,
    REPO,
    WORKFLOW,
    by_kind,
    copy_sources,
    load_yaml,
    survives_the_build_context,
)

OUR_SERVICES = {"mlflow", "trainer", "gateway"}  # compose services running this repository's images (+ airflow-*)
# Variables of the processes themselves rather than of our code, each read by what is named.
STANDARD = {
    "PATH", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",  # Python
    "HOME", "TMPDIR",  # every process: the home and temporary folders (below a tmpfs: the root is read-only)
    "MPLCONFIGDIR",  # matplotlib's config folder (the root filesystem is read-only)
    "AIRFLOW_HOME",  # Airflow's home
}  # fmt: skip
THIRD_PARTY = {
    "postgres": re.compile(r"POSTGRES_\w+"),  # the postgres image's entrypoint
    "redis": re.compile(r"REDISCLI_AUTH"),  # redis-cli (the health check)
    "grafana": re.compile(r"GF_\w+"),  # Grafana's configuration from the environment
}
SCRIPTS = {  # compose services whose variables are read by a script of this repository
    "postgres": REPO / "compose" / "postgres" / "init-databases.sh",
    "trainer": REPO / "docker" / "trainer-entrypoint.sh",
    "airflow-init": REPO / "docker" / "airflow-init.sh",
    "alloy": REPO / "monitoring" / "alloy" / "config.alloy",
}


def settings_variables(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice) for choice in alias.choices}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def environ_variables(module: str) -> set[str]:
    """The variables a module reads with os.environ.get (serving/gunicorn_conf.py, serving/server.py)."""
    return set(re.findall(r'os\.environ\.get\("(\w+)"', (REPO / module).read_text()))


def server_variables() -> set[str]:
    """What `python -m serving` reads before the app does: its ServerSettings and either server's own variables."""
    return (
        settings_variables(ServerSettings)
        | environ_variables("serving/gunicorn_conf.py")
        | environ_variables("serving/server.py")
    )


def mlflow_variables() -> set[str]:
    """MLflow's documented environment variables and every envvar of `mlflow server`'s options."""
    names = {
        value.name
        for value in vars(mlflow.environment_variables).values()
        if hasattr(value, "name") and hasattr(value, "get")
    }
    server = mlflow_cli.commands["server"]
    return names | {param.envvar for param in server.params if isinstance(param.envvar, str)}


def mlflow_client_variables() -> set[str]:
    """MLflow's variables a client reads: everything but the server's own (`mlflow server` options, MLFLOW_SERVER_*)."""
    server = mlflow_cli.commands["server"]
    server_only = {param.envvar for param in server.params if isinstance(param.envvar, str)}
    return {name for name in mlflow_variables() - server_only if not name.startswith("MLFLOW_SERVER_")}


def readers() -> dict[str, set[str]]:
    """What each process reads, from the settings classes its command builds: a variable is checked against the
    process it is given to, not against the union (a gateway given MONITORING_* must fail)."""
    registry = settings_variables(RegistrySettings)
    client = mlflow_client_variables() | STANDARD
    airflow = settings_variables(PipelineSettings) | registry | settings_variables(MonitoringSettings) | client
    return {
        # `python -m serving` + serving.wsgi: ServingSettings, the registry client (RegistrySettings.of), the server.
        "gateway": settings_variables(ServingSettings) | registry | server_variables() | client,
        # docker/trainer-entrypoint.sh: `mlflow run . -e main` (PipelineSettings, the registry's gate and promotion)
        # and `python -m registry status`; it runs no drift job (no MonitoringSettings).
        "trainer": settings_variables(PipelineSettings) | registry | client,
        # compose's `drift` (the trainer image): `python -m monitoring.drift` alone.
        "drift": settings_variables(MonitoringSettings) | registry | client,
        # `python -m registry.access` (compose's mlflow-access, the Kubernetes Job): AccessSettings as the admin.
        "access": settings_variables(AccessSettings) | client,
        # `mlflow server`: MLflow's own variables only.
        "mlflow": mlflow_variables() | STANDARD,
        # The DAGs' tasks (orchestration/: OrchestrationSettings, MonthlyPortfolioSettings) call steps/, registry/,
        # monitoring/ and portfolio/ in-process; AIRFLOW__* are checked apart, against Airflow's own configuration.
        "airflow": airflow
        | settings_variables(OrchestrationSettings)
        | settings_variables(MonthlyPortfolioSettings)
        | settings_variables(ApprovalPolicy),
    }


COMPOSE_PROCESS = {
    "gateway": "gateway",
    "trainer": "trainer",
    "mlflow": "mlflow",
    "drift": "drift",
    "mlflow-access": "access",
}  # + airflow-* -> "airflow"
KUBERNETES_PROCESS = {"gateway": "gateway", "gateway-canary": "gateway", "mlflow": "mlflow", "mlflow-access": "access"}
DOCKERFILE_PROCESSES = {
    "gateway.Dockerfile": {"gateway"},
    "trainer.Dockerfile": {"trainer", "mlflow", "drift", "access"},  # also the tracking server, drift, mlflow-access
    "airflow.Dockerfile": {"airflow"},
}


@pytest.fixture(scope="module")
def read_by() -> dict[str, set[str]]:
    return readers()


def airflow_option_exists(name: str) -> bool:
    """AIRFLOW__SECTION__KEY names an option of the installed Airflow's configuration (the `airflow` extra): its
    config description, which also lists options without a default (conf.has_option is False for those)."""
    match = re.fullmatch(r"AIRFLOW__([A-Z_]+?)__([A-Z_]+)", name)
    assert match, f"{name} is not of the form AIRFLOW__SECTION__KEY"
    from airflow.configuration import conf

    section = conf.configuration_description.get(match.group(1).lower(), {})
    return match.group(2).lower() in section.get("options", {})


def test_the_airflow_option_check_refuses_a_made_up_option() -> None:
    assert airflow_option_exists("AIRFLOW__API_AUTH__JWT_SECRET")
    assert airflow_option_exists("AIRFLOW__CORE__EXECUTION_API_SERVER_URL")  # no default, still an option
    assert not airflow_option_exists("AIRFLOW__CORE__NO_SUCH_OPTION")
    assert not airflow_option_exists("AIRFLOW__NO_SECTION__EXECUTOR")


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(COMPOSE)["services"]
    return services


def test_settings_variables_are_found() -> None:
    serving = settings_variables(ServingSettings)
    assert {"SERVING_ADMIN_TOKEN", "REDIS_URL", "MLFLOW_TRACKING_URI", "CREDIT_REGISTERED_MODEL_NAME"} <= serving
    assert environ_variables("serving/gunicorn_conf.py") == {"SERVING_TIMEOUT_S"}  # the rest via ServerSettings
    assert {"SERVING_SERVER", "SERVING_LOG_FILE", "SERVING_WORKERS", "PROMETHEUS_MULTIPROC_DIR"} <= server_variables()
    assert {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_SERVER_ALLOWED_HOSTS", "MLFLOW_DISABLE_TELEMETRY"} <= mlflow_variables()


def test_compose_variables_are_read_by_what_runs_them(read_by: dict[str, set[str]]) -> None:
    for name, service in compose_services().items():
        script = SCRIPTS[name].read_text() if name in SCRIPTS else ""
        process = "airflow" if name.startswith("airflow") else COMPOSE_PROCESS.get(name)
        known = read_by[process] if process else set()
        for variable in service.get("environment", {}):
            if variable in known or re.search(r"\b" + variable + r"\b", script):
                continue
            if name in THIRD_PARTY and THIRD_PARTY[name].fullmatch(variable):
                continue
            if process == "airflow" and variable.startswith("AIRFLOW__"):
                assert airflow_option_exists(variable), f"{name}: {variable} is no Airflow option"
                continue
            pytest.fail(f"compose service {name} sets {variable}, which nothing it runs reads")


def test_a_variable_of_another_process_is_refused(read_by: dict[str, set[str]]) -> None:
    # What the per-process check exists for: a monitoring setting given to the gateway is read by nothing there.
    assert "MONITORING_PSI_ACT" in settings_variables(MonitoringSettings)
    assert not {name for name in read_by["gateway"] if name.startswith("MONITORING_")}
    assert not {name for name in read_by["trainer"] if name.startswith(("MONITORING_", "SERVING_"))}
    assert "MLFLOW_BACKEND_STORE_URI" not in read_by["gateway"] | read_by["trainer"]
    assert "SERVING_ADMIN_TOKEN" not in read_by["mlflow"]


def test_kubernetes_variables_are_read_by_the_code(read_by: dict[str, set[str]], rendered) -> None:
    secret_keys = set()
    for manifests in rendered.values():
        configmaps = by_kind(manifests, "ConfigMap")
        workloads = [*by_kind(manifests, "Deployment").values(), *by_kind(manifests, "Job").values()]
        for deployment in workloads:
            process = KUBERNETES_PROCESS[deployment["metadata"]["name"]]
            pod = deployment["spec"]["template"]["spec"]
            # A Secret mounted as files (MLflow's auth ini): its keys are read by the process through that path.
            secret_keys |= {
                item["key"] for volume in pod.get("volumes", []) for item in volume.get("secret", {}).get("items", [])
            }
            for container in pod["containers"]:
                names = {item["name"] for item in container.get("env", [])}
                secret_keys |= {
                    item["valueFrom"]["secretKeyRef"]["key"]
                    for item in container.get("env", [])
                    if "secretKeyRef" in item.get("valueFrom", {})
                }
                for source in container.get("envFrom", []):
                    names |= set(configmaps[source["configMapRef"]["name"]]["data"])
                unknown = names - read_by[process]
                assert not unknown, f"{deployment['metadata']['name']} sets {unknown}, which its process does not read"
    template = load_yaml(KUBERNETES / "base" / "secrets.example.yaml")
    assert set(template["stringData"]) <= secret_keys, "the Secret template holds keys no container reads"


def test_dockerfile_variables_are_read_by_the_code(read_by: dict[str, set[str]]) -> None:
    for dockerfile in DOCKERFILES:
        known = set().union(*(read_by[process] for process in DOCKERFILE_PROCESSES[dockerfile.name]))
        final = dockerfile.read_text().split(" AS runtime", 1)[1]
        for block in re.findall(r"^ENV (.+?)(?<!\\)$", final, re.M | re.S):
            for variable in re.findall(r"(\w+)=", block):
                assert variable in known, f"{dockerfile.name} sets {variable}, which its processes do not read"


def test_ports_agree_everywhere(rendered) -> None:
    services = compose_services()
    gateway_bind = services["gateway"]["environment"]["SERVING_BIND"]
    assert gateway_bind.endswith(":8000")
    assert services["gateway"]["ports"] == ["${BIND_ADDRESS:-127.0.0.1}:${GATEWAY_HOST_PORT:-8000}:8000"]
    assert "--port=5000" in services["mlflow"]["command"]
    assert services["airflow-api-server"]["command"][-2:] == ["--port", "8080"]
    gateway = (REPO / "docker" / "gateway.Dockerfile").read_text()
    assert "SERVING_BIND=0.0.0.0:8000" in gateway and "EXPOSE 8000" in gateway and "127.0.0.1:8000/health" in gateway
    # Prometheus (compose) scrapes each service on the port it listens on inside the network: the gateway's metrics
    # on their own port (SERVING_METRICS_BIND), not on 8000.
    metrics_port = int(services["gateway"]["environment"]["SERVING_METRICS_BIND"].rsplit(":", 1)[1])
    listening = {"gateway": metrics_port, "pushgateway": 9091, "mlflow": 5000, "localhost": 9090}
    config = load_yaml(REPO / "compose" / "prometheus" / "prometheus.yml")
    for job in config["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert listening[host] == int(port), target
            assert host == "localhost" or host in services
    for manifests in rendered.values():
        mlflow = by_kind(manifests, "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"][0]
        assert "--port=5000" in mlflow["args"] and mlflow["ports"][0]["containerPort"] == 5000
        config_map = by_kind(manifests, "ConfigMap")["gateway-config"]["data"]
        assert config_map["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert by_kind(manifests, "Service")["mlflow"]["spec"]["ports"][0]["port"] == 5000


def mlflow_server_options() -> set[str]:
    server: click.Command = mlflow_cli.commands["server"]
    return {opt for param in server.params for opt in (*param.opts, *param.secondary_opts)}


def test_commands_exist(rendered) -> None:
    services = compose_services()
    options = mlflow_server_options()
    commands = [services["mlflow"]["command"]]
    commands += [
        by_kind(m, "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"][0] for m in rendered.values()
    ]
    for command in commands:
        arguments = command["args"] if isinstance(command, dict) else command[2:]
        for argument in arguments:
            assert argument.split("=")[0] in options, f"mlflow server has no {argument}"
    trainer = services["trainer"]["command"][0]
    assert (REPO / trainer).is_file() and f"COPY {trainer} {trainer}" in (
        REPO / "docker" / "trainer.Dockerfile"
    ).read_text()
    init = services["airflow-init"]["command"][0].removeprefix("/opt/credit-scoring/")
    assert (REPO / init).is_file() and f"COPY {init} {init}" in (REPO / "docker" / "airflow.Dockerfile").read_text()
    # `python -m serving` (the gateway image) and the modules the trainer's entry script runs.
    for module in ("serving", "registry", "steps.main"):
        assert importlib.util.find_spec(module) is not None, module
    entry = (REPO / "docker" / "trainer-entrypoint.sh").read_text()
    assert "mlflow run . -e main --env-manager local" in entry and "main:" in (REPO / "MLproject").read_text()
    assert "python -m registry status" in entry
    airflow_commands = {tuple(services[name]["command"][:2]) for name in services if name.startswith("airflow-")}
    assert {("airflow", "api-server"), ("airflow", "scheduler"), ("airflow", "dag-processor")} <= airflow_commands


def test_health_checks_and_probes_ask_routes_the_gateway_has(rendered) -> None:
    operations = (REPO / "serving" / "routes" / "operations.py").read_text()
    for path in ("/health", "/ready"):
        assert f'"{path}"' in operations, f"the gateway has no {path} route"
    assert "/ready" in str(compose_services()["gateway"]["healthcheck"]["test"])


def test_paths_the_workflow_and_images_name_exist() -> None:
    workflow = WORKFLOW.read_text()
    for path in re.findall(r"(?:run: |bash )((?:scripts|\.ci)/[\w./-]+)", workflow):
        assert (REPO / path).is_file(), path
    for dockerfile in DOCKERFILES:
        for source in copy_sources(dockerfile):
            assert survives_the_build_context(source), f"{dockerfile.name}: {source} is missing or .dockerignore'd"
    steps = importlib.import_module("steps.main")
    assert hasattr(steps, "cli")
