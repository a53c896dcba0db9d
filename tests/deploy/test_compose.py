"""compose/docker-compose.yml: valid against the compose specification, and the stack the issue asks for: services,
health checks and start order, loopback-only ports for what a user opens and none for the rest, named volumes, no
secret in the file, what lets docker-compose 1.29 and local stand-ins run it, and the monitoring configurations of
monitoring/ reused (the container variants differ from them only by addresses). tests/compose runs it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from scripts.container_images import STAND_INS, pinned_python_image
from tests.deploy.conftest import COMPOSE, REPO, load_yaml, run, tool

SERVICES = {
    "postgres", "mlflow", "redis", "trainer", "gateway", "airflow-init", "airflow-api-server", "airflow-scheduler",
    "airflow-dag-processor", "airflow-triggerer", "prometheus", "pushgateway", "grafana", "loki-volume-init", "loki",
    "alloy", "drift", "mlflow-access",
}  # fmt: skip
ONE_SHOT = {"trainer", "airflow-init", "loki-volume-init", "drift", "mlflow-access"}
# README's ports table: host port -> the service publishing it (the UIs and APIs a user opens, nothing else) and the
# variable that moves it.
PORTS = {
    8000: ("gateway", "GATEWAY_HOST_PORT"), 5000: ("mlflow", "MLFLOW_HOST_PORT"),
    8080: ("airflow-api-server", "AIRFLOW_HOST_PORT"), 9090: ("prometheus", "PROMETHEUS_HOST_PORT"),
    3000: ("grafana", "GRAFANA_HOST_PORT"),
}  # fmt: skip
INTERNAL = {"postgres", "redis", "pushgateway", "loki"}
SECRETS = {
    "POSTGRES_PASSWORD", "MLFLOW_DB_PASSWORD", "AIRFLOW_DB_PASSWORD", "REDIS_PASSWORD", "SERVING_ADMIN_TOKEN",
    "SERVING_API_KEYS", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW_APPROVER_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
}  # fmt: skip
AIRFLOW = {"airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE)
    return loaded


def test_the_file_is_valid_against_the_compose_specification() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_of_the_stack_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


def test_long_running_services_have_health_checks_and_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = condition["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s missing health check"
            elif condition == "service_completed_successfully":
                assert dependency in ONE_SHOT, f"{name} waits for {dependency} to exit, but it keeps running"
    # The order the stack needs: database -> tracking server -> trainer -> gateway; Airflow after its init.
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # The service users exist before anything signs in to MLflow (registry/access.py).
    assert services["mlflow-access"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["trainer"]["depends_on"]["mlflow-access"]["condition"] == "service_completed_successfully"
    for name in ("trainer", "gateway", "drift", "airflow-scheduler"):
        assert services[name]["environment"]["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_"), name
    assert "--app-name=basic-auth" in services["mlflow"]["command"]
    assert services["gateway"]["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    for name in AIRFLOW - {"airflow-init"}:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_ports_are_the_readmes_and_published_on_loopback_by_default(compose: dict[str, Any]) -> None:
    published = {}
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            match = re.fullmatch(r"\$\{BIND_ADDRESS:-127\.0\.0\.1\}:\$\{(\w+):-(\d+)\}:(\d+)", entry)
            assert match, (
                f"{name} publishes {entry}: not ${{BIND_ADDRESS:-127.0.0.1}}:${{<X>_HOST_PORT:-<port>}}:<port>"
            )
            variable, host, container = match.groups()
            assert host == container, entry
            published[int(host)] = (name, variable)
    assert published == PORTS
    assert not INTERNAL & {name for name, service in compose["services"].items() if service.get("ports")}
    readme = (REPO / "README.md").read_text()
    for port in PORTS:
        assert f"| {port} |" in readme, f"README's ports table lacks {port}"


def test_no_secret_is_in_the_file_and_each_is_required(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, f"{secret} is not used"
        assert all(use.startswith(":?") for use in uses), f"{secret} must be required (${{{secret}:?...}})"
    example = dict(
        line.split("=", 1) for line in (COMPOSE.parent / ".env.example").read_text().splitlines() if "=" in line
    )
    referenced = set(re.findall(r"\$\{([A-Z_]+)", text)) - {"HOSTNAME"}
    # COMPOSE_PROJECT_NAME: read by compose itself from the env file (the file has no top-level `name:`).
    assert referenced | {"COMPOSE_PROJECT_NAME"} == set(example), (
        "compose/.env.example must list exactly the variables compose reads"
    )
    assert example["COMPOSE_PROJECT_NAME"] == "credit-scoring"
    assert all(example[secret] == "" for secret in SECRETS), "compose/.env.example must hold no secret value"


def test_named_volumes_are_declared_and_mounted_files_exist(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                if source.startswith("/var/run/docker.sock"):
                    continue
                path = (COMPOSE.parent / source).resolve()
                assert path.exists(), f"{source} does not exist"
            else:
                used.add(source)
    assert used == declared


def test_airflow_shares_one_jwt_secret_and_runs_the_local_executor(compose: dict[str, Any]) -> None:
    for name in AIRFLOW:
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "${AIRFLOW_JWT_SECRET:?set AIRFLOW_JWT_SECRET}", name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://airflow:")
        assert "../airflow/dags:/opt/airflow/dags:ro" in compose["services"][name]["volumes"]
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
    assert sorted(path.name for path in (REPO / "airflow" / "dags").glob("credit_*.py")), "no DAG files to mount"


def test_mlflow_serves_its_artifacts_from_a_volume_with_a_postgresql_backend(compose: dict[str, Any]) -> None:
    mlflow = compose["services"]["mlflow"]
    assert mlflow["command"][:2] == ["mlflow", "server"]
    assert "--artifacts-destination=/var/lib/mlflow/artifacts" in mlflow["command"]
    assert "--serve-artifacts" in mlflow["command"]
    assert "mlflow-artifacts:/var/lib/mlflow/artifacts" in mlflow["volumes"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://mlflow:")


def test_the_container_monitoring_configs_differ_from_monitorings_only_by_address() -> None:
    ours = load_yaml(REPO / "compose" / "prometheus" / "prometheus.yml")
    theirs = load_yaml(REPO / "monitoring" / "prometheus" / "prometheus.yml")

    def without_targets(config: dict[str, Any]) -> dict[str, Any]:
        # MLflow runs its basic-auth app in compose only: that scrape signs in (the reader's password file).
        jobs = [
            {**job, "static_configs": [{**s, "targets": None} for s in job["static_configs"]], "basic_auth": None}
            for job in config["scrape_configs"]
        ]
        return {**config, "scrape_configs": jobs}

    assert without_targets(ours) == without_targets(theirs)
    targets = [t for job in ours["scrape_configs"] for s in job["static_configs"] for t in s["targets"]]
    assert targets == ["gateway:9100", "pushgateway:9091", "mlflow:5000", "localhost:9090"]

    ours = load_yaml(REPO / "compose" / "grafana" / "datasources.yml")
    theirs = load_yaml(REPO / "monitoring" / "grafana" / "provisioning" / "datasources" / "datasources.yml")
    strip = [{k: v for k, v in source.items() if k != "url"} for source in theirs["datasources"]]
    assert [{k: v for k, v in source.items() if k != "url"} for source in ours["datasources"]] == strip
    assert [source["url"] for source in ours["datasources"]] == ["http://prometheus:9090", "http://loki:3100"]


def test_the_gateway_keeps_the_container_name_alloy_follows(compose: dict[str, Any]) -> None:
    alloy = (REPO / "monitoring" / "alloy" / "config.alloy").read_text()
    name = compose["services"]["gateway"]["container_name"]
    assert f'regex         = "/{name}"' in alloy


def test_the_small_settings_the_review_found_are_right(compose: dict[str, Any]) -> None:
    services = compose["services"]
    # Over TCP: the socket answers during the first start's init, before the databases exist.
    assert services["postgres"]["healthcheck"]["test"][:4] == ["CMD", "pg_isready", "--host", "127.0.0.1"]
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert services["trainer"]["environment"]["TRAINER_FORCE"] == "${TRAINER_FORCE:-false}"
    assert "TRAINER_FORCE" in (REPO / "docker" / "trainer-entrypoint.sh").read_text()


def test_docker_compose_1_29_and_local_stand_ins_can_run_it(compose: dict[str, Any]) -> None:
    # Debian's docker-compose 1.29 refuses a top-level `name:` and passes an unset build argument as "".
    assert "name" not in compose
    assert compose["x-build-args"] == {"PYTHON_IMAGE": "${PYTHON_IMAGE:-" + pinned_python_image() + "}"}
    built = [service for service in compose["services"].values() if "build" in service]
    assert len(built) == 9 and all(service["build"]["args"] == compose["x-build-args"] for service in built)
    # Image variables that select local stand-ins (docker/local/, scripts/container_images.py); empty in
    # .env.example, so that the compose file's pinned published images are the one default.
    example = (COMPOSE.parent / ".env.example").read_text()
    for variable in STAND_INS:
        name = variable.removesuffix("_IMAGE").lower()
        assert re.fullmatch(r"\$\{" + variable + r":-[\w./-]+:[\w.-]+\}", compose["services"][name]["image"]), name
        assert f"\n{variable}=\n" in example, variable
    assert "\nPYTHON_IMAGE=\n" in example


def test_health_checks_send_get_where_head_is_refused(compose: dict[str, Any]) -> None:
    # Pushgateway 1.5 (Debian's) answers HEAD (`wget --spider`) with 405: every wget check sends GET.
    wget_checks = {
        name: service["healthcheck"]["test"]
        for name, service in compose["services"].items()
        if "wget" in service.get("healthcheck", {}).get("test", [])
    }
    assert {"prometheus", "pushgateway", "grafana", "loki"} <= set(wget_checks)
    for name, test in wget_checks.items():
        assert "--spider" not in test and test[:5] == ["CMD", "wget", "-q", "-O", "/dev/null"], name


def test_airflow_talks_to_postgresql_with_psycopg_also_asynchronously(compose: dict[str, Any]) -> None:
    # Airflow derives an asyncpg URL from the synchronous one unless given one; asyncpg is in no lock.
    for name in AIRFLOW:
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name


def test_the_drift_job_is_a_one_shot_of_the_pipeline_image_behind_a_profile(compose: dict[str, Any]) -> None:
    drift = compose["services"]["drift"]
    assert drift["profiles"] == ["jobs"] and drift["entrypoint"] == ["python", "-m", "monitoring.drift"]
    assert drift["image"] == compose["services"]["trainer"]["image"]
    assert drift["environment"]["MONITORING_PUSHGATEWAY_URL"] == "http://pushgateway:9091"
    assert {"REDIS_URL", "MLFLOW_TRACKING_URI"} <= set(drift["environment"])


def test_the_gateway_needs_api_keys_and_serves_its_metrics_on_the_compose_network_only(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    environment = gateway["environment"]
    assert environment["SERVING_API_KEYS"] == "${SERVING_API_KEYS:?set SERVING_API_KEYS}"
    host, port = environment["SERVING_METRICS_BIND"].rsplit(":", 1)
    assert host == "0.0.0.0" and port != environment["SERVING_BIND"].rsplit(":", 1)[1]
    assert not any(entry.endswith(f":{port}") for entry in gateway["ports"]), "the metrics port is published"
    prometheus = load_yaml(REPO / "compose" / "prometheus" / "prometheus.yml")
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "credit-scoring-api"]
    assert job["static_configs"][0]["targets"] == [f"gateway:{port}"]
