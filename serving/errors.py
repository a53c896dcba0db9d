"""The gateway's one JSON error shape, for every 4xx and 5xx (no traceback or file path ever reaches a client).

{"error": {"status": 422, "code": "invalid_rows", "message": "...", "details": [{"row": 0, "field": "Age",
 "message": "..."}], "request_id": "..."}}
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,  # sent with the error (a 401's WWW-Authenticate)
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []
        self.headers = headers or {}


def error_body(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None, request_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if details:
        body["details"] = details
    if request_id:
        body["request_id"] = request_id
    return {"error": body}


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    response = jsonify(error_body(status, code, message, details, getattr(g, "request_id", None)))
    response.status_code = status
    return response


def validation_error_response(error: ValidationError) -> Response:
    """flask-openapi3's callback for a body that does not match the request model."""
    details = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        location = list(item["loc"])
        row = location[1] if len(location) > 1 and location[0] == "batch" and isinstance(location[1], int) else None
        rest = location[2:] if row is not None else location
        details.append({"row": row, "field": ".".join(str(part) for part in rest) or "body", "message": item["msg"]})
    return error_response(422, "invalid_request", "the request body does not match the schema", details)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        response = error_response(error.status, error.code, error.message, error.details)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        return error_response(error.code or 500, code, error.description or error.name)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(*INTERNAL_ERROR)


INTERNAL_ERROR = (500, "internal_error", "internal server error")
