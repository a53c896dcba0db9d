"""Scoring routes: /predict and /predict_cached (production), /predict_ab (production A, staging B) and /explain
(production, with reason codes).

Every answer carries `predictions`: the probabilities of default, in request order (the key of the API this gateway
replaces), and `scores`: the same on the model's score-point scale; `bands` when the model names decision bands, and
`reasons` when asked for (`"explain": true`, or /explain).
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from flask_openapi3.types import ResponseDict

from serving import schemas
from serving.model_store import LoadedModel
from serving.predictor import Scored
from serving.router import VARIANT_A
from serving.routes import operation_id
from serving.service import current_gateway

PREDICTION = Tag(name="prediction", description="Probability of default for credit applications")
ERRORS: ResponseDict = {
    413: schemas.ErrorResponse,
    422: schemas.ErrorResponse,
    503: schemas.ErrorResponse,
}

blueprint = APIBlueprint("prediction", __name__, abp_tags=[PREDICTION], operation_id_callback=operation_id)


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
    body: schemas.PredictRequest, use_cache: bool, explain: bool
) -> tuple[Scored, dict[str, Any]]:
    """The body of /predict, /predict_cached and /explain: `body.batch` is still raw JSON, checked by the model's
    parser."""
    scored = current_gateway().predictions.predict(
        body.batch, body.applicant_id, g.request_id, use_cache=use_cache, explain=explain
    )
    model = scored.models[VARIANT_A]
    g.log_fields = {"variant": VARIANT_A, "version": model.version, "rows": len(scored.probabilities)}
    answer = {"request_id": g.request_id, "model": model_ref(model), "predictions": scored.probabilities}
    return scored, answer | risk_fields(scored)


@blueprint.post("/predict", responses={200: schemas.PredictResponse, **ERRORS}, summary="Score with production")
def predict(body: schemas.PredictRequest) -> Response:
    _, answer = _score_with_production(body, use_cache=False, explain=body.explain)
    return jsonify(answer)


@blueprint.post(
    "/explain",
    responses={200: schemas.PredictResponse, 409: schemas.ErrorResponse, **ERRORS},
    summary="Score with production and give each row's reason codes",
)
def explain(body: schemas.PredictRequest) -> Response:
    _, answer = _score_with_production(body, use_cache=False, explain=True)
    return jsonify(answer)


@blueprint.post(
    "/predict_cached",
    responses={200: schemas.CachedPredictResponse, **ERRORS},
    summary="Score with production through the Redis cache",
)
def predict_cached(body: schemas.PredictRequest) -> Response:
    scored, answer = _score_with_production(body, use_cache=True, explain=body.explain)
    g.log_fields["cache_hits"] = scored.cache_hits
    return jsonify(
        {**answer, "cached": scored.cache_hits == len(scored.probabilities), "cache_hits": scored.cache_hits}
    )


@blueprint.post(
    "/predict_ab",
    responses={200: schemas.ABPredictResponse, 409: schemas.ErrorResponse, **ERRORS},
    summary="A/B: production (A) or staging (B), sticky per applicant",
)
def predict_ab(body: schemas.ABPredictRequest) -> Response:
    scored = current_gateway().predictions.predict_ab(
        body.batch, body.applicant_id, body.variant, g.request_id, explain=body.explain
    )
    variant = scored.variants[0] if len(set(scored.variants)) == 1 else "mixed"
    versions = [scored.models[v].version for v in scored.variants]
    g.log_fields = {"variant": variant, "version": ",".join(sorted(set(versions))), "rows": len(versions)}
    return jsonify(
        {
            "request_id": g.request_id,
            "variant": variant,
            "staging_available": scored.staging_routable,
            "predictions": scored.probabilities,
            "variants": scored.variants,
            "versions": versions,
            "models": {v: model_ref(m) for v, m in scored.models.items()},
        }
        | risk_fields(scored)
    )
