"""The gateway through Flask's test client, with real registered ONNX models (MLflow server) and a real Redis."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import redis
from mlflow.tracking import MlflowClient
from werkzeug.test import Client
from werkzeug.wrappers import Response

from registry.promotion import promote
from registry.resolve import resolve
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS
from scoring.onnx_runtime import inference_session, onnx_inputs, predict_default_probability
from serving.app import create_app, start_serving
from serving.logs import AccessLog
from serving.model_store import ServedModels
from serving.prediction_log import rows_of
from serving.service import gateway_of
from serving.settings import ServingSettings
from steps.main import main
from steps.model import MLPParams
from steps.settings import PipelineSettings
from tests.conftest import RedisProcess, Served

TOKEN = "test-admin-token-0123"


def built_app(served: Served, redis_server: RedisProcess, tmp_path: Path, **overrides: Any) -> Iterator[Any]:
    """The gateway app of the tests' model and Redis (`overrides`: other settings); stopped afterwards."""
    settings = ServingSettings(
        tracking_uri=served.url,
        model_name=served.model_name,
        redis_url=redis_server.url,
        reload_interval_s=0,
        admin_token=TOKEN,
        model_cache_dir=str(tmp_path / "models"),
        max_batch_rows=100,
        max_body_bytes=64 * 1024,
        # Not the 50 ms default: a Redis stalled that long on a loaded test machine would fail open and change the
        # answers the tests compare (cache hits, logged rows).
        redis_timeout_s=1.0,
        **overrides,
    )
    application = create_app(settings)
    yield application
    gateway_of(application).store.stop_polling()
    gateway_of(application).predictions.log.close()


@pytest.fixture
def app(served: Served, redis_server: RedisProcess, tmp_path: Path):
    yield from built_app(served, redis_server, tmp_path)


@pytest.fixture
def client(app):
    start_serving(app)
    return app.test_client()


def rows_as_values(frame: pd.DataFrame) -> list[dict[str, object]]:
    return [{"values": [None if pd.isna(v) else v for v in row]} for row in frame.itertuples(index=False)]


def reload(client) -> dict[str, object]:
    response = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.json
    return response.json


def test_health_and_readiness(app) -> None:
    client = app.test_client()
    assert client.get("/health").json == {"status": "ok"}
    not_ready = client.get("/ready")
    assert not_ready.status_code == 503 and not_ready.json["error"]["code"] == "not_ready"
    start_serving(app)
    assert client.get("/ready").json == {"status": "ready", "production_version": "1", "staging_version": "2"}


def test_predictions_match_the_registered_onnx_model(client, served: Served) -> None:
    frame = served.rows.head(10)
    response = client.post("/predict", json={"batch": rows_as_values(frame)})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["model"] == {"name": served.model_name, "version": "1", "alias": PRODUCTION_ALIAS}
    resolved = resolve("1", RegistrySettings(tracking_uri=served.url, model_name=served.model_name))
    schema = resolved.feature_schema
    normalized = frame.assign(**{c: frame[c].fillna("") for c in schema.categorical})
    expected = predict_default_probability(inference_session(resolved.onnx_path), onnx_inputs(normalized, schema))
    np.testing.assert_allclose(body["predictions"], expected, atol=1e-6)
    assert response.headers["X-Request-ID"] == body["request_id"]


def test_rows_by_feature_name_give_the_same_answer(client, served: Served) -> None:
    frame = served.rows.head(3)
    by_name = [
        {"features": {k: (None if pd.isna(v) else v) for k, v in row.items()}} for row in frame.to_dict("records")
    ]
    a = client.post("/predict", json={"batch": rows_as_values(frame)}).json["predictions"]
    b = client.post("/predict", json={"batch": by_name}).json["predictions"]
    assert a == b


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"values": [1, 2]}, "values", "expected 13 values in feature order, got 2"),
        ({"features": {"Age": 30}}, "Seniority", "missing feature (send null for a missing value)"),
        ({"values": [True] + [None] * 12}, "Seniority", "expected a number, got a boolean"),
        ({"values": [None, {"a": 1}] + [None] * 11}, "Home", "expected a string, got dict"),
        ({"values": ["ten"] + [None] * 12}, "Seniority", "expected a number, got str"),
        (
            {"values": [None] * 13, "colour": "red"},
            "colour",
            "unknown field: a row has 'values' or 'features', and 'applicant_id'",
        ),
    ],
)
def test_bad_rows_get_422_naming_row_and_field(client, served: Served, row, field, message) -> None:
    good = rows_as_values(served.rows.head(1))[0]
    response = client.post("/predict", json={"batch": [good, row]})
    assert response.status_code == 422
    details = response.json["error"]["details"]
    assert {"row": 1, "field": field, "message": message} in details


