"""The gateway's app factory: it only wires settings, metrics, the gateway's services, hooks and blueprints."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_openapi3.models.info import Info
from flask_openapi3.models.security_scheme import SecurityScheme
from flask_openapi3.openapi import OpenAPI

from serving import schemas
from serving.body_limit import install_body_limit
from serving.errors import register_error_handlers, validation_error_response
from serving.fast_json import OrjsonProvider
from serving.fast_path import ScoringFastPath
from serving.metrics import create_metrics
from serving.model_store import ModelStore
from serving.routes import docs, operations, prediction
from serving.service import EXTENSION, build_gateway, gateway_of
from serving.settings import ServingSettings
from serving.telemetry import install_request_telemetry

# The scoring routes take an API key in either header (serving.auth); /admin/reload its own token.
SECURITY_SCHEMES: dict[str, SecurityScheme | dict[str, Any]] = {
    "apiKeyBearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <SERVING_API_KEYS key>"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "adminToken": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <SERVING_ADMIN_TOKEN>"},
}


def create_app(settings: ServingSettings | None = None, store: ModelStore | None = None) -> OpenAPI:
    settings = settings or ServingSettings()
    app = OpenAPI(
        __name__,
        info=Info(title="Credit-scoring gateway", version="1.0.0"),
        security_schemes=SECURITY_SCHEMES,
        doc_prefix="",
        doc_url="/openapi.json",
        validation_error_status=422,
        validation_error_callback=validation_error_response,
        validation_error_model=schemas.ErrorResponse,
    )
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False
    register_error_handlers(app)
    metrics = create_metrics(app, metrics_route=not settings.metrics_bind)
    gateway = build_gateway(settings, metrics, store)
    app.extensions[EXTENSION] = gateway
    install_request_telemetry(app, gateway.telemetry)
    install_body_limit(app, settings.max_body_bytes)
    for blueprint in (prediction.blueprint, operations.blueprint, docs.blueprint):
        app.register_api(blueprint)
    app.wsgi_app = ScoringFastPath(app.wsgi_app, gateway, gateway.telemetry, settings.max_body_bytes)  # type: ignore[method-assign]
    return app


def start_serving(app: Flask) -> None:
    """Load the models now and keep polling the registry (per process: call it in each server worker)."""
    gateway = gateway_of(app)
    gateway.store.refresh()
    gateway.store.start_polling(gateway.settings.reload_interval_s)


def stop_serving(app: Flask) -> None:
    """A worker's last act: send the prediction-log entries still queued."""
    gateway_of(app).predictions.log.close()
