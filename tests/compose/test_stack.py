"""The compose stack end to end, every probe from this host to a port the stack publishes on 127.0.0.1: what is
published, the trainer's registered versions, the gateway, Prometheus, the drift job in a container, Airflow, and the
gateway with Redis and then MLflow stopped (these two last: they change the stack)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import mlflow.exceptions
import pytest
import requests
from mlflow.tracking import MlflowClient

from scripts.container_images import ImageError, build, docker
from scripts.sample_requests import applicants
from scripts.send_applicants import applicant_batches
from tests.compose.conftest import PUBLISHED, Stack

# The first test also waits for the images (from nothing: ~10 min on 2 cores) and the stack to come up.
pytestmark = pytest.mark.timeout(2700)
MODEL = "credit-scoring"
DAGS = {"credit_retrain", "credit_promote", "credit_drift", "credit_portfolio_score"}
DRIFT_ROWS = 600  # above the drift job's minimum of 500 rows per version


@pytest.fixture(autouse=True)
def signed_in_as_reader(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow runs its basic-auth app: the checks read the registry as the read-only user (MLflow's client reads
    these two variables on every request); the tests of refusals sign in otherwise."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", stack.project.variables["MLFLOW_READER_PASSWORD"])


def eventually(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """`check()`'s first truthy result within `seconds` (exceptions count as not yet)."""
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except (requests.RequestException, KeyError, ValueError) as error:
            last = error
        time.sleep(2)
    pytest.fail(f"{what} after {seconds:.0f} s (last: {last!r})")


def test_the_images_stay_within_their_size_goals_and_leave_no_dangling_image(stack: Stack) -> None:
    above_base = {image.name: image.above_base_bytes / 1e6 for image in stack.images.built}
    # 200 MB until granian became the gateway's server: its Rust binary (a stripped 22 MB .so) is what buys the
    # kept-alive throughput (docs/benchmarks.md), measured at 216 MB above the base.
    assert above_base["gateway"] <= 225, above_base
    assert above_base["trainer"] <= 1200, above_base
    # Build stages are tagged (<image>-build) and replaced images removed: nothing untagged piles up.
    assert not stack.new_dangling_images


def test_no_runtime_image_carries_a_compiler(stack: Stack) -> None:
    for image in stack.images.built:
        found = docker("run", "--rm", "--entrypoint", "sh", image.tag, "-c", "command -v cc gcc c++ g++ clang")
        assert found.returncode != 0 and not found.stdout.strip(), (image.tag, found.stdout)