def test_infinity_is_refused(client) -> None:
    body = '{"batch": [{"values": [Infinity, null, null, null, null, null, null, null, null, null, null, null, null]}]}'
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 422
    assert response.json["error"]["details"][0] == {"row": 0, "field": "Seniority", "message": "must be finite"}


def test_nulls_are_missing_values_not_errors(client) -> None:
    response = client.post("/predict", json={"batch": [{"values": [None] * 13}]})
    assert response.status_code == 200 and 0 < response.json["predictions"][0] < 1
    # Python's json module writes NaN for a float NaN: it means missing too (orjson alone would refuse it).
    with_nan = client.post("/predict", data='{"batch": [{"values": [NaN' + ", null" * 12 + "]}]}",
                           content_type="application/json")  # fmt: skip
    assert with_nan.status_code == 200 and with_nan.json["predictions"] == response.json["predictions"]


@pytest.mark.parametrize(
    "body",
    [
        '{"batch": [',  # not JSON
        '"{\\"batch\\": [{\\"values\\": [1]}]}"',  # a JSON string holding JSON
        "[" * 5000 + "]" * 5000,  # nested deeper than any parser should follow
        '{"batch": [{"values": [1], "applicant_id": "\\ud800"}]}',  # not valid Unicode
        '{"batch": {"values": [1]}}',
        '{"batch": 7}',
    ],
)
def test_malformed_bodies_get_a_4xx_in_the_error_shape_not_a_500(client, body: str) -> None:
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code in {400, 422} and set(response.json) == {"error"}, response.data[:300]


def test_applicant_ids_must_be_strings_or_integers(client, served: Served) -> None:
    row = {**rows_as_values(served.rows.head(1))[0], "applicant_id": True}
    response = client.post("/predict_ab", json={"batch": [row]})
    assert response.status_code == 422
    assert response.json["error"]["details"] == [
        {"row": 0, "field": "applicant_id", "message": "must be a string or an integer"}
    ]


def test_every_scored_row_reaches_the_prediction_stream(app, client, served: Served, redis_server) -> None:
    frame = served.rows.head(40)
    batch = [{**row, "applicant_id": f"applicant-{i}"} for i, row in enumerate(rows_as_values(frame))]
    answer = client.post("/predict_ab", json={"batch": batch}).json
    assert set(answer["variants"]) == {"A", "B"}  # 40 sticky ids at 10%: both versions score part of the batch
    gateway_of(app).predictions.log.flush()
    stream = gateway_of(app).settings.prediction_stream
    logged = [row for _, entry in redis.Redis.from_url(redis_server.url).xrange(stream) for row in rows_of(entry)]
    by_applicant = {row["applicant_id"]: row for row in logged}
    assert len(logged) == len(by_applicant) == 40
    for i, (probability, variant, version) in enumerate(
        zip(answer["predictions"], answer["variants"], answer["versions"], strict=True)
    ):
        row = by_applicant[f"applicant-{i}"]
        assert (row["probability"], row["variant"], row["version"]) == (probability, variant, version)
        assert row["request_id"] == answer["request_id"]
        assert row["features"] == {name: None if pd.isna(value) else value for name, value in frame.iloc[i].items()}


def test_empty_batch_oversized_batch_and_oversized_body(client, served: Served) -> None:
    assert client.post("/predict", json={"batch": []}).status_code == 422
    too_many = rows_as_values(served.rows.head(1)) * 101
    response = client.post("/predict", json={"batch": too_many})
    assert response.status_code == 413 and response.json["error"]["code"] == "batch_too_large"
    huge = json.dumps({"batch": rows_as_values(served.rows.head(1)), "padding": "x" * 70_000})
    response = client.post("/predict", data=huge, content_type="application/json")
    assert response.status_code == 413 and set(response.json) == {"error"}


def test_a_declared_length_over_the_limit_is_a_413_whatever_the_content_type(client) -> None:
    for path in ("/predict", "/admin/reload"):
        answer = client.post(path, data="x" * (65 * 1024), content_type="text/plain")
        assert answer.status_code == 413 and answer.json["error"]["code"] == "body_too_large"


def test_unknown_paths_and_methods_use_the_error_shape(client) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json["error"]["status"] == 404
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and wrong.json["error"]["code"] == "method_not_allowed"


