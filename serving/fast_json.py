"""Flask's JSON through orjson: request bodies and responses are the gateway's largest per-row costs after the model.

Behaviour matches Flask's default provider where clients can tell: `NaN`/`Infinity` literals (which Python's json
module writes) are still accepted in requests, so `NaN` keeps meaning "missing" and `Infinity` still gets its 422.
"""

from __future__ import annotations

import json
from typing import Any

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
            # Strict JSON has no NaN/Infinity; the standard parser takes them (and raises for anything truly invalid).
            return json.loads(s, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        body = self._encode(self._prepare_response_obj(args, kwargs))
        return self._app.response_class(body + b"\n", mimetype=self.mimetype)

    def _encode(self, obj: Any) -> bytes:
        options = _OPTIONS | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)
        return orjson.dumps(obj, default=self.default, option=options)
