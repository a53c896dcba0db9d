"""Scoring routes: /predict and /predict_cached (production), /predict_ab (production A, staging B) and /explain
(production, with reason codes).

Every answer carries `predictions`: the probabilities of default, in request order (the key of the API this gateway
replaces), and `scores`: the same on the model's score-point scale; `bands` when the model names decision bands, and
`reasons` when asked for (`"explain": true`, or /explain).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, g, jsonify, request
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from flask_openapi3.types import ResponseDict

from serving import schemas
from serving.model_store import LoadedModel
from serving.predictor import Scored
from serving.router import VARIANT_A
from serving.routes import operation_id
from serving.service import Gateway, current_gateway

PREDICTION = Tag(name="prediction", description="Probability of default for credit applications")
ERRORS: ResponseDict = {
    401: schemas.ErrorResponse,  # no API key, or a wrong one (when SERVING_API_KEYS is set: serving.auth)
    413: schemas.ErrorResponse,
    422: schemas.ErrorResponse,
    503: schemas.ErrorResponse,
}

Answer = tuple[dict[str, Any], dict[str, Any]]  # the JSON answer, and the fields of the request's access line

# Either header carries the key (serving.auth); the schemes are declared in serving.app.
API_KEY_SECURITY: list[dict[str, list[str]]] = [{"apiKeyBearer": []}, {"apiKeyHeader": []}]

blueprint = APIBlueprint(
    "prediction",
    __name__,
    abp_tags=[PREDICTION],
    abp_security=API_KEY_SECURITY,
    operation_id_callback=operation_id,
)


@blueprint.before_request
def _require_api_key() -> None:
    """After the app's own hooks (request id, body size), before the body is read: serving.fast_path asks the same
    check at the same point."""
    current_gateway().api_keys.require(request.environ)


def model_ref(model: LoadedModel) -> dict[str, str]:
    return {"name": model.name, "version": model.version, "alias": model.alias}


def risk_fields(scored: Scored) -> dict[str, Any]:
    """`scores`, and `bands` / `reasons` when there are any."""
    fields: dict[str, Any] = {"scores": scored.scores}
    if scored.bands is not None:
        fields["bands"] = scored.bands
    if scored.reasons is not None:
        fields["reasons"] = scored.reasons
    return fields


def _score_with_production(
    gateway: Gateway, body: schemas.PredictRequest, request_id: str, use_cache: bool, explain: bool
) -> tuple[Scored, Answer]:
    """The body of /predict, /predict_cached and /explain: `body.batch` is still raw JSON, checked by the model's
    parser."""
    scored = gateway.predictions.predict(
        body.batch, body.applicant_id, request_id, use_cache=use_cache, explain=explain
    )
    model = scored.models[VARIANT_A]
    fields = {"variant": VARIANT_A, "version": model.version, "rows": len(scored.probabilities)}
    answer = {"request_id": request_id, "model": model_ref(model), "predictions": scored.probabilities}
    return scored, (answer | risk_fields(scored), fields)


# Each scoring route as a plain function of the gateway, the checked body and the request id, returning the answer
# and the access line's fields: the Flask views below and serving.fast_path (the same routes without Flask's
# per-request work, for requests that are plainly well-formed) both answer through these.
def predict_answer(gateway: Gateway, body: schemas.PredictRequest, request_id: str) -> Answer:
    return _score_with_production(gateway, body, request_id, use_cache=False, explain=body.explain)[1]


def explain_answer(gateway: Gateway, body: schemas.PredictRequest, request_id: str) -> Answer:
    return _score_with_production(gateway, body, request_id, use_cache=False, explain=True)[1]


def cached_answer(gateway: Gateway, body: schemas.PredictRequest, request_id: str) -> Answer:
    scored, (answer, fields) = _score_with_production(gateway, body, request_id, use_cache=True, explain=body.explain)
    fields["cache_hits"] = scored.cache_hits
    cached = {"cached": scored.cache_hits == len(scored.probabilities), "cache_hits": scored.cache_hits}
    return answer | cached, fields


def ab_answer(gateway: Gateway, body: schemas.ABPredictRequest, request_id: str) -> Answer:
    scored = gateway.predictions.predict_ab(
        body.batch, body.applicant_id, body.variant, request_id, explain=body.explain
    )
    variant = scored.variants[0] if len(set(scored.variants)) == 1 else "mixed"
    versions = [scored.models[v].version for v in scored.variants]
    fields = {"variant": variant, "version": ",".join(sorted(set(versions))), "rows": len(versions)}
    answer = {
        "request_id": request_id,
        "variant": variant,
        "staging_available": scored.staging_routable,
        "predictions": scored.probabilities,
        "variants": scored.variants,
        "versions": versions,
        "models": {v: model_ref(m) for v, m in scored.models.items()},
    }
    return answer | risk_fields(scored), fields


@dataclass(frozen=True)
class ScoringRoute:
    """A scoring route: its path, view name (the endpoint label of metrics and logs), body model and answer."""

    path: str
    view: str
    body: type[schemas.PredictRequest]
    answer: Callable[[Gateway, Any, str], Answer]


SCORING_ROUTES = (
    ScoringRoute("/predict", "predict", schemas.PredictRequest, predict_answer),
    ScoringRoute("/explain", "explain", schemas.PredictRequest, explain_answer),
    ScoringRoute("/predict_cached", "predict_cached", schemas.PredictRequest, cached_answer),
    ScoringRoute("/predict_ab", "predict_ab", schemas.ABPredictRequest, ab_answer),
)


def _answer_with_flask(answer: Callable[[Gateway, Any, str], Answer], body: schemas.PredictRequest) -> Response:
    fields: dict[str, Any]
    answered, fields = answer(current_gateway(), body, g.request_id)
    g.log_fields = fields
    return jsonify(answered)


@blueprint.post("/predict", responses={200: schemas.PredictResponse, **ERRORS}, summary="Score with production")
def predict(body: schemas.PredictRequest) -> Response:
    return _answer_with_flask(predict_answer, body)


@blueprint.post(
    "/explain",
    responses={200: schemas.PredictResponse, 409: schemas.ErrorResponse, **ERRORS},
    summary="Score with production and give each row's reason codes",
)
def explain(body: schemas.PredictRequest) -> Response:
    return _answer_with_flask(explain_answer, body)


@blueprint.post(
    "/predict_cached",
    responses={200: schemas.CachedPredictResponse, **ERRORS},
    summary="Score with production through the Redis cache",
)
def predict_cached(body: schemas.PredictRequest) -> Response:
    return _answer_with_flask(cached_answer, body)


@blueprint.post(
    "/predict_ab",
    responses={200: schemas.ABPredictResponse, 409: schemas.ErrorResponse, **ERRORS},
    summary="A/B: production (A) or staging (B), sticky per applicant",
)
def predict_ab(body: schemas.ABPredictRequest) -> Response:
    return _answer_with_flask(ab_answer, body)
