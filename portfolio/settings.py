"""Settings of the portfolio job, read from the environment (`PORTFOLIO_*`, plus MLflow's and the model's)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from registry.settings import RegisteredModelSettings

DEFAULT_VERSION = "production"  # what a job scores with unless told otherwise: what the gateway serves


class PortfolioSettings(RegisteredModelSettings):
    model_config = SettingsConfigDict(env_prefix="PORTFOLIO_", extra="ignore", populate_by_name=True)

    experiment_name: str = "portfolio-scoring"
    # Rows per ONNX Runtime call: 1,024-8,192 run at the same speed for this model (docs/benchmarks.md), and a batch
    # bounds the job's memory whatever the file size.
    batch_rows: int = Field(default=8192, ge=1)
    # Rows per output part: the unit a killed run resumes from.
    rows_per_part: int = Field(default=1_000_000, ge=1)
    threads: int = Field(default=1, ge=1)  # ONNX Runtime intra-op threads of the one session
    max_reject_rate: float = Field(default=0.01, ge=0, le=1)
    # ONNX files of the versions; default: the registry's cache folder.
    model_cache_dir: Path | None = None
    # Without a terminal (Airflow, CI, a container) progress is a log line this often instead of a bar.
    progress_interval_s: float = Field(default=10.0, gt=0)
    # Spark engine: the master when no session exists yet (on a cluster, spark-submit sets it).
    spark_master: str = "local[*]"
