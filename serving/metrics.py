"""Prometheus metrics: request latency by endpoint and status (prometheus-flask-exporter) plus the gateway's own.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR is set before the app is imported and every worker writes its samples to
files there; /metrics aggregates them. Label values are bounded: endpoints, variants, versions, aliases, outcomes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_flask_exporter import PrometheusMetrics

SMALL_BATCH = 4  # up to this many values, plain observe() is cheaper than the bucket arithmetic
# Ten bounds, finer at the low end where most applicants score: every non-empty bucket is a locked write to the
# multiprocess file per request, so twenty 0.05-wide buckets had cost twice as much for a 100-row batch.
PROBABILITY_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


@dataclass
class GatewayMetrics:
    exporter: PrometheusMetrics
    request_latency: Histogram  # recorded by telemetry.py's hooks
    requests: Counter
    predictions: Counter
    probability: Histogram
    cache: Counter
    redis_errors: Counter
    log_dropped_rows: Counter
    reloads: Counter
    model_info: Gauge


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def create_metrics(app: Flask) -> GatewayMetrics:
    # A registry per app keeps test apps independent; in multiprocess mode samples live in files anyway. The
    # exporter's own per-request hooks are off: telemetry.py records the same request series for less.
    registry = CollectorRegistry(auto_describe=True)
    if multiprocess_mode():
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        exporter: PrometheusMetrics = GunicornInternalPrometheusMetrics(app, export_defaults=False, registry=registry)
    else:
        exporter = PrometheusMetrics(app, export_defaults=False, registry=registry)
    gauge_mode = {"multiprocess_mode": "liveall"} if multiprocess_mode() else {}
    # In multiprocess mode samples go to files that the exporter's MultiProcessCollector reads; registering the
    # metrics as well would report them twice.
    own = None if multiprocess_mode() else registry
    return GatewayMetrics(
        exporter=exporter,
        # The names, labels and buckets of prometheus-flask-exporter's two main default series, so queries on them
        # work unchanged. Not exported: flask_exporter_info, and flask_http_request_exceptions_total (the error
        # handlers turn every exception into a response, counted here by its status).
        request_latency=Histogram(
            "flask_http_request_duration_seconds",
            "Flask HTTP request duration in seconds",
            ["method", "endpoint", "status"],
            registry=own,
        ),
        requests=Counter(
            "flask_http_request_total", "Total number of HTTP requests", ["method", "status"], registry=own
        ),
        predictions=Counter("gateway_predictions_total", "Rows scored", ["variant", "model_version"], registry=own),
        probability=Histogram(
            "gateway_probability_of_default",
            "Predicted probability of default",
            ["variant"],
            buckets=PROBABILITY_BUCKETS,
            registry=own,
        ),
        cache=Counter("gateway_cache_rows_total", "Cache lookups by result", ["result"], registry=own),
        redis_errors=Counter(
            "gateway_redis_errors_total", "Redis calls that failed or were skipped", ["operation"], registry=own
        ),
        log_dropped_rows=Counter(
            "gateway_prediction_log_dropped_rows_total",
            "Scored rows the prediction log lost (Redis unavailable or its queue full)",
            registry=own,
        ),
        reloads=Counter(
            "gateway_model_reloads_total", "Model loads by alias and outcome", ["alias", "outcome"], registry=own
        ),
        model_info=Gauge(
            "gateway_model_info",
            "1 for each loaded alias/version",
            ["alias", "version", "precision"],
            registry=own,
            **gauge_mode,
        ),
    )


def observe(histogram: Histogram, values: np.ndarray) -> None:
    """`histogram.observe` for every value, in one increment per non-empty bucket instead of two per value.

    Uses prometheus_client's per-child bucket and sum values (tests/serving/test_metrics.py checks the result against
    plain `observe`); a 1,000-row batch would otherwise take 2,000 locked increments of the multiprocess files.
    """
    if len(values) <= SMALL_BATCH:
        for value in values.tolist():
            histogram.observe(value)
        return
    buckets, total, bounds = histogram._buckets, histogram._sum, histogram._upper_bounds  # noqa: SLF001
    # Prometheus buckets are "less than or equal": searchsorted(side="left") finds the first bound >= value.
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, count in zip(buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)
    total.inc(float(np.sum(values)))
