"""Redis prediction cache and prediction log, both fail-open behind one circuit breaker.

Cache key per row and model version: `<prefix>:<model>:<version>:<sha256 of the canonical row>`, so a promotion can
never return a stale prediction. Values are plain numbers (never pickles). A batch costs one MGET and one pipelined
write. Any Redis error or timeout is counted and the request is served without the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

logger = logging.getLogger(__name__)


class CircuitBreaker:
    """Open after `threshold` consecutive failures; let one call through after `cooldown_s` to probe recovery."""

    def __init__(self, threshold: int = 3, cooldown_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.threshold, self.cooldown_s, self._clock = threshold, cooldown_s, clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self._clock() - self._opened_at >= self.cooldown_s:
                self._opened_at = self._clock()  # half-open: one probe per cool-down
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures, self._opened_at = 0, None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold:
                self._opened_at = self._clock()

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None


def canonical_row(values: Sequence[object]) -> str:
    return json.dumps(list(values), separators=(",", ":"), allow_nan=False)


@dataclass
class RedisGateway:
    """The gateway's one Redis connection (short timeouts) with the breaker that guards it."""

    client: redis.Redis
    breaker: CircuitBreaker
    on_error: Callable[[str], None] = lambda operation: None

    def call(self, operation: str, work: Callable[[redis.Redis], object], fallback: object) -> object:
        if not self.breaker.allow():
            self.on_error(operation)
            return fallback
        try:
            result = work(self.client)
        except (redis.RedisError, OSError) as error:
            self.breaker.record_failure()
            self.on_error(operation)
            logger.warning("redis %s failed (%s); serving without it", operation, type(error).__name__)
            return fallback
        self.breaker.record_success()
        return result


class PredictionCache:
    def __init__(self, redis_gateway: RedisGateway, prefix: str, ttl_s: int):
        self.redis, self.prefix, self.ttl_s = redis_gateway, prefix, ttl_s

    def key(self, model: str, version: str, row: Sequence[object]) -> str:
        digest = hashlib.sha256(canonical_row(row).encode()).hexdigest()
        return f"{self.prefix}:{model}:{version}:{digest}"

    def get_many(self, keys: list[str]) -> list[float | None]:
        raw = self.redis.call("cache_get", lambda client: client.mget(keys), [None] * len(keys))
        return [None if value is None else float(value) for value in raw]  # type: ignore[union-attr]

    def set_many(self, entries: dict[str, float]) -> None:
        if not entries:
            return

        def write(client: redis.Redis) -> object:
            pipeline = client.pipeline(transaction=False)
            for key, probability in entries.items():
                pipeline.set(key, repr(probability), ex=self.ttl_s)
            return pipeline.execute()

        self.redis.call("cache_set", write, None)


class PredictionLog:
    """Every scored row appended to a capped Redis Stream (approximate MAXLEN keeps trimming cheap)."""

    def __init__(self, redis_gateway: RedisGateway, stream: str, max_length: int):
        self.redis, self.stream, self.max_length = redis_gateway, stream, max_length

    def append(self, records: list[dict[str, str]]) -> None:
        if not records:
            return

        def write(client: redis.Redis) -> object:
            pipeline = client.pipeline(transaction=False)
            for record in records:
                pipeline.xadd(self.stream, record, maxlen=self.max_length, approximate=True)
            return pipeline.execute()

        self.redis.call("log_append", write, None)
