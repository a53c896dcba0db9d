"""The scoring routes answered without Flask's per-request machinery, for requests that are plainly well-formed.

Flask and flask-openapi3 cost about as much per request as everything the gateway does for one row (request and
application contexts, URL matching, the request wrapper, hooks, the view wrapper, the response object: ~250 µs of
~450 in-process, docs/benchmarks.md "Where one request's time goes"). A POST to /predict, /predict_ab,
/predict_cached or /explain with a JSON body of a declared length within the limit is answered here: the same body
model (pydantic), the same answer functions (serving.routes.prediction), the same telemetry (serving.telemetry), the
same JSON encoding (serving.fast_json), the same error shape (serving.errors), the same API key check
(serving.auth, before the body is parsed, as the prediction blueprint's hook). Anything else goes to the Flask app
unchanged, body included, and so does every body this path cannot read as the model's request (not strict JSON, say
with NaN literals, or not matching the body model: flask-openapi3 words those errors): one implementation of each.
The gateway's own refusals (`ApiError`: batch limits, no model, a 409) are answered here, with the same body the Flask
app's handler writes, so nothing is decided twice (the A/B router draws at random).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from pydantic import ValidationError

from serving.errors import INTERNAL_ERROR, ApiError, error_body
from serving.fast_json import response_body
from serving.routes.prediction import SCORING_ROUTES, ScoringRoute
from serving.service import Gateway
from serving.telemetry import RequestTelemetry, new_request_id

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
# Bodies the Flask app reads itself: it parses NaN literals, and flask-openapi3 words a body that does not match.
REPLAYED = (orjson.JSONDecodeError, ValidationError)
JSON = "application/json"


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase.upper()}"  # as Werkzeug writes it


class ScoringFastPath:
    """WSGI middleware in front of the Flask app (`app.wsgi_app`), see the module's docstring."""

    def __init__(self, flask_app: WsgiApp, gateway: Gateway, telemetry: RequestTelemetry, max_body_bytes: int):
        self.flask_app, self.gateway, self.telemetry = flask_app, gateway, telemetry
        self.api_keys = gateway.api_keys
        self.max_body_bytes = max_body_bytes
        self.routes: dict[str, ScoringRoute] = {route.path: route for route in SCORING_ROUTES}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        route = self.routes.get(environ.get("PATH_INFO", ""))
        length = self._declared_length(environ) if route is not None else None
        if route is None or length is None:
            return self.flask_app(environ, start_response)
        started = time.perf_counter()
        try:
            raw = environ["wsgi.input"].read(length)
        except OSError:  # the client went away: the Flask app answers that as it would (nothing was read)
            return self.flask_app(environ, start_response)
        if len(raw) != length:  # a short body: replayed as it came, so that Werkzeug sees the truncation too
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.flask_app(environ, start_response)
        request_id = new_request_id(environ)
        headers: dict[str, str] = {}
        try:
            # The API key first, as the prediction blueprint's hook does: a caller without one learns nothing of
            # the body's faults.
            self.api_keys.require(environ)
            try:
                parsed = route.body.model_validate(orjson.loads(raw))
            except REPLAYED:
                environ["wsgi.input"] = io.BytesIO(raw)
                return self.flask_app(environ, start_response)
            answer, fields = route.answer(self.gateway, parsed, request_id)
            status, body = 200, response_body(answer)
        except ApiError as error:  # found before anything was scored, cached or logged; the handler's answer
            status, fields, headers = error.status, {}, error.headers
            body = response_body(error_body(error.status, error.code, error.message, error.details, request_id))
        except Exception:  # a fault, not the client's: what the Flask app's handler answers
            logger.exception("unhandled error")
            status, fields = INTERNAL_ERROR[0], {}
            body = response_body(error_body(*INTERNAL_ERROR, request_id=request_id))
        start_response(
            status_line(status),
            [("Content-Type", JSON), ("Content-Length", str(len(body))), *headers.items(),
             ("X-Request-ID", request_id)],
        )  # fmt: skip
        self.telemetry.record("POST", route.view, status, time.perf_counter() - started, request_id, fields)
        return [body]

    def _declared_length(self, environ: dict[str, Any]) -> int | None:
        """The body's length when this path may answer: a POST of JSON with a Content-Length within the limit."""
        media_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if environ.get("REQUEST_METHOD") != "POST" or media_type != JSON:  # Werkzeug's is_json also takes +json
            return None
        declared = environ.get("CONTENT_LENGTH", "")
        if not declared.isdigit() or environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        length = int(declared)
        return length if 0 < length <= self.max_body_bytes else None
