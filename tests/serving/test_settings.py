"""Gateway settings: environment variables, and no placeholder admin token outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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
