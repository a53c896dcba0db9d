"""Per-request telemetry in one pair of Flask hooks: request id, latency histogram and request counter, access line.

prometheus-flask-exporter serves /metrics and sums gunicorn's workers (metrics.py), but its own per-request hooks are
off (`export_defaults=False`: docs/serving.md has what they cost). These hooks record the same series under the
exporter's names and labels, `flask_http_request_duration_seconds{method,endpoint,status}` and
`flask_http_request_total{method,status}`, with each label combination's child looked up once and kept. The endpoint
label is the view's name without its blueprint (`predict`, not `prediction.predict`), as before the routes moved into
blueprints, so queries and dashboards keep working.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import Counter, Histogram

from serving.logs import AccessLog
from serving.metrics import GatewayMetrics

UNTRACKED = frozenset({"prometheus_metrics"})  # Prometheus' own scrapes are neither counted nor logged
# Label values must stay bounded: any other method a client makes up is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def install_request_telemetry(app: Flask, metrics: GatewayMetrics, access_log: AccessLog) -> None:
    children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}

    def series(method: str, endpoint: str, status: int) -> tuple[Histogram, Counter]:
        key = (method, endpoint, status)
        found = children.get(key)
        if found is None:
            found = children[key] = (
                metrics.request_latency.labels(method=method, endpoint=endpoint, status=str(status)),
                metrics.requests.labels(method=method, status=str(status)),
            )
        return found

    @app.before_request
    def _start() -> None:
        state = g._get_current_object()  # one proxy lookup instead of one per attribute
        state.started = time.perf_counter()
        state.request_id = request.environ.get("HTTP_X_REQUEST_ID") or os.urandom(16).hex()
        state.log_fields = {}

    @app.after_request
    def _finish(response: Response) -> Response:
        # One proxy lookup each instead of one per attribute (this runs on every request).
        state, current = g._get_current_object(), request._get_current_object()  # type: ignore[attr-defined]
        request_id = state.get("request_id", "")
        response.headers["X-Request-ID"] = request_id
        endpoint = current.endpoint
        if endpoint in UNTRACKED:
            return response
        elapsed = time.perf_counter() - state.get("started", time.perf_counter())
        status = response.status_code
        view = None if endpoint is None else endpoint.rpartition(".")[2]
        # An unmatched route has no endpoint: labelled "None", as prometheus-flask-exporter labels it.
        latency, total = series(current.method if current.method in METHODS else "other", str(view), status)
        latency.observe(elapsed)
        total.inc()
        access_log.write(
            {
                "request_id": request_id,
                "endpoint": view,
                "status": status,
                "latency_ms": round(elapsed * 1e3, 3),
                **state.get("log_fields", {}),
            }
        )
        return response
