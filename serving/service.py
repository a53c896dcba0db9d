"""Builds the gateway's collaborators in one place (Redis connections, cache, prediction log, A/B router, model store,
prediction service) and keeps them on the app as one typed `Gateway`, the only way routes and hooks reach them."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask, current_app

from registry.settings import RegistrySettings
from serving.auth import ApiKeyCheck
from serving.cache import PredictionCache
from serving.logs import AccessLog
from serving.metrics import GatewayMetrics
from serving.model_store import ModelStore
from serving.prediction_log import PredictionLog
from serving.predictor import PredictionService
from serving.redis_gateway import CircuitBreaker, RedisGateway
from serving.router import ABRouter
from serving.settings import ServingSettings
from serving.telemetry import RequestTelemetry

EXTENSION = "credit_scoring_gateway"


@dataclass(frozen=True)
class Gateway:
    settings: ServingSettings
    store: ModelStore
    predictions: PredictionService
    telemetry: RequestTelemetry  # every answered request's latency, count and access line
    api_keys: ApiKeyCheck  # who may call the scoring routes (the keys' digests, made once here)


def registry_settings(settings: ServingSettings) -> RegistrySettings:
    """The registry's settings for the served model, with the gateway's own model cache folder if it names one."""
    return RegistrySettings.of(settings, settings.model_cache_dir)


def build_gateway(settings: ServingSettings, metrics: GatewayMetrics, store: ModelStore | None = None) -> Gateway:
    store = store or ModelStore(registry_settings(settings), settings.reason_count)
    store.listeners.append(metrics.record_refresh)

    def guarded_redis(timeout_s: float) -> RedisGateway:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return RedisGateway(
            client,
            CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_s),
            lambda operation: metrics.redis_errors.labels(operation=operation).inc(),
        )

    # The log's writer gets a connection and breaker of its own: its large, late writes must neither wait on the
    # cache's short timeout nor open the breaker that switches the cache off.
    predictions = PredictionService(
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
        settings.max_explain_rows,
    )
    return Gateway(
        settings, store, predictions, RequestTelemetry(metrics, AccessLog()), ApiKeyCheck(settings.api_key_list())
    )


def gateway_of(app: Flask) -> Gateway:
    gateway: Gateway = app.extensions[EXTENSION]
    return gateway


def current_gateway() -> Gateway:
    """The gateway of the app handling the current request."""
    return gateway_of(current_app)
