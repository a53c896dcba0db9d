"""The gateway's routes, one APIBlueprint per concern: prediction, operations, docs."""

from __future__ import annotations

from flask_openapi3.utils import get_operation_id_for_path


def operation_id(*, name: str, path: str, method: str) -> str:
    """OpenAPI operation ids without the blueprint's name, as they were before the routes moved into blueprints, so
    that clients generated from /openapi.json keep their method names."""
    return get_operation_id_for_path(name=name, path=path, method=method)
