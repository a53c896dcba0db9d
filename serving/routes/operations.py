"""Operations routes: liveness, readiness, the loaded models, and a forced reload (bearer token)."""

from __future__ import annotations

import hmac
from dataclasses import asdict

from flask import Response, jsonify, request
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag

from registry.versions import ALIASES, PRODUCTION_ALIAS, STAGING_ALIAS
from serving import schemas
from serving.errors import ApiError
from serving.routes import operation_id
from serving.routes.prediction import API_KEY_SECURITY
from serving.service import current_gateway

OPERATIONS = Tag(name="operations", description="Health, readiness, loaded models, reload")

blueprint = APIBlueprint("operations", __name__, abp_tags=[OPERATIONS], operation_id_callback=operation_id)


@blueprint.get("/health", responses={200: schemas.HealthResponse})
def health() -> Response:
    return jsonify({"status": "ok"})


@blueprint.get("/ready", responses={200: schemas.ReadyResponse, 503: schemas.ErrorResponse})
def ready() -> Response:
    store = current_gateway().store
    served = store.served()
    production = served.get(PRODUCTION_ALIAS)
    if production is None:
        raise ApiError(503, "not_ready", store.last_error or "the production model is not loaded yet")
    staging = served.get(STAGING_ALIAS)
    return jsonify(
        {"status": "ready", "production_version": production.version, "staging_version": staging and staging.version}
    )


@blueprint.get(
    "/models",
    security=API_KEY_SECURITY,
    responses={200: schemas.ModelsResponse, 401: schemas.ErrorResponse},
    summary="The loaded versions, their thresholds and feature schemas (API key, as the scoring routes)",
)
def models() -> Response:
    # The decision threshold and feature schema are what a caller gaming the model would want: key as for scoring.
    current_gateway().api_keys.require(request.environ)
    served = current_gateway().store.served()
    loaded = {alias: model.describe() if (model := served.get(alias)) else None for alias in ALIASES}
    ab_test = {
        "staging_routable": served.routable_staging is not None,
        "staging_input_differences": list(served.staging_mismatch),
    }
    return jsonify({**loaded, "ab_test": ab_test})


@blueprint.post(
    "/admin/reload",
    security=[{"adminToken": []}],
    responses={200: schemas.ReloadResponse, 401: schemas.ErrorResponse, 403: schemas.ErrorResponse},
    summary="Re-resolve the aliases now",
)
def admin_reload() -> Response:
    gateway = current_gateway()
    expected = gateway.settings.admin_token.get_secret_value()
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    if not expected or not hmac.compare_digest(header.removeprefix("Bearer ").encode(), expected.encode()):
        raise ApiError(403, "forbidden", "invalid token")
    return jsonify(asdict(gateway.store.refresh()))
