"""Settings of the pipeline steps, read from the environment (MLflow's own variables plus `CREDIT_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from registry.settings import RegisteredModelSettings


class PipelineSettings(RegisteredModelSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_", extra="ignore", populate_by_name=True)

    # Runs started outside `mlflow run` go to this experiment; unset, to the one named like the registered model, so
    # that the runs of another model (`--registered-model`) do not mix with the credit-scoring runs. Under `mlflow run`
    # they go where it puts them; `steps.tracking.pipeline_runs` finds the model's runs in both.
    experiment_name: str | None = None
    # Extra tags on every step's run: the Airflow DAG run and task that made it, so a retried task finds the run an
    # earlier attempt finished (orchestration.retrain) instead of training again.
    run_tags: dict[str, str] = Field(default_factory=dict)

    @property
    def experiment(self) -> str:
        return self.experiment_name or self.model_name
