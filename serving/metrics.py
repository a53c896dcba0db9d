"""Prometheus metrics: request latency by endpoint and status (prometheus-flask-exporter's names) plus the gateway's.

Under either server (serving/server.py), PROMETHEUS_MULTIPROC_DIR is set before the app is imported and every worker
writes its samples to files there; /metrics aggregates them. Label values are bounded: endpoints, variants, versions,
aliases, outcomes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_flask_exporter import PrometheusMetrics

from registry.versions import ALIASES
from serving.model_store import RefreshReport, ServedModels
from serving.redis_gateway import OPERATIONS as REDIS_OPERATIONS

SMALL_BATCH = 4  # up to this many values, plain observe() is cheaper than the bucket arithmetic
# Ten bounds, finer at the low end where most applicants score: every non-empty bucket is a locked write to the
# multiprocess file per request (docs/serving.md has what twenty buckets cost).
RELOAD_OK, RELOAD_FAILED = "ok", "failed"
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
    staging_routable: Gauge

    # The model_info series this process has set to 1: gauges cannot be cleared in gunicorn's multiprocess mode (the
    # samples stay in the worker's file), so series of versions no longer served are set to 0 instead.
    _model_info_series: set[tuple[str, str, str]] = field(default_factory=set, init=False, repr=False)

    def record_refresh(self, report: RefreshReport, served: ServedModels) -> None:
        """A model store listener: reload outcomes, the versions now loaded, and whether B can be routed to."""
        for entry in report.loaded:
            self.reloads.labels(alias=entry.alias, outcome=RELOAD_OK).inc()
        for alias in report.failed:
            self.reloads.labels(alias=alias, outcome=RELOAD_FAILED).inc()
        current = {(alias, model.version, model.precision) for alias, model in served.models.items()}
        for alias, version, precision in self._model_info_series - current:
            self.model_info.labels(alias=alias, version=version, precision=precision).set(0)
        for alias, version, precision in current:
            self.model_info.labels(alias=alias, version=version, precision=precision).set(1)
        self._model_info_series |= current
        self.staging_routable.set(1 if served.routable_staging is not None else 0)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def forget_dead_workers() -> None:
    """Drop the live gauges of worker processes that are gone (their model_info would otherwise still count).

    gunicorn reports each dead worker (gunicorn_conf.child_exit); granian has no such hook, so each worker does this
    as it starts (a respawn after a crash) and for itself as it exits."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    from prometheus_client import multiprocess

    for path in Path(folder).glob("gauge_live*_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        if pid != os.getpid() and not _running(pid):
            # Another worker (or gunicorn's child_exit) may remove the same files at the same moment.
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]


def forget_this_worker() -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        from prometheus_client import multiprocess

        with contextlib.suppress(FileNotFoundError):  # a new worker may have swept them already
            multiprocess.mark_process_dead(os.getpid(), folder)  # type: ignore[no-untyped-call]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds that pid: ours is gone
        return False
    return True


def create_metrics(app: Flask, metrics_route: bool = True) -> GatewayMetrics:
    """The gateway's metrics; `/metrics` on the app unless `metrics_route` is false (SERVING_METRICS_BIND: the
    server's own process serves them, serve_multiprocess_metrics)."""
    # A registry per app keeps test apps independent; in multiprocess mode samples live in files anyway. The
    # exporter's own per-request hooks are off: telemetry.py records the same request series for less.
    registry = CollectorRegistry(auto_describe=True)
    if not metrics_route:  # no route: the exporter only stands in for the one that would serve them
        exporter: PrometheusMetrics = PrometheusMetrics(app, path=None, export_defaults=False, registry=registry)
    elif multiprocess_mode():
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        exporter = GunicornInternalPrometheusMetrics(app, export_defaults=False, registry=registry)
    else:
        exporter = PrometheusMetrics(app, export_defaults=False, registry=registry)
    # Each worker's own series, for as long as the worker lives (what a loaded model is: per process).
    gauge_mode: Literal["liveall", "all"] = "liveall" if multiprocess_mode() else "all"
    # In multiprocess mode samples go to files that the exporter's MultiProcessCollector reads; registering the
    # metrics as well would report them twice.
    own = None if multiprocess_mode() else registry
    metrics = GatewayMetrics(
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
            "1 for each loaded alias/version (0 for one this process served before)",
            ["alias", "version", "precision"],
            registry=own,
            multiprocess_mode=gauge_mode,
        ),
        staging_routable=Gauge(
            "gateway_staging_routable",
            "1 while a staging version is loaded and takes production's inputs (A/B can route to it), else 0",
            registry=own,
            multiprocess_mode=gauge_mode,
        ),
    )
    # Every series of these labelled counters exists from start-up, at 0: an alert on `increase()` then sees the
    # first failure, and a dashboard finds the series before anything went wrong.
    for alias in ALIASES:
        for outcome in (RELOAD_OK, RELOAD_FAILED):
            metrics.reloads.labels(alias=alias, outcome=outcome)
    for operation in REDIS_OPERATIONS:
        metrics.redis_errors.labels(operation=operation)
    return metrics


class BulkObserver:
    """One histogram child observing a whole array per call: one increment per non-empty bucket instead of two per
    value (a 1,000-row batch would otherwise take 2,000 locked writes to the multiprocess files).

    prometheus_client has no public bulk observe, so this is the one place that reaches into a child's internals: its
    per-bound `_buckets` counters, `_sum` and `_upper_bounds`. They are looked up when the observer is made, so a
    library release that renames them fails at start-up instead of counting wrong (tests/serving/test_metrics.py
    also compares the result with one `observe` per value).
    """

    def __init__(self, child: Histogram):
        self._child = child
        try:
            internals: Any = child
            self._buckets, self._sum = internals._buckets, internals._sum
            self._bounds = np.asarray(internals._upper_bounds, dtype=np.float64)
        except AttributeError as error:
            raise RuntimeError(
                "prometheus_client's Histogram no longer keeps _buckets/_sum/_upper_bounds: update serving.metrics."
                "BulkObserver for this release"
            ) from error
        if len(self._buckets) != len(self._bounds) or self._bounds[-1] != np.inf:
            raise RuntimeError("prometheus_client's Histogram buckets changed shape: update serving.metrics")

    def observe(self, values: np.ndarray) -> None:
        if len(values) <= SMALL_BATCH:
            for value in values.tolist():
                self._child.observe(value)
            return
        # Prometheus buckets are "less than or equal": searchsorted(side="left") finds the first bound >= value.
        counts = np.bincount(np.searchsorted(self._bounds, values, side="left"), minlength=len(self._bounds))
        for bucket, count in zip(self._buckets, counts.tolist(), strict=False):
            if count:
                bucket.inc(count)
        self._sum.inc(float(np.sum(values)))
