"""schemathesis against /openapi.json: generated requests never cause a server error and responses match the spec."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.app import create_app, start_serving
from serving.settings import ServingSettings
from tests.conftest import RedisProcess, Served

# What the gateway promises for any request the schema allows. Not "schema-valid data is accepted": which features a
# row must carry depends on the registered model being served, so such a request may rightly get a 422.
CONTRACT_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def gateway_app(served: Served, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("contract")
    redis_server = RedisProcess(folder)
    redis_server.start()
    app = create_app(
        ServingSettings(
            tracking_uri=served.url,
            model_name=served.model_name,
            redis_url=redis_server.url,
            reload_interval_s=0,
            admin_token="contract-test-token",
            model_cache_dir=str(folder / "models"),
        )
    )
    start_serving(app)
    yield app
    redis_server.stop()


def test_generated_requests_are_answered_within_the_contract(gateway_app) -> None:
    # schemathesis' own pytest plugin does not run under pytest 9 yet; drive its strategies with hypothesis instead.
    api = schemathesis.openapi.from_wsgi("/openapi.json", gateway_app)
    checked = []
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def exercise(case) -> None:
            case.call_and_validate(checks=CONTRACT_CHECKS)

        exercise()
        checked.append(operation.label)
    assert {"POST /predict", "POST /predict_cached", "POST /predict_ab", "GET /ready"} <= set(checked)
