"""Redis prediction cache: one key per row and model version, values stored as plain numbers.

Key: `<prefix>:<model>:<version>:<sha256 of the canonical row>`, so a promotion can never return a stale prediction.
Values are plain numbers (never pickles). A batch costs one MGET and one pipelined write. Any Redis error or timeout is
counted and the request is served without the cache (see `serving.redis_gateway`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import cast

import orjson
import redis

from serving.redis_gateway import CACHE_GET, CACHE_SET, RedisGateway


def canonical_row(values: Sequence[object]) -> bytes:
    """Compact JSON of the row (UTF-8, no spaces): what a key's digest is taken of."""
    return orjson.dumps(list(values))


class PredictionCache:
    def __init__(self, redis_gateway: RedisGateway, prefix: str, ttl_s: int):
        self.redis, self.prefix, self.ttl_s = redis_gateway, prefix, ttl_s

    def key(self, model: str, version: str, row: Sequence[object]) -> str:
        digest = hashlib.sha256(canonical_row(row)).hexdigest()
        return f"{self.prefix}:{model}:{version}:{digest}"

    def get_many(self, keys: list[str]) -> list[float | None]:
        fallback: list[bytes | None] = [None] * len(keys)
        raw = self.redis.call(CACHE_GET, lambda client: cast(list[bytes | None], client.mget(keys)), fallback)
        return [None if value is None else float(value) for value in raw]

    def set_many(self, entries: dict[str, float]) -> None:
        if not entries:
            return

        def write(client: redis.Redis) -> object:
            pipeline = client.pipeline(transaction=False)
            for key, probability in entries.items():
                pipeline.set(key, repr(probability), ex=self.ttl_s)
            return pipeline.execute()

        self.redis.call(CACHE_SET, write, None)