def test_second_call_is_served_from_the_cache_and_promotion_misses_it(client, served: Served) -> None:
    batch = {"batch": rows_as_values(served.rows.head(5))}
    first = client.post("/predict_cached", json=batch).json
    second = client.post("/predict_cached", json=batch).json
    assert (first["cached"], first["cache_hits"]) == (False, 0)
    assert (second["cached"], second["cache_hits"]) == (True, 5)
    assert second["predictions"] == pytest.approx(first["predictions"], abs=1e-12)
    settings = RegistrySettings(tracking_uri=served.url, model_name=served.model_name)
    promote("2", force=True, reason="cache test", settings=settings)
    try:
        reload(client)
        after = client.post("/predict_cached", json=batch).json
        assert after["model"]["version"] == "2" and after["cached"] is False
    finally:
        promote("1", force=True, reason="cache test: back", settings=settings)
        # Promoting version 2 retired its staging alias; give it back for the other tests.
        MlflowClient(served.url).set_registered_model_alias(served.model_name, STAGING_ALIAS, "2")
        reload(client)


def test_redis_going_away_still_gives_200s(client, served: Served, redis_server: RedisProcess) -> None:
    batch = {"batch": rows_as_values(served.rows.head(2))}
    assert client.post("/predict_cached", json=batch).status_code == 200
    redis_server.stop()
    for _ in range(5):
        response = client.post("/predict_cached", json=batch)
        assert response.status_code == 200 and response.json["cached"] is False
    metrics = client.get("/metrics").data.decode()
    errors = [line for line in metrics.splitlines() if line.startswith("gateway_redis_errors_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in errors) >= 5


def test_ab_forced_sticky_and_without_staging(client, served: Served) -> None:
    batch = rows_as_values(served.rows.head(1))
    forced = client.post("/predict_ab", json={"batch": batch, "variant": "B"}).json
    assert forced["variant"] == "B" and forced["versions"] == ["2"] and forced["staging_available"] is True
    with_ids = [dict(batch[0], applicant_id=f"applicant-{i}") for i in range(60)]
    first = client.post("/predict_ab", json={"batch": with_ids}).json
    again = client.post("/predict_ab", json={"batch": with_ids}).json
    assert first["variants"] == again["variants"]
    assert {first["versions"][i] for i, v in enumerate(first["variants"]) if v == "B"} <= {"2"}
    MlflowClient(served.url).delete_registered_model_alias(served.model_name, STAGING_ALIAS)
    try:
        reload(client)
        alone = client.post("/predict_ab", json={"batch": with_ids}).json
        assert set(alone["variants"]) == {"A"} and alone["staging_available"] is False
        refused = client.post("/predict_ab", json={"batch": batch, "variant": "B"})
        assert refused.status_code == 409 and refused.json["error"]["code"] == "no_staging_model"
    finally:
        MlflowClient(served.url).set_registered_model_alias(served.model_name, STAGING_ALIAS, "2")
        reload(client)


def test_models_lists_versions_and_schema(client, served: Served) -> None:
    models = client.get("/models").json
    assert set(models) == {PRODUCTION_ALIAS, STAGING_ALIAS, "ab_test"}
    assert models["ab_test"] == {"staging_routable": True, "staging_input_differences": []}
    assert models[PRODUCTION_ALIAS]["version"] == "1" and models[STAGING_ALIAS]["precision"] == "int8"
    assert models[PRODUCTION_ALIAS]["feature_schema"]["features"] == list(served.rows.columns)


def test_reload_needs_the_bearer_token(client) -> None:
    assert client.post("/admin/reload").status_code == 401
    wrong = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json["error"]["code"] == "forbidden"


def test_a_corrupt_new_version_is_refused_while_the_old_one_keeps_serving(
    client, served: Served, tmp_path: Path
) -> None:
    good = MlflowClient(served.url).get_model_version(served.model_name, "1")
    local = Path(mlflow.artifacts.download_artifacts(good.source, dst_path=str(tmp_path / "copy")))
    (local / "model.onnx").write_bytes(b"this is not an onnx graph")
    mlflow.set_experiment(f"{served.model_name}-corrupt")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(local), "corrupt_model")
    registry = MlflowClient(served.url)
    corrupt = registry.create_model_version(
        served.model_name, f"runs:/{run.info.run_id}/corrupt_model", run.info.run_id
    )
    registry.set_registered_model_alias(served.model_name, PRODUCTION_ALIAS, corrupt.version)
    try:
        report = reload(client)
        assert PRODUCTION_ALIAS in report["failed"]
        assert client.get("/ready").json["production_version"] == "1"
        response = client.post("/predict", json={"batch": rows_as_values(served.rows.head(1))})
        assert response.status_code == 200 and response.json["model"]["version"] == "1"
        metrics = client.get("/metrics").data.decode()
        assert 'gateway_model_reloads_total{alias="production",outcome="failed"} 1.0' in metrics
    finally:
        MlflowClient(served.url).set_registered_model_alias(served.model_name, PRODUCTION_ALIAS, "1")


def test_an_unreachable_registry_never_stops_serving(client, app, served: Served) -> None:
    store = gateway_of(app).store
    reachable = store.registry_settings
    store.registry_settings = reachable.model_copy(update={"tracking_uri": "http://127.0.0.1:9"})
    try:
        report = store.refresh()
        assert set(report.failed) == {PRODUCTION_ALIAS, STAGING_ALIAS}
        assert client.post("/predict", json={"batch": [{"values": [None] * 13}]}).status_code == 200
        assert client.get("/ready").status_code == 200
    finally:
        store.registry_settings = reachable


def test_a_vanished_registered_model_does_not_unload_what_is_served(client, app) -> None:
    store = gateway_of(app).store
    original = store.registry_settings
    store.registry_settings = original.model_copy(update={"model_name": "renamed-by-someone"})
    try:
        report = store.refresh()
        assert set(report.failed) == {PRODUCTION_ALIAS, STAGING_ALIAS} and not report.removed
        assert client.get("/ready").json["production_version"] == "1"
    finally:
        store.registry_settings = original


def test_a_refresh_by_the_poller_updates_the_model_info_metric(client, app, served: Served) -> None:
    MlflowClient(served.url).set_registered_model_alias(served.model_name, PRODUCTION_ALIAS, "2")
    try:
        gateway_of(app).store.refresh()  # what the background poller calls
        metrics = client.get("/metrics").data.decode()
        assert 'gateway_model_info{alias="production",precision="int8",version="2"} 1.0' in metrics
        # Set to 0, not removed: gauges cannot be cleared under gunicorn's multiprocess metrics.
        assert 'gateway_model_info{alias="production",precision="fp32",version="1"} 0.0' in metrics
        assert 'gateway_model_reloads_total{alias="production",outcome="ok"} 2.0' in metrics
    finally:
        MlflowClient(served.url).set_registered_model_alias(served.model_name, PRODUCTION_ALIAS, "1")


def test_openapi_and_offline_docs(client) -> None:
    spec = client.get("/openapi.json").json
    assert {"/predict", "/predict_cached", "/predict_ab", "/health", "/ready", "/models", "/admin/reload"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").headers["Location"].endswith("/swagger")
    for page in ("/swagger", "/redoc"):
        html = client.get(page).data.decode()
        assert "unpkg.com" not in html and "cdn." not in html
        scripts = [part.split('"')[0] for part in html.split('src="')[1:]]
        assert scripts and all(client.get(src).status_code == 200 for src in scripts if src.startswith("/"))


def test_metrics_count_predictions_by_variant_and_version(client, served: Served) -> None:
    client.post("/predict", json={"batch": rows_as_values(served.rows.head(4))})
    metrics = client.get("/metrics").data.decode()
    assert 'gateway_predictions_total{model_version="1",variant="A"}' in metrics
    assert 'gateway_model_info{alias="production",precision="fp32",version="1"} 1.0' in metrics
    assert "flask_http_request_duration_seconds_bucket" in metrics
    assert "applicant" not in metrics


def test_request_metrics_and_access_lines(client, capfd) -> None:
    logging.getLogger(AccessLog.name).setLevel(logging.INFO)
    try:
        client.get("/health")
        request_id = client.get("/health").headers["X-Request-ID"]
        client.open("/health", method="BREW")  # a made-up method must not become a label value of its own
        client.get("/metrics")
        metrics = client.get("/metrics").data.decode()
    finally:
        logging.getLogger(AccessLog.name).setLevel(logging.NOTSET)
    assert 'flask_http_request_total{method="GET",status="200"} 2.0' in metrics  # the scrapes are not counted
    assert 'flask_http_request_duration_seconds_count{endpoint="health",method="GET",status="200"} 2.0' in metrics
    assert 'flask_http_request_total{method="other",status="405"} 1.0' in metrics
    assert 'flask_http_request_duration_seconds_count{endpoint="None",method="other",status="405"} 1.0' in metrics
    assert "BREW" not in metrics
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    # The made-up method matched no endpoint: its line says so with a null endpoint.
    health = [line for line in lines if line["logger"] == AccessLog.name and line["endpoint"] in ("health", None)]
    assert [line["status"] for line in health] == [200, 200, 405]
    assert health[1]["request_id"] == request_id and health[1]["message"] == "request"
    assert not [line for line in lines if line.get("endpoint") == "prometheus_metrics"]


def test_every_prediction_answer_carries_predictions_in_request_order(client, served: Served) -> None:
    batch = rows_as_values(served.rows.head(3))
    answers = {path: client.post(path, json={"batch": batch}).json for path in ("/predict", "/predict_cached")}
    answers["/predict_ab"] = client.post("/predict_ab", json={"batch": batch, "variant": "A"}).json
    single = [client.post("/predict", json={"batch": [row]}).json["predictions"][0] for row in batch]
    for path, answer in answers.items():
        assert "probabilities" not in answer, path
        assert answer["predictions"] == pytest.approx(single, abs=1e-12), path
    spec = client.get("/openapi.json").json["components"]["schemas"]
    for name in ("PredictResponse", "CachedPredictResponse", "ABPredictResponse"):
        assert "predictions" in spec[name]["properties"] and "probabilities" not in spec[name]["properties"]


def test_reload_reports_each_alias_with_its_version(client) -> None:
    report = reload(client)
    assert report == {
        "loaded": [],
        "unchanged": [{"alias": PRODUCTION_ALIAS, "version": "1"}, {"alias": STAGING_ALIAS, "version": "2"}],
        "removed": [],
        "failed": {},
    }


def test_a_staging_version_with_other_inputs_is_reported_and_gets_no_rows(
    client, served: Served, small_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "without_price.csv"
    pd.read_csv(small_csv).drop(columns=["Price"]).to_csv(other, index=False)
    settings = PipelineSettings(tracking_uri=served.url, experiment_name=f"{served.model_name}-other",
                                model_name=served.model_name)  # fmt: skip
    staged = main(other, params=MLPParams(hidden_layers=(8,), max_epochs=5), cv_folds=0, batch_sizes=[1],
                  benchmark_repeats=20, allow_schema_change=True, settings=settings)  # fmt: skip
    version = staged.versions[staged.candidate]
    try:
        with caplog.at_level(logging.WARNING, logger="serving.model_store"):
            reload(client)
        assert any(f"staging version {version} takes other inputs" in r.getMessage() for r in caplog.records)
        models = client.get("/models").json
        assert models[STAGING_ALIAS]["version"] == version
        assert models["ab_test"] == {"staging_routable": False, "staging_input_differences": ["-Price"]}
        metrics = client.get("/metrics").data.decode()
        assert "gateway_staging_routable 0.0" in metrics
        with_ids = [dict(rows_as_values(served.rows.head(1))[0], applicant_id=f"applicant-{i}") for i in range(60)]
        answer = client.post("/predict_ab", json={"batch": with_ids}).json
        assert set(answer["variants"]) == {"A"} and answer["staging_available"] is False
        forced = client.post("/predict_ab", json={"batch": with_ids[:1], "variant": "B"})
        assert forced.status_code == 409 and forced.json["error"]["code"] == "staging_not_routable"
        assert "-Price" in forced.json["error"]["message"]
    finally:
        MlflowClient(served.url).set_registered_model_alias(served.model_name, STAGING_ALIAS, "2")
        reload(client)
    assert "gateway_staging_routable 1.0" in client.get("/metrics").data.decode()


def test_every_answer_carries_score_points_on_the_versions_scale(client, served: Served) -> None:
    rows = rows_as_values(served.rows.head(8))
    scaling = resolve(
        "production", RegistrySettings(tracking_uri=served.url, model_name=served.model_name)
    ).score_scaling
    for path in ("/predict", "/predict_cached", "/predict_ab"):
        answer = client.post(path, json={"batch": rows, "variant": "A"} if path == "/predict_ab" else {"batch": rows})
        assert answer.status_code == 200, answer.json
        body = answer.json
        assert body["scores"] == scaling.points(np.array(body["predictions"])).astype(int).tolist(), path
        assert "reasons" not in body and "bands" not in body  # no bands configured, no explanation asked for
    safest, riskiest = np.argmin(body["predictions"]), np.argmax(body["predictions"])
    assert body["scores"][safest] > body["scores"][riskiest]


def test_explanations_give_each_row_its_reasons_in_words(client, served: Served) -> None:
    rows = rows_as_values(served.rows.head(12))
    explained = client.post("/explain", json={"batch": rows})
    assert explained.status_code == 200, explained.json
    flagged = client.post("/predict", json={"batch": rows, "explain": True}).json
    assert flagged["reasons"] == explained.json["reasons"] and flagged["predictions"] == explained.json["predictions"]
    texts = json.loads((Path(__file__).resolve().parents[2] / "data" / "reason_codes.json").read_text())
    assert len(explained.json["reasons"]) == 12 and any(explained.json["reasons"])
    for row in explained.json["reasons"]:
        assert len(row) <= 3
        assert [reason["impact"] for reason in row] == sorted((reason["impact"] for reason in row), reverse=True)
        for reason in row:
            assert reason["impact"] > 0
            assert {"code": reason["code"], "text": reason["text"]} == texts[reason["feature"]]
    ab = client.post("/predict_ab", json={"batch": rows, "explain": True, "variant": "B"})
    assert ab.status_code == 200 and len(ab.json["reasons"]) == 12


def test_explaining_more_rows_than_the_limit_is_a_413_naming_it(client, served: Served) -> None:
    rows = rows_as_values(served.rows.head(1)) * 6
    service = gateway_of(client.application).predictions
    service.max_explain_rows = 5  # as SERVING_MAX_EXPLAIN_ROWS=5 would
    try:
        for path, body in (("/explain", {"batch": rows}), ("/predict", {"batch": rows, "explain": True})):
            answer = client.post(path, json=body)
            assert answer.status_code == 413, answer.json
            error = answer.json["error"]
            assert error["code"] == "explain_batch_too_large" and error["details"][0]["field"] == "explain"
            assert "at most 5 rows" in error["message"] and "SERVING_MAX_EXPLAIN_ROWS" in error["message"]
        assert client.post("/predict", json={"batch": rows}).status_code == 200  # no explanation: no such limit
    finally:
        service.max_explain_rows = ServingSettings().max_explain_rows


def test_a_mixed_ab_batch_gets_each_rows_score_and_reasons_from_the_model_that_scored_it(
    client, served: Served
) -> None:
    rows = rows_as_values(served.rows.head(40))
    for number, row in enumerate(rows):
        row["applicant_id"] = f"mixed-{number}"
    answer = client.post("/predict_ab", json={"batch": rows, "explain": True}).json
    assert answer["variant"] == "mixed", "no row went to B: pick other applicant ids"
    scaling = resolve(
        "production", RegistrySettings(tracking_uri=served.url, model_name=served.model_name)
    ).score_scaling
    assert answer["scores"] == scaling.points(np.array(answer["predictions"])).astype(int).tolist()
    for variant in ("A", "B"):
        index = [i for i, v in enumerate(answer["variants"]) if v == variant]
        alone = client.post(
            "/predict_ab", json={"batch": [rows[i] for i in index], "explain": True, "variant": variant}
        ).json
        assert alone["predictions"] == pytest.approx([answer["predictions"][i] for i in index], abs=1e-12)
        assert alone["reasons"] == [answer["reasons"][i] for i in index], variant


def test_explaining_with_a_version_registered_without_a_reference_is_a_409_and_scores_nothing(
    client, app, served: Served
) -> None:
    store = gateway_of(app).store
    served_before = store.served()
    production = served_before.get(PRODUCTION_ALIAS)
    store._served = ServedModels.of({**served_before.models, PRODUCTION_ALIAS: replace(production, explainer=None)})
    scored_before = _predictions_counted(client)
    try:
        answer = client.post("/explain", json={"batch": rows_as_values(served.rows.head(2))})
        assert answer.status_code == 409 and answer.json["error"]["code"] == "explanation_unavailable"
        assert f"version {production.version}" in answer.json["error"]["message"]
        assert _predictions_counted(client) == scored_before
        assert client.post("/predict", json={"batch": rows_as_values(served.rows.head(2))}).status_code == 200
    finally:
        store._served = served_before


def _predictions_counted(client) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("gateway_predictions_total{")
    )


ROW = {"values": [9, "rent", 60, 30, "married", "no", "freelance", 73, 129.0, 0.0, 0.0, 800, 846]}
JSON_TYPE = {"Content-Type": "application/json"}
JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8"}


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/predict", json.dumps({"batch": [ROW, ROW]}), JSON_TYPE),
        ("/predict_ab", json.dumps({"batch": [ROW], "applicant_id": "a-17"}), JSON_TYPE),
        ("/predict_ab", json.dumps({"batch": [ROW], "variant": "A"}), JSON_UTF8),
        ("/predict_cached", json.dumps({"batch": [ROW]}), JSON_TYPE),
        ("/explain", json.dumps({"batch": [ROW]}), JSON_TYPE),
        ("/predict", json.dumps({"batch": [ROW] * 101}), JSON_TYPE),  # 413 from the gateway's own check
        ("/predict", json.dumps({"batch": [{"values": [1, 2]}]}), JSON_TYPE),  # 422 naming the row (ApiError)
        ("/predict", json.dumps({"batch": [ROW], "extra": 1}), JSON_TYPE),  # 422 from the body model (replayed)
        ("/predict", '{"batch": [{"values": [NaN, "rent", 60, 30, "married", "no", "freelance", 73, 129.0, 0.0, 0.0, '
                     '800, 846]}]}', JSON_TYPE),  # NaN literal: not strict JSON, replayed, still "missing"
        ("/predict", "{not json", JSON_TYPE),
        ("/predict", json.dumps({"batch": [ROW]}), {"Content-Type": "application/jsonl"}),  # not JSON for Flask
        ("/predict_ab", json.dumps({"batch": [ROW], "variant": "C"}), JSON_TYPE),
    ],
)  # fmt: skip
def test_the_fast_path_answers_exactly_as_the_flask_app(app, client, path: str, body: str, headers) -> None:
    """Every scoring request gets the same status, headers, body, metrics and access line with or without
    serving/fast_path.py in front of the Flask app (the request id is the caller's, so the bodies compare whole)."""
    assert_same_answer_with_and_without_the_fast_path(app, client, path, body, headers)


