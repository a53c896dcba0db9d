"""Scoring a request: validate against the served model's schema, route A/B, use the cache, log and count rows."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import Counter

from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS
from scoring.reasons import Explainer, Reason
from serving.cache import PredictionCache
from serving.errors import ApiError
from serving.metrics import BulkObserver, GatewayMetrics
from serving.model_store import LoadedModel, ModelStore, ServedModels
from serving.prediction_log import LoggedGroup, PredictionLog
from serving.router import VARIANT_A, VARIANT_B, ABRouter
from serving.validation import ParsedBatch, RowsInvalidError, require_rows, take_inputs


@dataclass(frozen=True)
class ScoredGroup:
    """The rows one model scored in a request."""

    variant: str
    model: LoadedModel
    parsed: ParsedBatch
    probabilities: np.ndarray
    listed: list[float]  # the same probabilities as Python floats (the response's and the log's)


@dataclass
class Scored:
    """What a request produced, for the response and the access log."""

    probabilities: list[float]
    variants: list[str]
    models: dict[str, LoadedModel]  # variant -> model that served it
    cache_hits: int = 0
    staging_routable: bool = False  # whether rows could have gone to B (a staging model taking production's inputs)
    scores: list[int] = field(default_factory=list)  # score points, each row on its model's scale
    bands: list[str] | None = None  # decision band names, when the models define bands
    reasons: list[list[dict[str, object]]] | None = None  # with `explain`: per row, the reasons risk went up


def _explainer(model: LoadedModel) -> Explainer:
    """The model's explainer; checked before scoring, so that a refused explanation scores and logs nothing."""
    if model.explainer is None:
        raise ApiError(
            409,
            "explanation_unavailable",
            f"{model.name} version {model.version} carries no explanation reference (registered before reason codes "
            "existed): register a new version to explain its scores",
        )
    return model.explainer


def _reasons(group: ScoredGroup) -> list[list[Reason]]:
    return _explainer(group.model).explain(group.parsed.inputs, group.model.reason_count)


def _annotate(
    scored: Scored, probabilities: np.ndarray, groups: Sequence[tuple[Sequence[int], ScoredGroup]], explain: bool
) -> Scored:
    """Score points, bands and (with `explain`) reason codes of every row, by the model that scored it; `groups`
    pairs each model's rows (request row numbers) with what it scored, `probabilities` holds every row's."""
    scalings = {group.model.scaling for _, group in groups}
    if len(scalings) == 1:  # one scale for every row (both A/B versions on the same one, too): no scattering
        scaling = scalings.pop()
        points = scaling.points(probabilities)
        bands = scaling.band_names(points)
    else:
        points, bands = np.empty(len(probabilities)), [""] * len(probabilities)
        for index, group in groups:
            group_points = group.model.scaling.points(group.probabilities)
            points[index] = group_points
            for position, band in zip(index, group.model.scaling.band_names(group_points), strict=False):
                bands[position] = band
    scored.scores, scored.bands = points.astype(np.int64).tolist(), bands if any(bands) else None
    if explain:
        reasons: list[list[dict[str, object]]] = [[] for _ in range(len(probabilities))]
        for index, group in groups:
            for position, row in zip(index, _reasons(group), strict=True):
                reasons[position] = [reason.as_dict() for reason in row]
        scored.reasons = reasons
    return scored


def _invalid_rows(
    error: RowsInvalidError, offset_map: list[int], message: str = "some rows do not match the model's feature schema"
) -> ApiError:
    """The 422 for rows a model's parser refused, with row numbers of the whole request (`offset_map`)."""
    details = [
        {**e.as_dict(), "row": offset_map[e.row] if e.row is not None and e.row < len(offset_map) else e.row}
        for e in error.errors
    ]
    return ApiError(422, "invalid_rows", message, details)


def _parse(rows: list[Any], model: LoadedModel, applicant_id: str | int | None, offset_map: list[int]) -> ParsedBatch:
    try:
        return model.parser.parse(rows, None if applicant_id is None else str(applicant_id))
    except RowsInvalidError as error:
        raise _invalid_rows(error, offset_map) from None


