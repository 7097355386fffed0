"""The Redis connection both stores use, and the one place a Redis fault becomes a StoreUnavailableError.

When Redis restarts, every pooled connection still points at the dead server and fails its first command.
Without a retry each of them would fail one store operation after Redis is back, and the engine would take
that for a second outage. So the pool retries a command that dies of a connection error or timeout on a
fresh connection (with a short jittered back-off), and PINGs a connection idle for a few seconds before
using it. Retries stay few: they must not turn a real outage into a long wait for every caller.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.errors import StoreUnavailableError

T = TypeVar("T")

MAX_CONNECTIONS = 64
RETRIES = 2  # a stale connection needs one; a second covers a connection the server closed meanwhile
HEALTH_CHECK_INTERVAL_S = 5


def connect(url: str, timeout: timedelta) -> aioredis.Redis:
    """A client on a blocking pool whose commands survive a Redis restart's stale connections."""
    seconds = timeout.total_seconds()
    retry = Retry(
        ExponentialWithJitterBackoff(base=0.02, cap=0.2),
        RETRIES,
        supported_errors=(RedisConnectionError, RedisTimeoutError),  # redis-py wraps socket errors in these
    )
    # A blocking pool: a burst waits up to `timeout` for a connection instead of failing at once
    # (redis-py's default pool raises when all connections are busy, which looks like Redis being down).
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=seconds,
        socket_timeout=seconds,
        socket_connect_timeout=seconds,
        retry=retry,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )
    return aioredis.Redis(connection_pool=pool)


async def guarded(operation: str, call: Awaitable[T]) -> T:
    """Awaits one Redis call; any Redis or socket fault becomes StoreUnavailableError (type name only:
    redis-py's messages can carry addresses, and values never belong in an error)."""
    try:
        return await call
    except (RedisError, OSError) as exc:
        raise StoreUnavailableError(f"redis {operation} failed: {type(exc).__name__}") from exc