def assert_same_answer_with_and_without_the_fast_path(app, client, path: str, body: str, headers) -> dict[str, object]:
    """The answer (status, headers that matter, JSON body, access line) through the fast path and through the Flask
    app alone, asserted equal; returns it."""
    flask_alone = Client(app.wsgi_app.flask_app, Response)
    gateway = gateway_of(app)
    answers, lines = [], []
    for sender in (client, flask_alone):
        redis.Redis.from_url(gateway.settings.redis_url).flushdb()  # /predict_cached: a miss both times
        sink = io.BytesIO()
        gateway.telemetry.access_log = AccessLog(sink)
        logging.getLogger(AccessLog.name).setLevel(logging.INFO)
        try:
            response = sender.post(path, data=body, headers={**headers, "X-Request-ID": "req-1"})
        finally:
            logging.getLogger(AccessLog.name).setLevel(logging.NOTSET)
        answers.append({"status": response.status_code, "body": json.loads(response.data),
                        **{name: response.headers.get(name) for name in ANSWER_HEADERS}})  # fmt: skip
        (line,) = [json.loads(text) for text in sink.getvalue().splitlines()]
        lines.append({key: value for key, value in line.items() if key not in {"ts", "latency_ms"}})
    assert answers[0] == answers[1]
    assert lines[0] == lines[1]
    assert answers[0]["X-Request-ID"] == "req-1" and lines[0]["request_id"] == "req-1"
    return {**answers[0], "access_line": lines[0]}