def test_a_failed_build_is_one_line_naming_it_and_leaves_no_container(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo about to fail && false\n")
    before = docker("ps", "-aq", check=True).stdout.split()
    base = stack.images.variables["PYTHON_IMAGE"]
    with pytest.raises(ImageError) as failed:
        build("broken", "Dockerfile", "local/credit-scoring-broken:test", base, {"BASE_IMAGE": base}, tmp_path)
    first, *rest = str(failed.value).splitlines()
    assert first == "building local/credit-scoring-broken:test from Dockerfile failed (exit 1); last lines:"
    assert any("about to fail" in line for line in rest)
    after = docker("ps", "-aq", check=True).stdout.split()
    assert after == before


def test_the_projects_images_run_as_their_own_non_root_user(stack: Stack) -> None:
    for container in stack.project.containers():
        if container.service in {"gateway", "mlflow", "trainer"} or container.service.startswith("airflow"):
            user = docker("inspect", "--format", "{{.Config.User}}", container.name, check=True).stdout.strip()
            assert user == "10001:10001", (container.service, user)


def test_only_the_uis_are_published_and_only_on_loopback(stack: Stack) -> None:
    published = stack.project.published_ports()
    expected = {
        service: {("127.0.0.1", stack.ports[service], container_port)}
        for service, (_, container_port) in PUBLISHED.items()
    }
    # PostgreSQL, Redis and the Pushgateway publish nothing: reachable from the compose network only.
    assert {service: ports for service, ports in published.items() if ports} == expected


@pytest.mark.parametrize(
    ("service", "path", "text"),
    [
        ("gateway", "/docs", "swagger"),
        ("mlflow", "/", "MLflow"),
        ("airflow-api-server", "/", "Airflow"),
        ("prometheus", "/graph", "Prometheus"),
    ],
)
def test_the_published_uis_answer(stack: Stack, service: str, path: str, text: str) -> None:
    auth = ("reader", stack.project.variables["MLFLOW_READER_PASSWORD"]) if service == "mlflow" else None
    page = requests.get(f"{stack.url(service)}{path}", auth=auth, timeout=10)
    assert page.status_code == 200 and text.lower() in page.text.lower(), (page.status_code, page.text[:300])


def test_the_trainer_left_production_and_staging_with_artifacts_served_by_mlflow(stack: Stack, tmp_path: Path) -> None:
    client = MlflowClient(stack.url("mlflow"))
    production = client.get_model_version_by_alias(MODEL, "production")
    staging = client.get_model_version_by_alias(MODEL, "staging")
    assert production.version != staging.version
    assert {production.tags["precision"], staging.tags["precision"]} == {"fp32", "int8"}
    run = client.get_run(production.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    assert client.get_experiment(run.info.experiment_id).name == MODEL
    # Downloaded from the server itself (mlflow-artifacts:/ URIs): no client writes to or reads from its volume.
    source = client.get_model_version_download_uri(MODEL, production.version)
    assert source.startswith("mlflow-artifacts:/"), source
    downloaded = mlflow.artifacts.download_artifacts(source, dst_path=str(tmp_path), tracking_uri=stack.url("mlflow"))
    assert any(path.suffix == ".onnx" for path in Path(downloaded).rglob("*"))


def api_key(stack: Stack) -> dict[str, str]:
    """The header of a client the stack's gateway knows (compose/.env's SERVING_API_KEYS)."""
    return {"X-API-Key": stack.project.variables["SERVING_API_KEYS"]}


def test_the_gateway_refuses_scoring_without_its_api_key_and_keeps_metrics_off_its_published_port(
    stack: Stack,
) -> None:
    gateway = stack.url("gateway")
    batch = {"batch": applicants(1)}
    refused = requests.post(f"{gateway}/predict", json=batch, timeout=10)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "missing_api_key" and refused.headers["WWW-Authenticate"].startswith(
        "Bearer"
    )
    wrong = requests.post(f"{gateway}/predict", json=batch, headers={"X-API-Key": "not-" + "k" * 30}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    bearer = {"Authorization": f"Bearer {stack.project.variables['SERVING_API_KEYS']}"}
    assert requests.post(f"{gateway}/predict", json=batch, headers=bearer, timeout=10).status_code == 200
    assert requests.get(f"{gateway}/health", timeout=5).status_code == 200  # open, as /ready (the health check)
    metrics = requests.get(f"{gateway}/metrics", timeout=5)
    assert metrics.status_code == 404 and metrics.json()["error"]["status"] == 404


def test_mlflow_refuses_an_anonymous_or_read_only_alias_move_and_production_stays(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow_url = stack.url("mlflow")
    client = MlflowClient(mlflow_url)
    production = client.get_model_version_by_alias(MODEL, "production")
    staging = client.get_model_version_by_alias(MODEL, "staging")
    move = {"name": MODEL, "alias": "production", "version": staging.version}
    anonymous = requests.post(f"{mlflow_url}/api/2.0/mlflow/registered-models/alias", json=move, timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    with pytest.raises(mlflow.exceptions.MlflowException) as promote:
        client.set_registered_model_alias(MODEL, "production", staging.version)
    with pytest.raises(mlflow.exceptions.MlflowException) as register:
        client.create_model_version(MODEL, production.source, run_id=production.run_id)
    assert promote.value.get_http_status_code() == 403 and register.value.get_http_status_code() == 403
    assert client.get_model_version_by_alias(MODEL, "production").version == production.version
    assert requests.get(f"{mlflow_url}/health", timeout=10).status_code == 200  # the health check stays open
    # The registry CLI of a person promoting, as the registry user, would pass the same request (tests/registry).
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(mlflow.exceptions.MlflowException) as unsigned:
        MlflowClient(mlflow_url).get_registered_model(MODEL)
    assert unsigned.value.get_http_status_code() == 401


def test_prometheus_scrapes_mlflow_as_the_reader(stack: Stack) -> None:
    prometheus = stack.url("prometheus")

    def mlflow_target_up() -> bool:
        targets = requests.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return any(t["labels"]["job"] == "mlflow" and t["health"] == "up" for t in targets)

    eventually(mlflow_target_up, 90, "Prometheus has no healthy mlflow target (the reader's basic_auth scrape)")


def test_the_gateway_answers_ready_predict_cached_and_ab(stack: Stack) -> None:
    gateway = stack.url("gateway")
    assert requests.get(f"{gateway}/ready", timeout=5).status_code == 200
    batch = {"batch": applicants(3)}
    key = api_key(stack)
    predicted = requests.post(f"{gateway}/predict", json=batch, headers=key, timeout=10)
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["model"]["alias"] == "production" and len(predicted.json()["predictions"]) == 3
    first = requests.post(f"{gateway}/predict_cached", json=batch, headers=key, timeout=10).json()
    second = requests.post(f"{gateway}/predict_cached", json=batch, headers=key, timeout=10).json()
    assert first["cached"] is False and second["cached"] is True
    assert second["predictions"] == predicted.json()["predictions"]
    ab = requests.post(f"{gateway}/predict_ab", json=batch, headers=key, timeout=10)
    assert ab.status_code == 200 and ab.json()["staging_available"] is True and len(ab.json()["variants"]) == 3


def test_prometheus_scrapes_the_gateway(stack: Stack) -> None:
    prometheus = stack.url("prometheus")

    def gateway_target_up() -> bool:
        targets = requests.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return any(t["labels"]["job"] == "credit-scoring-api" and t["health"] == "up" for t in targets)

    eventually(gateway_target_up, 90, "Prometheus has no healthy credit-scoring-api target")

    def predictions_series() -> list[dict[str, Any]]:
        query = {"query": 'gateway_predictions_total{job="credit-scoring-api"}'}
        result: list[dict[str, Any]] = requests.get(f"{prometheus}/api/v1/query", params=query, timeout=5).json()[
            "data"
        ]["result"]
        return result

    series = eventually(predictions_series, 90, "Prometheus has no gateway_predictions_total series")
    assert {sample["metric"]["variant"] for sample in series} >= {"A"}  # A: production, B: staging


def test_the_drift_job_in_a_container_logs_a_report_to_mlflow(stack: Stack) -> None:
    import pandas as pd

    from scripts.send_applicants import DATA

    sample = pd.read_csv(DATA).sample(n=DRIFT_ROWS, random_state=7)
    with requests.Session() as session:
        session.headers.update(api_key(stack))
        for batch in applicant_batches(sample, 100):
            assert session.post(f"{stack.url('gateway')}/predict", json={"batch": batch}, timeout=30).ok
    time.sleep(2)  # the gateway writes the stream every 0.25 s
    result = stack.project.run("run", "--rm", "-T", "drift", "--last-rows", str(DRIFT_ROWS), timeout=600)
    assert f"drift report: {MODEL} version" in result.stdout, result.stdout + result.stderr
    run_id = result.stdout.split("/runs/", 1)[1].split()[0]
    client = MlflowClient(stack.url("mlflow"))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and int(run.data.tags["rows"]) >= DRIFT_ROWS
    assert client.get_experiment(run.info.experiment_id).name == "monitoring"
    assert "drift/report.html" in {artifact.path for artifact in client.list_artifacts(run_id, "drift")}


def test_airflow_parses_the_dags_and_its_scheduler_is_healthy(stack: Stack) -> None:
    airflow = stack.url("airflow-api-server")
    password = stack.project.variables["AIRFLOW_ADMIN_PASSWORD"]
    token = requests.post(f"{airflow}/auth/token", json={"username": "admin", "password": password}, timeout=10).json()[
        "access_token"
    ]
    headers = {"Authorization": f"Bearer {token}"}

    def dags() -> set[str]:
        listed = requests.get(f"{airflow}/api/v2/dags", headers=headers, timeout=10).json()["dags"]
        found = {dag["dag_id"] for dag in listed}
        return found if DAGS <= found else set()

    eventually(dags, 180, "the dag-processor has not parsed the four DAGs")
    errors = requests.get(f"{airflow}/api/v2/importErrors", headers=headers, timeout=10).json()
    assert errors["total_entries"] == 0, errors
    health = requests.get(f"{airflow}/api/v2/monitor/health", timeout=10).json()
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[component]["status"] == "healthy", health
    # The second person, who answers sign-offs (four eyes), signs in with their own password.
    approver = {"username": "approver", "password": stack.project.variables["AIRFLOW_APPROVER_PASSWORD"]}
    assert requests.post(f"{airflow}/auth/token", json=approver, timeout=10).status_code in (200, 201)


def test_with_redis_stopped_the_gateway_still_answers(stack: Stack) -> None:
    gateway = stack.url("gateway")
    batch = {"batch": applicants(2)}
    key = api_key(stack)
    stack.project.run("stop", "redis")
    try:
        cached = requests.post(f"{gateway}/predict_cached", json=batch, headers=key, timeout=10)
        assert 200 <= cached.status_code < 300, cached.text
        assert cached.json()["cached"] is False and len(cached.json()["predictions"]) == 2
        assert requests.post(f"{gateway}/predict", json=batch, headers=key, timeout=10).status_code == 200
        assert requests.post(f"{gateway}/predict_ab", json=batch, headers=key, timeout=10).status_code == 200
    finally:
        stack.project.run("start", "redis")


def test_with_mlflow_stopped_the_gateway_keeps_serving_the_loaded_versions(stack: Stack) -> None:
    gateway = stack.url("gateway")
    key = api_key(stack)
    loaded = requests.get(f"{gateway}/models", headers=key, timeout=5).json()
    stack.project.run("stop", "mlflow")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{stack.url('mlflow')}/health", timeout=5)
    batch = {"batch": applicants(2)}
    predicted = requests.post(f"{gateway}/predict", json=batch, headers=key, timeout=10)
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["model"]["version"] == loaded["production"]["version"]
    assert requests.post(f"{gateway}/predict_ab", json=batch, headers=key, timeout=10).status_code == 200
    assert requests.get(f"{gateway}/ready", timeout=5).status_code == 200
    # Each worker answers with its own copy (warm-up times differ): the versions are what must not change.
    served = requests.get(f"{gateway}/models", headers=key, timeout=5).json()
    for alias in ("production", "staging"):
        assert served[alias]["version"] == loaded[alias]["version"], alias
