"""Flask's JSON through orjson: request bodies and responses are the gateway's largest per-row costs after the model.

Differences from Flask's default provider that a client could notice, and how they are kept harmless:
- `NaN`/`Infinity` literals (which Python's json module writes) are strict-JSON errors for orjson; such bodies are
  parsed again by the standard library, so `NaN` still means "missing" and `Infinity` still gets its 422.
- A string holding an unpaired UTF-16 surrogate (`"\\ud800"`) is not text: the body is refused as invalid JSON (400)
  instead of reaching validation, the router's hashing or the prediction log.
- Integers beyond 64 bits arrive as floats (an applicant id that large is refused as not an integer).
"""

from __future__ import annotations

import json
from typing import Any, cast

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class OrjsonProvider(DefaultJSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self._encode(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            pass
        # Strict JSON has no NaN/Infinity; the standard parser takes them (and raises for anything truly invalid).
        try:
            value = json.loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON document is nested too deeply") from None
        try:
            orjson.dumps(value)  # what orjson refused and json took may hold text that is not valid Unicode
        except orjson.JSONEncodeError as error:
            if "surrogate" in str(error):
                raise ValueError("the JSON document holds a string that is not valid Unicode") from None
        return value

    def response(self, *args: Any, **kwargs: Any) -> Response:
        body = self._encode(self._prepare_response_obj(args, kwargs))
        response_class = cast("type[Response]", self._app.response_class)  # a Flask app's: flask.Response
        return response_class(body + b"\n", mimetype=self.mimetype)

    def _encode(self, obj: Any) -> bytes:
        options = _OPTIONS | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)
        return orjson.dumps(obj, default=self.default, option=options)


def response_body(obj: Any) -> bytes:
    """A JSON answer as the app's provider writes it (keys in insertion order, a final newline), without Flask."""
    return orjson.dumps(obj, default=DefaultJSONProvider.default, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)
