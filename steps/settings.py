"""Settings of the pipeline steps, read from the environment (MLflow's own variables plus `CREDIT_*`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_", extra="ignore", populate_by_name=True)

    # MLflow's own variable wins so that `mlflow run` and the MLflow CLI agree with the steps.
    tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "CREDIT_TRACKING_URI")
    )
    experiment_name: str = "credit-scoring"
    registered_model_name: str = "credit-scoring"
