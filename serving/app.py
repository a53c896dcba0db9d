"""The gateway's app factory: settings, Redis, model store, A/B router, metrics and routes wired in one place."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import redis
from flask import Response, g, jsonify, redirect, request
from flask_openapi3 import Info, OpenAPI, Tag

from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS
from serving import schemas
from serving.cache import PredictionCache
from serving.errors import ApiError, register_error_handlers, validation_error_response
from serving.fast_json import OrjsonProvider
from serving.logs import AccessLog
from serving.metrics import create_metrics
from serving.model_store import ALIASES, LoadedModel, ModelStore, RefreshReport
from serving.prediction_log import PredictionLog
from serving.predictor import PredictionService, Scored
from serving.redis_gateway import CircuitBreaker, RedisGateway
from serving.router import ABRouter
from serving.settings import ServingSettings
from serving.telemetry import install_request_telemetry

logger = logging.getLogger(__name__)

PREDICTION = Tag(name="prediction", description="Probability of default for credit applications")
OPERATIONS = Tag(name="operations", description="Health, readiness, loaded models, reload")
ERRORS = {413: schemas.ErrorResponse, 422: schemas.ErrorResponse, 503: schemas.ErrorResponse}


def create_app(settings: ServingSettings | None = None, store: ModelStore | None = None) -> OpenAPI:
    settings = settings or ServingSettings()
    app = OpenAPI(
        __name__,
        info=Info(title="Credit-scoring gateway", version="1.0.0"),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        doc_prefix="",
        doc_url="/openapi.json",
        validation_error_status=422,
        validation_error_callback=validation_error_response,
        validation_error_model=schemas.ErrorResponse,
    )
    # Werkzeug enforces this on the bytes actually read, so a chunked body cannot slip past it.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False
    register_error_handlers(app)

    registry_settings = RegistrySettings(
        tracking_uri=settings.tracking_uri,
        model_name=settings.model_name,
        **({"cache_dir": settings.model_cache_dir} if settings.model_cache_dir else {}),
    )
    metrics = create_metrics(app)
    store = store or ModelStore(registry_settings)

    def publish_reload(report: RefreshReport, served: dict[str, LoadedModel]) -> None:
        for entry in report.loaded:
            metrics.reloads.labels(alias=entry.split("=")[0], outcome="ok").inc()
        for alias in report.failed:
            metrics.reloads.labels(alias=alias, outcome="failed").inc()
        metrics.model_info.clear()
        for alias, model in served.items():
            metrics.model_info.labels(alias=alias, version=model.version, precision=model.precision).set(1)

    store.listeners.append(publish_reload)

    def guarded_redis(timeout_s: float) -> RedisGateway:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return RedisGateway(
            client,
            CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_s),
            lambda operation: metrics.redis_errors.labels(operation=operation).inc(),
        )

    # The log's writer gets a connection and breaker of its own: its large, late writes must neither wait on the
    # cache's short timeout nor open the breaker that switches the cache off.
    service = PredictionService(
        store,
        ABRouter(settings.staging_share),
        PredictionCache(guarded_redis(settings.redis_timeout_s), settings.cache_prefix, settings.cache_ttl_s),
        PredictionLog(
            guarded_redis(settings.prediction_log_timeout_s),
            settings.prediction_stream,
            settings.prediction_stream_max_rows,
            flush_interval_s=settings.prediction_log_flush_s,
            on_drop=metrics.log_dropped_rows.inc,
        ),
        metrics,
        settings.max_batch_rows,
    )
    app.extensions.update(
        {"settings": settings, "model_store": store, "prediction_service": service, "gateway_metrics": metrics}
    )

    install_request_telemetry(app, metrics, AccessLog())

    @app.before_request
    def _refuse_oversized_bodies() -> None:
        # A declared Content-Length is checked as it stands, before any other check can answer first. A chunked body
        # has none: Werkzeug cuts it at the limit without an error, so it is read (and cached) here, and reaching the
        # limit means too big (otherwise the cut body would surface as a JSON error).
        current = request._get_current_object()  # noqa: SLF001 - one proxy lookup; this runs on every request
        limit, length = settings.max_body_bytes, current.content_length
        if length is None and current.method == "POST":
            oversized = len(current.get_data(cache=True)) >= limit
        else:
            oversized = length is not None and length > limit
        if oversized:
            raise ApiError(413, "body_too_large", f"request bodies are limited to {limit} bytes")

    def model_ref(model: Any) -> dict[str, str]:
        return {"name": model.name, "version": model.version, "alias": model.alias}

    def score_with_production(body: schemas.PredictRequest, use_cache: bool) -> tuple[Scored, dict[str, Any]]:
        """The body of /predict and /predict_cached: `body.batch` is still raw JSON, checked by the model's parser."""
        scored = service.predict(body.batch, body.applicant_id, g.request_id, use_cache=use_cache)
        model = scored.models["A"]
        g.log_fields = {"variant": "A", "version": model.version, "rows": len(scored.probabilities)}
        return scored, {"request_id": g.request_id, "model": model_ref(model), "probabilities": scored.probabilities}

    @app.get("/health", tags=[OPERATIONS], responses={200: schemas.HealthResponse})
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/ready", tags=[OPERATIONS], responses={200: schemas.ReadyResponse, 503: schemas.ErrorResponse})
    def ready() -> Response:
        production = store.get(PRODUCTION_ALIAS)
        if production is None:
            reason = store.last_error or "the production model is not loaded yet"
            raise ApiError(503, "not_ready", reason)
        staging = store.get(STAGING_ALIAS)
        return jsonify(
            {
                "status": "ready",
                "production_version": production.version,
                "staging_version": staging and staging.version,
            }
        )

    @app.get("/models", tags=[OPERATIONS], responses={200: schemas.ModelsResponse})
    def models() -> Response:
        loaded = store.snapshot()
        return jsonify({alias: loaded[alias].describe() if alias in loaded else None for alias in ALIASES})

    @app.post(
        "/predict",
        tags=[PREDICTION],
        responses={200: schemas.PredictResponse, **ERRORS},
        summary="Score with production",
    )
    def predict(body: schemas.PredictRequest) -> Response:
        _, answer = score_with_production(body, use_cache=False)
        return jsonify(answer)

    @app.post(
        "/predict_cached",
        tags=[PREDICTION],
        responses={200: schemas.CachedPredictResponse, **ERRORS},
        summary="Score with production through the Redis cache",
    )
    def predict_cached(body: schemas.PredictRequest) -> Response:
        scored, answer = score_with_production(body, use_cache=True)
        g.log_fields["cache_hits"] = scored.cache_hits
        return jsonify(
            {**answer, "cached": scored.cache_hits == len(scored.probabilities), "cache_hits": scored.cache_hits}
        )

    @app.post(
        "/predict_ab",
        tags=[PREDICTION],
        responses={200: schemas.ABPredictResponse, 409: schemas.ErrorResponse, **ERRORS},
        summary="A/B: production (A) or staging (B), sticky per applicant",
    )
    def predict_ab(body: schemas.ABPredictRequest) -> Response:
        scored = service.predict_ab(body.batch, body.applicant_id, body.variant, g.request_id)
        variant = scored.variants[0] if len(set(scored.variants)) == 1 else "mixed"
        versions = [scored.models[v].version for v in scored.variants]
        g.log_fields = {"variant": variant, "version": ",".join(sorted(set(versions))), "rows": len(versions)}
        return jsonify(
            {
                "request_id": g.request_id,
                "variant": variant,
                "staging_available": store.get(STAGING_ALIAS) is not None,
                "probabilities": scored.probabilities,
                "variants": scored.variants,
                "versions": versions,
                "models": {v: model_ref(m) for v, m in scored.models.items()},
            }
        )

    @app.post(
        "/admin/reload",
        tags=[OPERATIONS],
        security=[{"bearer": []}],
        responses={200: schemas.ReloadResponse, 401: schemas.ErrorResponse, 403: schemas.ErrorResponse},
        summary="Re-resolve the aliases now",
    )
    def admin_reload() -> Response:
        expected = settings.admin_token.get_secret_value()
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
        if not expected or not hmac.compare_digest(header.removeprefix("Bearer ").encode(), expected.encode()):
            raise ApiError(403, "forbidden", "invalid token")
        report = store.refresh()
        return jsonify(
            {"loaded": report.loaded, "unchanged": report.unchanged, "removed": report.removed, "failed": report.failed}
        )

    @app.get("/docs", doc_ui=False)
    def docs() -> Response:
        return redirect("/swagger")

    logger.debug("gateway created for %s (aliases %s)", settings.model_name, ", ".join(ALIASES))
    return app


def start_serving(app: OpenAPI) -> None:
    """Load the models now and keep polling the registry (per process: call it in each gunicorn worker)."""
    store: ModelStore = app.extensions["model_store"]
    settings: ServingSettings = app.extensions["settings"]
    store.refresh()
    store.start_polling(settings.reload_interval_s)
