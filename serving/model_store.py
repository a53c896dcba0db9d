"""The models being served: one ONNX session per alias, loaded beside the old one, warmed up, swapped atomically.

`refresh()` asks the registry which versions `production` and `staging` point at; a changed version is downloaded
(once per version, via the registry's cache), opened, warmed up with the input example logged with it, and only then
published by replacing the whole `ServedModels` snapshot in one assignment. Any failure leaves the previous model
serving. A staging version whose inputs differ from production's is loaded but not routed to (and reported).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
import onnxruntime as ort
from mlflow.tracking import MlflowClient

from registry.resolve import load_version, require_model, version_for_alias
from registry.session import open_session
from registry.settings import RegistrySettings
from registry.versions import ALIASES, PRODUCTION_ALIAS, STAGING_ALIAS
from scoring.onnx_runtime import predict_default_probability
from scoring.points import ScoreScaling
from scoring.reasons import DEFAULT_REASON_COUNT, Explainer
from scoring.schema import FeatureSchema
from serving.validation import RowParser

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    alias: str
    name: str
    version: str
    precision: str
    session: ort.InferenceSession
    schema: FeatureSchema
    decision_threshold: float | None
    loaded_at: str
    warmup_ms: float
    scaling: ScoreScaling = ScoreScaling()
    explainer: Explainer | None = None  # None: a version registered without an explanation reference
    reason_count: int = DEFAULT_REASON_COUNT  # reasons per row at most (SERVING_REASON_COUNT)

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return predict_default_probability(self.session, inputs)

    @cached_property
    def parser(self) -> RowParser:
        return RowParser(self.schema)

    def describe(self) -> dict[str, object]:
        return {
            "alias": self.alias,
            "name": self.name,
            "version": self.version,
            "precision": self.precision,
            "loaded_at": self.loaded_at,
            "warmup_ms": round(self.warmup_ms, 3),
            "decision_threshold": self.decision_threshold,
            "score_scaling": self.scaling.to_dict(),
            "explanations": self.explainer is not None,
            "feature_schema": {
                "features": self.schema.features,
                "numeric": self.schema.numeric,
                "categorical": self.schema.categorical,
                "categories": self.schema.categories,
            },
        }


@dataclass(frozen=True)
class ServedModels:
    """What is served, as one immutable snapshot: the loaded model per alias and whether B can be routed to."""

    models: dict[str, LoadedModel] = field(default_factory=dict)
    # How staging's inputs differ from production's (`FeatureSchema.differences`); empty: rows can go to either.
    staging_mismatch: tuple[str, ...] = ()

    def get(self, alias: str) -> LoadedModel | None:
        return self.models.get(alias)

    @property
    def routable_staging(self) -> LoadedModel | None:
        """The staging model, if loaded and taking the same inputs as production (A/B can send it rows)."""
        return None if self.staging_mismatch else self.models.get(STAGING_ALIAS)

    @classmethod
    def of(cls, models: dict[str, LoadedModel]) -> ServedModels:
        production, staging = models.get(PRODUCTION_ALIAS), models.get(STAGING_ALIAS)
        mismatch = () if production is None or staging is None else tuple(staging.schema.differences(production.schema))
        return cls(models, mismatch)


@dataclass(frozen=True)
class AliasVersion:
    alias: str
    version: str


@dataclass
class RefreshReport:
    loaded: list[AliasVersion] = field(default_factory=list)
    unchanged: list[AliasVersion] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # aliases no longer set
    failed: dict[str, str] = field(default_factory=dict)  # alias -> reason


class ModelStore:
    def __init__(self, registry_settings: RegistrySettings, reason_count: int = DEFAULT_REASON_COUNT):
        self.registry_settings, self.reason_count = registry_settings, reason_count
        self._served = ServedModels()
        self._refresh_lock = threading.Lock()
        # Called after every refresh (poller, /admin/reload or start-up) with its report and the models now served.
        self.listeners: list[Callable[[RefreshReport, ServedModels], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def served(self) -> ServedModels:
        """The current snapshot; keep it for the whole request so that every lookup sees the same models."""
        return self._served

    def refresh(self) -> RefreshReport:
        """Bring the served models in line with the registry's aliases; never raises."""
        report = RefreshReport()
        with self._refresh_lock:
            settings = self.registry_settings
            try:
                client = MlflowClient(settings.tracking_uri)
                # A missing registered model is treated like an unreachable registry: keep serving what is loaded.
                require_model(client, settings.model_name)
                wanted = {alias: version_for_alias(client, settings.model_name, alias) for alias in ALIASES}
            except Exception as error:  # an unreachable registry must never stop serving
                self.last_error = f"registry not usable: {type(error).__name__}: {str(error)[:200]}"
                logger.warning("model refresh skipped: %s", self.last_error)
                report.failed = {alias: self.last_error for alias in ALIASES}
                self._notify(report)
                return report
            updated = dict(self._served.models)
            for alias, version in wanted.items():
                current = updated.get(alias)
                if version is None:
                    if current is not None:
                        del updated[alias]
                        report.removed.append(alias)
                    continue
                if current is not None and current.version == version.version:
                    report.unchanged.append(AliasVersion(alias, version.version))
                    continue
                try:
                    updated[alias] = self._load(client, alias, version.version)
                    report.loaded.append(AliasVersion(alias, version.version))
                except Exception as error:  # a bad version must leave the old one serving
                    reason = f"{type(error).__name__}: {str(error)[:300]}"
                    report.failed[alias] = reason
                    self.last_error = f"{alias} version {version.version}: {reason}"
                    logger.error("could not load %s version %s: %s", alias, version.version, reason)
            served = ServedModels.of(updated)
            if served.staging_mismatch and served.staging_mismatch != self._served.staging_mismatch:
                logger.warning(
                    "staging version %s takes other inputs than production version %s (%s): "
                    "/predict_ab sends every row to A until they match",
                    updated[STAGING_ALIAS].version,
                    updated[PRODUCTION_ALIAS].version,
                    ", ".join(served.staging_mismatch),
                )
            self._served = served  # one assignment: readers see the old or the new snapshot, never a mix
            self._notify(report)
        if report.loaded or report.removed:
            loaded = ", ".join(f"{entry.alias} version {entry.version}" for entry in report.loaded) or "nothing"
            logger.info("models refreshed: loaded %s, removed %s", loaded, report.removed or "nothing")
        return report

    def _notify(self, report: RefreshReport) -> None:
        for listener in self.listeners:
            try:
                listener(report, self._served)
            except Exception:  # a metrics hiccup must not break reloading
                logger.exception("model store listener failed")

    def _load(self, client: MlflowClient, alias: str, version: str) -> LoadedModel:
        resolved = load_version(client, self.registry_settings.model_name, version, self.registry_settings)
        session, warmup_ms = open_session(resolved)
        return LoadedModel(
            alias=alias,
            name=resolved.name,
            version=resolved.version,
            precision=resolved.precision,
            session=session,
            schema=resolved.feature_schema,
            decision_threshold=resolved.decision_threshold,
            loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            warmup_ms=warmup_ms,
            scaling=resolved.score_scaling,
            explainer=None
            if resolved.explanation is None
            else Explainer(session, resolved.feature_schema, resolved.explanation),
            reason_count=self.reason_count,
        )

    def start_polling(self, interval_s: float) -> None:
        if interval_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
