"""Request bodies larger than the configured limit are refused with a 413 before anything else reads them."""

from __future__ import annotations

from flask import Flask, request

from serving.errors import ApiError


def install_body_limit(app: Flask, limit: int) -> None:
    # Werkzeug enforces this on the bytes actually read, so a chunked body cannot slip past it.
    app.config["MAX_CONTENT_LENGTH"] = limit

    @app.before_request
    def _refuse_oversized_bodies() -> None:
        # A declared Content-Length is checked as it stands, before any other check can answer first. A chunked body
        # has none: Werkzeug cuts it at the limit without an error, so it is read (and cached) here, and reaching the
        # limit means too big (otherwise the cut body would surface as a JSON error).
        current = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup per request
        length = current.content_length
        if length is None and current.method == "POST":
            oversized = len(current.get_data(cache=True)) >= limit
        else:
            oversized = length is not None and length > limit
        if oversized:
            raise ApiError(413, "body_too_large", f"request bodies are limited to {limit} bytes")
