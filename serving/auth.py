"""Who may score: the API keys of the scoring routes (SERVING_API_KEYS), checked the same way by the Flask app and by
serving/fast_path.py.

A key comes as `Authorization: Bearer <key>` or `X-API-Key: <key>` (X-API-Key wins when both are sent). Several keys
may be valid at once, so that a key is rotated without downtime: add the new one, move the clients, drop the old one.
A missing key and a wrong key are both 401 (a wrong key is failed authentication, not a lack of rights: every key
grants the same), told apart by the error code, with `WWW-Authenticate: Bearer` as RFC 6750 has it.

Keys are compared as SHA-256 digests with hmac.compare_digest against every configured key: the time taken says
neither how long a key is nor how much of it matched nor which key it was. The digests are made once, when the app is
built; the key itself is kept nowhere else and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from serving.errors import ApiError

REALM = 'Bearer realm="credit-scoring-gateway"'


def missing_key() -> ApiError:
    return ApiError(
        401,
        "missing_api_key",
        "this route needs an API key: send Authorization: Bearer <key> or X-API-Key: <key>",
        headers={"WWW-Authenticate": REALM},
    )


def invalid_key() -> ApiError:
    challenge = f'{REALM}, error="invalid_token"'
    return ApiError(401, "invalid_api_key", "the API key is not valid", headers={"WWW-Authenticate": challenge})


def split_keys(value: str) -> list[str]:
    """SERVING_API_KEYS' keys: comma-separated, blanks around them and empty items ignored."""
    return [key.strip() for key in value.split(",") if key.strip()]


def header_bytes(value: str) -> bytes:
    """A header's bytes as sent: WSGI servers hand header values over decoded as latin-1 (PEP 3333)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # a server that decoded UTF-8 instead
        return value.encode("utf-8", "surrogateescape")


class ApiKeyCheck:
    """The scoring routes' key check; off (every request passes) when no key is configured."""

    def __init__(self, keys: Iterable[str]):
        self._digests = tuple(hashlib.sha256(key.encode()).digest() for key in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def refusal(self, environ: Mapping[str, Any]) -> ApiError | None:
        """Why a request (its WSGI environ) may not score, or None when it may."""
        if not self._digests:
            return None
        presented = environ.get("HTTP_X_API_KEY") or None  # an empty header is no key: Bearer may still hold one
        if presented is None:
            scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
            presented = credentials.strip() if scheme.lower() == "bearer" else ""
        if not presented:
            return missing_key()
        digest = hashlib.sha256(header_bytes(presented)).digest()
        matched = False
        for expected in self._digests:  # every key compared, whichever matches
            matched |= hmac.compare_digest(digest, expected)
        return None if matched else invalid_key()

    def require(self, environ: Mapping[str, Any]) -> None:
        """Raise the refusal (ApiError, 401) of a request that may not score."""
        refusal = self.refusal(environ)
        if refusal is not None:
            raise refusal