class PredictionService:
    def __init__(
        self,
        store: ModelStore,
        router: ABRouter,
        cache: PredictionCache,
        prediction_log: PredictionLog,
        metrics: GatewayMetrics,
        max_batch_rows: int,
        max_explain_rows: int,
    ):
        self.store, self.router, self.cache, self.log = store, router, cache, prediction_log
        self.metrics, self.max_batch_rows, self.max_explain_rows = metrics, max_batch_rows, max_explain_rows
        self._children: dict[tuple[str, str], tuple[Counter, BulkObserver]] = {}
        # Made now, not at the first request: an observer refuses a prometheus_client it does not know at start-up.
        self._probability = {v: BulkObserver(metrics.probability.labels(variant=v)) for v in (VARIANT_A, VARIANT_B)}
        self._cache_hits, self._cache_misses = metrics.cache.labels(result="hit"), metrics.cache.labels(result="miss")

    def _series(self, variant: str, version: str) -> tuple[Counter, BulkObserver]:
        """The labelled children for a variant and version (looking labels up each time costs more than the update)."""
        key = (variant, version)
        if key not in self._children:
            self._children[key] = (
                self.metrics.predictions.labels(variant=variant, model_version=version),
                self._probability[variant],
            )
        return self._children[key]

    @staticmethod
    def _production(served: ServedModels) -> LoadedModel:
        model = served.get(PRODUCTION_ALIAS)
        if model is None:
            raise ApiError(503, "model_unavailable", f"no {PRODUCTION_ALIAS} model is loaded")
        return model

    @staticmethod
    def _staging(served: ServedModels, forced: str | None) -> LoadedModel | None:
        """The model behind B, if rows may go there; forcing B without one is the client's mistake (409)."""
        staging = served.routable_staging
        if forced == VARIANT_B and staging is None:
            loaded = served.get(STAGING_ALIAS)
            if loaded is None:
                raise ApiError(409, "no_staging_model", "variant B was requested but no staging model is loaded")
            raise ApiError(
                409,
                "staging_not_routable",
                f"variant B was requested but staging version {loaded.version} takes other inputs than production "
                f"({', '.join(served.staging_mismatch)})",
            )
        return staging

    def _check_batch(self, rows: Any, explain: bool) -> None:
        try:
            require_rows(rows)
        except RowsInvalidError as error:
            raise _invalid_rows(error, [], "the batch must be a non-empty list of rows") from None
        if len(rows) > self.max_batch_rows:
            raise ApiError(413, "batch_too_large", f"{len(rows)} rows; at most {self.max_batch_rows} per request")
        if explain and len(rows) > self.max_explain_rows:
            raise ApiError(
                413,
                "explain_batch_too_large",
                f"{len(rows)} rows; at most {self.max_explain_rows} rows per request with explanations "
                "(SERVING_MAX_EXPLAIN_ROWS)",
                [{"row": None, "field": "explain", "message": f"limit is {self.max_explain_rows} rows"}],
            )

    def _score(self, model: LoadedModel, parsed: ParsedBatch, use_cache: bool) -> tuple[np.ndarray, int]:
        if not use_cache:
            return model.predict(parsed.inputs), 0
        keys = [self.cache.key(model.name, model.version, row) for row in parsed.canonical_rows]
        cached = self.cache.get_many(keys)
        missing = [i for i, value in enumerate(cached) if value is None]
        probabilities = np.array([np.nan if value is None else value for value in cached], dtype=np.float64)
        if missing:
            fresh = model.predict(take_inputs(parsed.inputs, missing))
            probabilities[missing] = fresh
            self.cache.set_many({keys[i]: float(p) for i, p in zip(missing, fresh, strict=True)})
        hits = len(keys) - len(missing)
        if hits:
            self._cache_hits.inc(hits)
        if missing:
            self._cache_misses.inc(len(missing))
        return probabilities, hits

    def predict(
        self,
        rows: list[Any],
        applicant_id: str | int | None,
        request_id: str,
        use_cache: bool,
        explain: bool = False,
    ) -> Scored:
        self._check_batch(rows, explain)
        model = self._production(self.store.served())
        if explain:
            _explainer(model)
        parsed = _parse(rows, model, applicant_id, list(range(len(rows))))
        probabilities, hits = self._score(model, parsed, use_cache)
        listed = probabilities.tolist()
        group = ScoredGroup(VARIANT_A, model, parsed, probabilities, listed)
        self._record(request_id, [group])
        scored = Scored(listed, [VARIANT_A] * len(rows), {VARIANT_A: model}, hits)
        return _annotate(scored, probabilities, [(range(len(rows)), group)], explain)

    def predict_ab(
        self,
        rows: list[Any],
        applicant_id: str | int | None,
        forced: str | None,
        request_id: str,
        explain: bool = False,
    ) -> Scored:
        self._check_batch(rows, explain)
        served = self.store.served()
        production, staging = self._production(served), self._staging(served, forced)
        if forced is not None:
            variants = [forced] * len(rows)
        else:
            ids = [row.get("applicant_id", applicant_id) if isinstance(row, dict) else applicant_id for row in rows]
            variants = self.router.assign([None if i is None else str(i) for i in ids], staging is not None)
        models = {VARIANT_A: production} | ({VARIANT_B: staging} if staging is not None else {})
        if explain:
            for variant in set(variants):
                _explainer(models[variant])
        groups = []
        for variant, model, index, parsed in self._parse_by_variant(rows, applicant_id, variants, models):
            scored = model.predict(parsed.inputs)
            groups.append((index, ScoredGroup(variant, model, parsed, scored, scored.tolist())))
        self._record(request_id, [group for _, group in groups])
        if len(groups) == 1:  # the usual case (and every single row): no merging
            merged, probabilities = groups[0][1].probabilities, groups[0][1].listed
        else:
            merged = np.empty(len(rows), dtype=np.float64)
            for index, group in groups:
                merged[index] = group.probabilities
            probabilities = merged.tolist()
        models_used = {group.variant: group.model for _, group in groups}
        result = Scored(probabilities, variants, models_used, staging_routable=staging is not None)
        return _annotate(result, merged, groups, explain)

    @staticmethod
    def _parse_by_variant(
        rows: list[Any], applicant_id: str | int | None, variants: list[str], models: dict[str, LoadedModel]
    ) -> list[tuple[str, LoadedModel, list[int], ParsedBatch]]:
        """Each variant's rows (request row numbers) and their parsed inputs. B only gets rows when staging takes
        production's inputs (`ServedModels.routable_staging`), so a split batch is parsed once, by production's parser,
        and then split: indexing the arrays costs less than a second parse.
        """
        groups = [
            (variant, model, [i for i, v in enumerate(variants) if v == variant]) for variant, model in models.items()
        ]
        groups = [(variant, model, index) for variant, model, index in groups if index]
        if len(groups) == 1:
            variant, model, index = groups[0]
            return [(variant, model, index, _parse(rows, model, applicant_id, index))]
        whole = _parse(rows, models[VARIANT_A], applicant_id, list(range(len(rows))))
        return [(variant, model, index, whole.subset(index)) for variant, model, index in groups]

    def _record(self, request_id: str, groups: list[ScoredGroup]) -> None:
        """Count and log what each model scored in this request."""
        now = time.time()
        for group in groups:
            predictions, probability = self._series(group.variant, group.model.version)
            predictions.inc(len(group.listed))
            probability.observe(group.probabilities)
        self.log.append(
            [
                LoggedGroup(
                    timestamp=now,
                    request_id=request_id,
                    model=group.model.name,
                    version=group.model.version,
                    variant=group.variant,
                    columns=group.parsed.columns,
                    probabilities=group.listed,
                    applicant_ids=group.parsed.applicant_ids,
                )
                for group in groups
            ]
        )
