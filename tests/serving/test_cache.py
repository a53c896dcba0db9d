"""The prediction cache against a real Redis, including Redis going away mid-way."""

from __future__ import annotations

import redis

from serving.cache import PredictionCache
from serving.redis_gateway import CircuitBreaker, RedisGateway


def gateway(url: str, errors: list[str], breaker: CircuitBreaker | None = None) -> RedisGateway:
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    return RedisGateway(client, breaker or CircuitBreaker(threshold=2, cooldown_s=60), errors.append)


def test_values_round_trip_as_plain_numbers_with_a_ttl(redis_server) -> None:
    cache = PredictionCache(gateway(redis_server.url, []), "test", ttl_s=120)
    keys = [cache.key("credit", "3", [30.0, "rent", None]), cache.key("credit", "3", [31.0, "rent", None])]
    assert cache.get_many(keys) == [None, None]
    cache.set_many({keys[0]: 0.25})
    assert cache.get_many(keys) == [0.25, None]
    raw = redis.Redis.from_url(redis_server.url)
    assert raw.get(keys[0]) == b"0.25"
    assert 0 < raw.ttl(keys[0]) <= 120


def test_the_key_changes_with_the_version_and_the_row() -> None:
    cache = PredictionCache(RedisGateway(redis.Redis(), CircuitBreaker()), "p", 1)
    row = [30.0, "rent", None]
    assert cache.key("m", "1", row).startswith("p:m:1:")
    assert cache.key("m", "1", row) != cache.key("m", "2", row)
    assert cache.key("m", "1", row) != cache.key("m", "1", [30.0, "owner", None])
    assert cache.key("m", "1", row) == cache.key("m", "1", list(row))


def test_redis_stopping_fails_open_counts_errors_and_opens_the_breaker(redis_server) -> None:
    errors: list[str] = []
    breaker = CircuitBreaker(threshold=2, cooldown_s=60)
    cache = PredictionCache(gateway(redis_server.url, errors, breaker), "test", ttl_s=60)
    key = cache.key("credit", "1", [1.0])
    cache.set_many({key: 0.5})
    assert cache.get_many([key]) == [0.5]
    redis_server.stop()
    assert cache.get_many([key]) == [None]
    cache.set_many({key: 0.7})
    assert breaker.is_open
    assert cache.get_many([key]) == [None]  # skipped without touching the network
    assert errors == ["cache_get", "cache_set", "cache_get"]


def test_the_breaker_probes_again_after_its_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, cooldown_s=5, clock=lambda: now[0])
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 5.0
    assert breaker.allow() and not breaker.allow()  # one probe per cool-down
    breaker.record_success()
    assert breaker.allow() and not breaker.is_open