ANSWER_HEADERS = ("Content-Type", "X-Request-ID", "WWW-Authenticate")
# Two keys at once, as during a rotation; neither is a placeholder or short (the production rule).
FIRST_KEY, SECOND_KEY = "first-key-4f1c9a7e2b", "second-key-8d3e6b0a5c"


@pytest.fixture
def keyed_app(served: Served, redis_server: RedisProcess, tmp_path: Path):
    """The gateway with SERVING_API_KEYS set (two keys), models loaded."""
    for application in built_app(served, redis_server, tmp_path, api_keys=f" {FIRST_KEY}, {SECOND_KEY} ,"):
        start_serving(application)
        yield application


ONE_ROW = json.dumps({"batch": [ROW]})
BEARER = {"Authorization": f"Bearer {FIRST_KEY}"}


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"),
    [
        ("/predict", ONE_ROW, {}, 401, "missing_api_key"),
        ("/explain", ONE_ROW, {}, 401, "missing_api_key"),
        ("/predict_cached", ONE_ROW, {}, 401, "missing_api_key"),
        ("/predict_ab", ONE_ROW, {}, 401, "missing_api_key"),
        ("/predict", ONE_ROW, {"Authorization": "Basic Zmlyc3Q6a2V5"}, 401, "missing_api_key"),  # not a bearer
        ("/predict", ONE_ROW, {"Authorization": "Bearer "}, 401, "missing_api_key"),
        ("/predict", ONE_ROW, {"Authorization": "Bearer not-a-key-of-ours"}, 401, "invalid_api_key"),
        ("/predict", ONE_ROW, {"X-API-Key": FIRST_KEY[:-1]}, 401, "invalid_api_key"),  # one character short
        ("/predict", ONE_ROW, {"X-API-Key": FIRST_KEY + "0"}, 401, "invalid_api_key"),
        ("/predict", ONE_ROW, {"X-API-Key": f"{FIRST_KEY},{SECOND_KEY}"}, 401, "invalid_api_key"),  # the setting
        ("/predict", ONE_ROW, {"X-API-Key": "wrong", **BEARER}, 401, "invalid_api_key"),  # X-API-Key wins
        ("/predict", ONE_ROW, BEARER, 200, None),
        ("/predict", ONE_ROW, {"Authorization": f"bearer {SECOND_KEY}"}, 200, None),  # the scheme's case is free
        # An applicant id: the router draws at random without one, and both paths must land on the same side.
        ("/predict_ab", json.dumps({"batch": [ROW], "applicant_id": "a-17"}), {"X-API-Key": SECOND_KEY}, 200, None),
        ("/explain", ONE_ROW, {"X-API-Key": FIRST_KEY}, 200, None),
        ("/predict_cached", ONE_ROW, BEARER, 200, None),
        ("/predict", "{not json", {}, 401, "missing_api_key"),  # no key: no word on the body
        ("/predict", json.dumps({"batch": [{"values": [1]}]}), {}, 401, "missing_api_key"),
        ("/predict", json.dumps({"batch": [{"values": [1]}]}), BEARER, 422, "invalid_rows"),
        ("/predict", ONE_ROW.replace("9", "NaN", 1), BEARER, 200, None),  # NaN literal: replayed to Flask
        ("/predict", ONE_ROW.replace("9", "NaN", 1), {}, 401, "missing_api_key"),
    ],
)  # fmt: skip
def test_the_scoring_routes_need_an_api_key_in_either_header_and_both_paths_agree(
    keyed_app, path: str, body: str, headers: dict[str, str], status: int, code: str | None
) -> None:
    answer = assert_same_answer_with_and_without_the_fast_path(
        keyed_app, keyed_app.test_client(), path, body, {**JSON_TYPE, **headers}
    )
    assert answer["status"] == status, answer
    assert answer["access_line"]["status"] == status and answer["access_line"]["endpoint"] == path.lstrip("/")
    if status == 200:
        assert len(answer["body"]["predictions"]) == 1 and answer["WWW-Authenticate"] is None
        return
    error = answer["body"]["error"]
    assert (error["status"], error["code"], error["request_id"]) == (status, code, "req-1")
    if status == 401:
        assert answer["WWW-Authenticate"].startswith('Bearer realm="credit-scoring-gateway"')
        assert ('error="invalid_token"' in answer["WWW-Authenticate"]) == (code == "invalid_api_key")
    if code == "missing_api_key":
        assert "Authorization: Bearer <key>" in error["message"] and "X-API-Key: <key>" in error["message"]


