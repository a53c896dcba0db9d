"""What an Asset-triggered DAG run takes from the events that triggered it (their `extra`): the registered model
when the Param is empty, and the staged version a promotion run was started for; and whether a month's portfolio
scores were announced already. Standard library only: the DAG files call it with `context["triggering_asset_events"]`
or the extras of an Asset's earlier events."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from orchestration.settings import OrchestrationError

logger = logging.getLogger(__name__)


def event_extras(triggering_asset_events: Mapping[Any, Iterable[Any]] | None, asset_name: str) -> list[dict[str, Any]]:
    """The extras of the events of the Asset `asset_name` that triggered this DAG run, oldest first (none for a
    scheduled or manual run)."""
    extras: list[dict[str, Any]] = []
    for asset, events in (triggering_asset_events or {}).items():
        if getattr(asset, "name", None) != asset_name:
            continue
        extras += [dict(getattr(event, "extra", None) or {}) for event in events]
    return extras


def model_of(param: str, extras: list[dict[str, Any]]) -> str:
    """The registered model a run works on: the Param when given, else the one the triggering events name (""
    without events: the settings' CREDIT_REGISTERED_MODEL_NAME). Events naming two models are refused rather than
    guessed between."""
    if param:
        return param
    models = sorted({str(extra["model"]) for extra in extras if extra.get("model")})
    if len(models) > 1:
        raise OrchestrationError(
            f"this run was triggered by events of several models ({', '.join(models)}): trigger one run per model "
            "with the Param registered_model"
        )
    return models[0] if models else ""


def announced_version(extras: list[dict[str, Any]], model: str) -> str | None:
    """The newest staging version the triggering events announced for `model`, None without such an event."""
    versions = [str(extra["version"]) for extra in extras if extra.get("model") == model and extra.get("version")]
    return versions[-1] if versions else None


def announced_before(record: Mapping[str, Any], earlier_extras: Iterable[Mapping[str, Any] | None]) -> bool:
    """Whether a month's portfolio scores are old news: this run scored nothing new (every part was finished before)
    and an earlier event announced the same output of the same version. Then no second event: its consumers (limit
    reviews, provisioning) ran on the first. A run that scored rows, even resuming, announces them."""
    if int(record["rows_scored_this_run"]) > 0:
        return False
    same = ("model", "version", "output")
    return any(extra and all(extra.get(key) == record[key] for key in same) for extra in earlier_extras)
