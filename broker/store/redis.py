"""The production store: sealed tokens in Redis with TTLs, shared by every broker replica."""

from __future__ import annotations

import logging
from datetime import timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from broker.errors import StoreUnavailableError
from broker.model import AccessToken
from broker.store.codec import SealedCodec

_log = logging.getLogger(__name__)
KEY_PREFIX = "broker:v1:tok:"


class RedisTokenStore:
    """Reads and writes sealed tokens; every Redis fault becomes a StoreUnavailableError."""

    def __init__(self, client: aioredis.Redis, codec: SealedCodec) -> None:
        self._redis = client
        self._codec = codec

    @classmethod
    def from_url(cls, url: str, key: bytes, *, timeout: timedelta = timedelta(seconds=1)) -> RedisTokenStore:
        seconds = timeout.total_seconds()
        client = aioredis.Redis.from_url(url, socket_timeout=seconds, socket_connect_timeout=seconds)
        return cls(client, SealedCodec(key))

    async def get(self, key: str) -> AccessToken | None:
        try:
            blob = await self._redis.get(KEY_PREFIX + key)
        except RedisError as exc:
            raise StoreUnavailableError(f"redis read failed: {type(exc).__name__}") from exc
        if blob is None:
            return None
        token = self._codec.open(key, blob if isinstance(blob, bytes) else blob.encode())
        if token is None:
            _log.warning("dropping a cached value that does not open under its key", extra={"cache_key": key})
        return token

    async def put(self, key: str, token: AccessToken, ttl: timedelta) -> None:
        milliseconds = max(1, int(ttl.total_seconds() * 1000))
        try:
            await self._redis.set(KEY_PREFIX + key, self._codec.seal(key, token), px=milliseconds)
        except RedisError as exc:
            raise StoreUnavailableError(f"redis write failed: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self._redis.aclose()