def test_with_api_keys_health_ready_and_the_docs_stay_open_and_models_needs_a_key(keyed_app) -> None:
    client = keyed_app.test_client()
    for path in ("/health", "/ready", "/openapi.json", "/swagger"):
        assert client.get(path).status_code == 200, path
    assert client.get("/docs").status_code == 302
    refused = client.get("/models")
    assert refused.status_code == 401 and refused.json["error"]["code"] == "missing_api_key"
    assert client.get("/models", headers={"X-API-Key": SECOND_KEY}).json["production"]["version"] == "1"
    # /admin/reload keeps its own token: an API key is not one.
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {FIRST_KEY}"}).status_code == 403
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_refused_calls_are_counted_and_logged_like_other_4xx_without_the_key(keyed_app, capfd) -> None:
    client = keyed_app.test_client()
    logging.getLogger(AccessLog.name).setLevel(logging.INFO)
    try:
        client.post("/predict", data=ONE_ROW, headers=JSON_TYPE)
        client.post("/predict", data=ONE_ROW, headers={**JSON_TYPE, "X-API-Key": "guessed-key-1234567890"})
        client.post("/predict", data=ONE_ROW, headers={**JSON_TYPE, **BEARER})
    finally:
        logging.getLogger(AccessLog.name).setLevel(logging.NOTSET)
    metrics = client.get("/metrics").data.decode()
    assert 'flask_http_request_duration_seconds_count{endpoint="predict",method="POST",status="401"} 2.0' in metrics
    assert 'flask_http_request_total{method="POST",status="401"} 2.0' in metrics
    out = capfd.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [line["status"] for line in lines if line.get("endpoint") == "predict"] == [401, 401, 200]
    assert "guessed-key" not in out and FIRST_KEY not in out and SECOND_KEY not in out


