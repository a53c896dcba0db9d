"""Per-request telemetry in one pair of Flask hooks: request id, latency histogram and request counter, access line.

prometheus-flask-exporter serves /metrics and sums the server's workers (metrics.py), but its own per-request hooks are
off (`export_defaults=False`: docs/serving.md has what they cost). These hooks record the same series under the
exporter's names and labels, `flask_http_request_duration_seconds{method,endpoint,status}` and
`flask_http_request_total{method,status}`, with each label combination's child looked up once and kept. The endpoint
label is the view's name without its blueprint (`predict`, not `prediction.predict`), as before the routes moved into
blueprints, so queries and dashboards keep working.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import Counter, Histogram

from serving.logs import AccessLog
from serving.metrics import GatewayMetrics

UNTRACKED = frozenset({"prometheus_metrics"})  # Prometheus' own scrapes are neither counted nor logged
# Label values must stay bounded: any other method a client makes up is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestTelemetry:
    """Records one answered request: latency histogram, request counter and access line (one place for both the Flask
    hooks below and serving.fast_path)."""

    def __init__(self, metrics: GatewayMetrics, access_log: AccessLog):
        self.metrics, self.access_log = metrics, access_log
        self._children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}

    def _series(self, method: str, endpoint: str, status: int) -> tuple[Histogram, Counter]:
        key = (method, endpoint, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                self.metrics.request_latency.labels(method=method, endpoint=endpoint, status=str(status)),
                self.metrics.requests.labels(method=method, status=str(status)),
            )
        return found

    def record(
        self, method: str, view: str | None, status: int, elapsed_s: float, request_id: str, fields: dict[str, Any]
    ) -> None:
        # An unmatched route has no view: labelled "None", as prometheus-flask-exporter labels it.
        latency, total = self._series(method if method in METHODS else "other", str(view), status)
        latency.observe(elapsed_s)
        total.inc()
        self.access_log.write(
            {
                "request_id": request_id,
                "endpoint": view,
                "status": status,
                "latency_ms": round(elapsed_s * 1e3, 3),
                **fields,
            }
        )


def new_request_id(environ: dict[str, Any]) -> str:
    """The caller's X-Request-ID, or a new one."""
    return environ.get("HTTP_X_REQUEST_ID") or os.urandom(16).hex()


def install_request_telemetry(app: Flask, telemetry: RequestTelemetry) -> None:
    @app.before_request
    def _start() -> None:
        state = g._get_current_object()  # one proxy lookup instead of one per attribute
        state.started = time.perf_counter()
        state.request_id = new_request_id(request.environ)
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
        view = None if endpoint is None else endpoint.rpartition(".")[2]
        telemetry.record(current.method, view, response.status_code, elapsed, request_id, state.get("log_fields", {}))
        return response
