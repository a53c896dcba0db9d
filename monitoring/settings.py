"""Settings of the drift job, read from the environment (`MONITORING_*`, plus MLflow's, the model's and `REDIS_URL`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from registry.settings import RegisteredModelSettings


class MonitoringSettings(RegisteredModelSettings):
    model_config = SettingsConfigDict(env_prefix="MONITORING_", extra="ignore", populate_by_name=True)

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL"))
    # The gateway's SERVING_PREDICTION_STREAM default: the job reads what the gateway writes.
    prediction_stream: str = "credit-scoring:predictions"
    stream_page_entries: int = Field(default=20, ge=1)  # XREVRANGE COUNT: an entry holds up to ~1,000 rows
    experiment_name: str = "monitoring"
    # None: the summary is not pushed (logged in MLflow only), e.g. where no Pushgateway runs.
    pushgateway_url: str | None = None
    pushgateway_job: str = "credit_drift"
    # Credit risk's usual reading of PSI: below `psi_watch` stable, up to `psi_act` watch, above it act.
    psi_watch: float = Field(default=0.10, gt=0)
    psi_act: float = Field(default=0.25, gt=0)
    # Dataset drift (Evidently): at least this share of the features drifted.
    drift_share: float = Field(default=0.5, gt=0, le=1)
    # Windows beyond this many rows (per version) are analysed on a seeded uniform sample of this size.
    sample_size: int = Field(default=50_000, ge=100)
    sample_seed: int = 42
    # Fewer rows than this (per version) make PSI mostly noise: such a window is skipped, not reported.
    min_rows: int = Field(default=500, ge=1)
    # ONNX files of the versions (to score the reference split); default: the registry's cache folder.
    model_cache_dir: Path | None = None

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> MonitoringSettings:
        if self.psi_watch >= self.psi_act:
            raise ValueError(
                f"MONITORING_PSI_WATCH ({self.psi_watch}) must be below MONITORING_PSI_ACT ({self.psi_act})"
            )
        return self
