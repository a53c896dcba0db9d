"""Settings of the gateway, read from the environment (`SERVING_*`, plus MLflow's and Redis' usual variables)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from registry.settings import RegisteredModelSettings
from scoring.reasons import DEFAULT_REASON_COUNT
from serving.auth import split_keys
from serving.server import ADDRESS_OR_EMPTY

PLACEHOLDER_TOKENS = {"", "changeme", "change-me", "secret", "token", "admin"}
PLACEHOLDER_KEYS = PLACEHOLDER_TOKENS | {"key", "apikey", "api-key", "api_key", "test", "example"}
MIN_API_KEY_LENGTH = 16  # outside development: a shorter key is a guessable one


class ServingSettings(RegisteredModelSettings):
    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore", populate_by_name=True)

    environment: str = "development"  # "production" refuses placeholder secrets
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL"))
    redis_timeout_s: float = Field(default=0.05, gt=0)  # a cache slower than this is worse than no cache
    breaker_threshold: int = Field(default=3, ge=1)
    breaker_cooldown_s: float = Field(default=5.0, gt=0)
    cache_prefix: str = "credit-scoring:prediction"
    cache_ttl_s: int = Field(default=3600, ge=1)
    prediction_stream: str = "credit-scoring:predictions"
    prediction_stream_max_rows: int = Field(default=200_000, ge=1)  # about this many scored rows are kept
    prediction_log_flush_s: float = Field(default=0.25, gt=0)  # the log's writer sends what is queued this often
    prediction_log_timeout_s: float = Field(default=1.0, gt=0)  # the writer is off the request path: it may wait
    staging_share: float = Field(default=0.10, ge=0, le=1)
    max_batch_rows: int = Field(default=1000, ge=1)
    max_explain_rows: int = Field(default=100, ge=1)  # rows per request with explanations (each costs F+1 rows)
    reason_count: int = Field(default=DEFAULT_REASON_COUNT, ge=1)  # reason codes per row at most
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    reload_interval_s: float = Field(default=30.0, ge=0)  # 0 = no background polling (reload via /admin/reload)
    admin_token: SecretStr = SecretStr("")
    # The scoring routes' API keys, comma-separated (several at once: rotation without downtime); empty = no key
    # needed (development only). Checked by serving.auth.
    api_keys: SecretStr = SecretStr("")
    # host:port where the server's own process serves the summed /metrics (serving.server); empty = /metrics on the
    # public port, as before. The same variable as serving.server.ServerSettings.metrics_bind: set here, the app has
    # no /metrics route (404).
    metrics_bind: str = Field(default="", pattern=ADDRESS_OR_EMPTY)
    model_cache_dir: str | None = None  # default: the registry's cache folder

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> ServingSettings:
        token = self.admin_token.get_secret_value()
        if self.environment != "development" and token.strip().lower() in PLACEHOLDER_TOKENS:
            raise ValueError("SERVING_ADMIN_TOKEN must be set to a real secret outside development")
        if self.environment != "development":
            keys = self.api_key_list()
            if not keys:
                raise ValueError("SERVING_API_KEYS must name at least one key outside development")
            if any(key.lower() in PLACEHOLDER_KEYS or len(key) < MIN_API_KEY_LENGTH for key in keys):
                raise ValueError(
                    f"SERVING_API_KEYS: every key must be a real secret of at least {MIN_API_KEY_LENGTH} characters"
                    " outside development"
                )
        return self

    def api_key_list(self) -> list[str]:
        return split_keys(self.api_keys.get_secret_value())
