"""The tracking server a command is about to ask: named (MLflow's default would be a new ./mlflow.db) and answering.

Used by the command lines that read the registry: `python -m registry` and `python -m monitoring.drift`.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from registry.errors import RegistryError


def displayed(tracking_uri: str) -> str:
    """The tracking URI as messages show it: without the user and password a URL may carry (messages reach logs and
    the gateway's /ready answer)."""
    parts = urllib.parse.urlsplit(tracking_uri)
    if parts.username is None and parts.password is None:
        return tracking_uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_tracking_server(tracking_uri: str | None) -> None:
    """Refuse to guess the server, and fail in seconds, not after MLflow's minutes of retries, when an HTTP tracking
    server does not answer."""
    if not tracking_uri:
        # MLflow's default would create ./mlflow.db in the working folder and find no model in it.
        raise RegistryError(
            "MLFLOW_TRACKING_URI is not set: which MLflow tracking server holds the model? "
            "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 (scripts/run-main.sh's server) or pass --tracking-uri"
        )
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=5):
            return
    except (urllib.error.URLError, OSError) as error:
        server = displayed(tracking_uri)
        raise RegistryError(f"cannot reach the MLflow tracking server at {server} ({error})") from error
