"""The gateway's Redis connection behind a circuit breaker: every call fails open (counted, then served without it)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The operations the gateway's Redis calls are counted under (`gateway_redis_errors_total{operation}`).
CACHE_GET, CACHE_SET, LOG_APPEND = "cache_get", "cache_set", "log_append"
OPERATIONS = (CACHE_GET, CACHE_SET, LOG_APPEND)


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


@dataclass
class RedisGateway:
    """The gateway's one Redis connection (short timeouts) with the breaker that guards it."""

    client: redis.Redis
    breaker: CircuitBreaker
    on_error: Callable[[str], None] = lambda operation: None

    def call(self, operation: str, work: Callable[[redis.Redis], T], fallback: T) -> T:
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
