"""Gateway settings: environment variables, and no placeholder admin token outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from registry.settings import RegistrySettings
from serving.service import registry_settings as gateway_registry_settings
from serving.settings import ServingSettings


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("SERVING_STAGING_SHARE", "0.25")
    monkeypatch.setenv("CREDIT_REGISTERED_MODEL_NAME", "scorecard")
    settings = ServingSettings()
    assert settings.redis_url == "redis://cache:6379/2"
    assert (settings.staging_share, settings.model_name) == (0.25, "scorecard")


@pytest.mark.parametrize("token", ["", "changeme", "secret"])
def test_production_refuses_placeholder_admin_tokens(token: str) -> None:
    with pytest.raises(ValidationError, match="SERVING_ADMIN_TOKEN"):
        ServingSettings(environment="production", admin_token=token)
    assert ServingSettings(environment="development", admin_token=token).environment == "development"


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValidationError, match="staging_share"):
        ServingSettings(staging_share=1.5)


@pytest.mark.parametrize(
    ("retired", "current"),
    [("SERVING_MODEL_NAME", "CREDIT_REGISTERED_MODEL_NAME"), ("SERVING_TRACKING_URI", "MLFLOW_TRACKING_URI")],
)
def test_a_retired_variable_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch, retired: str, current: str) -> None:
    # Ignored, it would have the gateway serve the default model instead of the one the deployment names.
    monkeypatch.setenv(retired, "scorecard")
    with pytest.raises(ValidationError, match=f"retired environment variable.*{retired} \\(now {current}\\)"):
        ServingSettings()
    with pytest.raises(ValidationError, match=retired):
        RegistrySettings()


def test_the_registry_settings_of_the_gateway_name_the_same_server_and_model(tmp_path) -> None:
    settings = ServingSettings(tracking_uri="http://mlflow:5000", model_name="scorecard", model_cache_dir=str(tmp_path))
    registry_settings = gateway_registry_settings(settings)
    assert (registry_settings.tracking_uri, registry_settings.model_name) == ("http://mlflow:5000", "scorecard")
    assert registry_settings.cache_dir == tmp_path
