"""Settings of the registry (model name, gate thresholds, cache, audit), read from the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from registry.slices import MIN_GROUP_ROWS, parse_slices

RETIRED_VARIABLES = {
    "SERVING_MODEL_NAME": "CREDIT_REGISTERED_MODEL_NAME",
    "REGISTRY_MODEL_NAME": "CREDIT_REGISTERED_MODEL_NAME",
    "SERVING_TRACKING_URI": "MLFLOW_TRACKING_URI",
    "REGISTRY_TRACKING_URI": "MLFLOW_TRACKING_URI",
    "CREDIT_TRACKING_URI": "MLFLOW_TRACKING_URI",
}


class RegisteredModelSettings(BaseSettings):
    """Which tracking server and which registered model: the base of every package's settings.

    One variable each, whatever the package: `MLFLOW_TRACKING_URI` (MLflow's own, so that `mlflow run` and the MLflow
    CLI agree with the code) and `CREDIT_REGISTERED_MODEL_NAME`.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    tracking_uri: str | None = Field(default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI"))
    model_name: str = Field(default="credit-scoring", validation_alias=AliasChoices("CREDIT_REGISTERED_MODEL_NAME"))

    @model_validator(mode="after")
    def _refuse_retired_variables(self) -> Self:
        # Each package once read its own name for these; ignored silently, a gateway would serve another model.
        found = [f"{old} (now {new})" for old, new in RETIRED_VARIABLES.items() if old in os.environ]
        if found:
            raise ValueError(f"retired environment variable(s) set: {', '.join(found)}")
        return self


class RegistrySettings(RegisteredModelSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore", populate_by_name=True)

    @classmethod
    def of(cls, settings: RegisteredModelSettings, cache_dir: Path | str | None = None) -> RegistrySettings:
        """The registry's settings (gate thresholds, audit, cache: from the environment) for another package's
        tracking server and registered model, and its own model cache folder if it names one."""
        found = cls(tracking_uri=settings.tracking_uri, model_name=settings.model_name)
        return found.model_copy(update={"cache_dir": Path(cache_dir)}) if cache_dir else found

    # ONNX files are downloaded once per version into this folder.
    cache_dir: Path = Path.home() / ".cache" / "credit-scoring" / "models"
    audit_experiment: str = "registry-audit"
    # Gate thresholds (docs/registry.md explains each).
    auc_tolerance: float = Field(default=0.002, ge=0)
    auc_floor: float = Field(default=0.75, ge=0, le=1)
    max_fp32_parity: float = Field(default=1e-4, gt=0)
    max_int8_parity: float = Field(default=0.2, gt=0)
    min_int8_agreement: float = Field(default=0.98, ge=0, le=1)
    latency_budget_ms: float = Field(default=5.0, gt=0)
    # Optional checks (off when unset): the expected calibration error on the evaluation data, and the largest gap
    # between groups of a fairness slice (registry/fairness.py; groups of at least fairness_min_group_rows rows).
    max_ece: float | None = Field(default=None, gt=0)
    max_approval_rate_gap: float | None = Field(default=None, ge=0)
    max_auc_gap: float | None = Field(default=None, ge=0)
    max_default_rate_approved_gap: float | None = Field(default=None, ge=0)
    max_calibration_bias_gap: float | None = Field(default=None, ge=0)
    fairness_min_group_rows: int = Field(default=MIN_GROUP_ROWS, ge=1)
    # Slices the gate checks; unset: the ones the candidate's train run used (its `fairness_slices` tag).
    fairness_slices: str | None = None

    @field_validator("fairness_slices")
    @classmethod
    def _readable_slices(cls, value: str | None) -> str | None:
        if value is not None:
            parse_slices(value)  # its ValueError names the slice; pydantic names the variable
        return value

    # Also move the deprecated stages (Production/Staging, archiving the previous) for tooling that still reads them.
    mirror_stages: bool = False