def test_the_openapi_document_declares_the_api_key_on_the_scoring_routes(keyed_app) -> None:
    spec = keyed_app.test_client().get("/openapi.json").json
    schemes = spec["components"]["securitySchemes"]
    assert schemes["apiKeyBearer"] | {"description": ""} == {"type": "http", "scheme": "bearer", "description": ""}
    assert schemes["apiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    either = [{"apiKeyBearer": []}, {"apiKeyHeader": []}]
    for path in ("/predict", "/predict_ab", "/predict_cached", "/explain"):
        operation = spec["paths"][path]["post"]
        assert operation["security"] == either and "401" in operation["responses"], path
    assert spec["paths"]["/models"]["get"]["security"] == either
    assert spec["paths"]["/admin/reload"]["post"]["security"] == [{"adminToken": []}]
    for path in ("/health", "/ready"):
        assert "security" not in spec["paths"][path]["get"], path


def test_with_metrics_served_elsewhere_the_public_app_has_no_metrics_route(
    served: Served, redis_server: RedisProcess, tmp_path: Path
) -> None:
    settings = ServingSettings(
        tracking_uri=served.url,
        model_name=served.model_name,
        redis_url=redis_server.url,
        reload_interval_s=0,
        model_cache_dir=str(tmp_path / "models"),
        metrics_bind="127.0.0.1:9100",
    )
    application = create_app(settings)
    try:
        answer = application.test_client().get("/metrics")
        assert answer.status_code == 404 and answer.json["error"]["status"] == 404 and set(answer.json) == {"error"}
    finally:
        gateway_of(application).predictions.log.close()
