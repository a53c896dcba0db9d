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


REAL_KEY = "k3y-of-a-real-client-0123"


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        ("", "SERVING_API_KEYS must name at least one key"),
        (" , ", "SERVING_API_KEYS must name at least one key"),
        ("changeme", "SERVING_API_KEYS: every key must be a real secret"),
        (f"{REAL_KEY},api-key", "SERVING_API_KEYS: every key must be a real secret"),  # one placeholder is enough
        ("short-key", "at least 16 characters"),
    ],
)
def test_production_refuses_missing_placeholder_or_short_api_keys(keys: str, said: str) -> None:
    with pytest.raises(ValidationError, match=said):
        ServingSettings(environment="production", admin_token="a-real-admin-token-1234", api_keys=keys)
    assert ServingSettings(environment="development", api_keys=keys).environment == "development"


def test_api_keys_are_read_comma_separated_and_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVING_API_KEYS", f"{REAL_KEY}, second-{REAL_KEY} ,")
    settings = ServingSettings(environment="production", admin_token="a-real-admin-token-1234")
    assert settings.api_key_list() == [REAL_KEY, f"second-{REAL_KEY}"]
    assert REAL_KEY not in repr(settings) and REAL_KEY not in str(settings.model_dump())


@pytest.mark.parametrize("bind", ["9100", "0.0.0.0:", "host:port", "0.0.0.0 :9100"])
def test_a_metrics_address_that_is_not_host_and_port_is_refused(bind: str) -> None:
    with pytest.raises(ValidationError, match="metrics_bind"):
        ServingSettings(metrics_bind=bind)
    assert ServingSettings(metrics_bind="0.0.0.0:9100").metrics_bind == "0.0.0.0:9100"
