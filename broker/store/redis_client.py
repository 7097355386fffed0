"""The Redis connection the stores use, the one place a Redis fault becomes a StoreUnavailableError, and the
one pub/sub listener.

When Redis restarts, every pooled connection still points at the dead server and fails its first command.
Without a retry each of them would fail one store operation after Redis is back, and the engine would take
that for a second outage. So the pool retries a command that dies of a connection error or timeout on a
fresh connection (with a short jittered back-off), and PINGs a connection idle for a few seconds before
using it. Retries stay few: they must not turn a real outage into a long wait for every caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.errors import StoreUnavailableError

T = TypeVar("T")

MAX_CONNECTIONS = 64
RETRIES = 2  # a stale connection needs one; a second covers a connection the server closed meanwhile
HEALTH_CHECK_INTERVAL_S = 5


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where Redis is: one server (`url`); a master that Redis Sentinel watches (`sentinels`, each
    (host, port), and the `service_name` they monitor it under), found again after every failover; or a
    Redis Cluster (`nodes`). Every multi-key command and script of the stores names keys of one hash tag
    (`{...}`), so each runs on one cluster slot."""

    url: str | None = field(default=None, repr=False)  # may hold a password
    sentinels: tuple[tuple[str, int], ...] = ()
    service_name: str | None = None
    nodes: tuple[tuple[str, int], ...] = ()  # Redis Cluster: some of its nodes, to discover the rest

    @property
    def replicated(self) -> bool:
        """Whether a replica takes over the master's data: then a write that must survive a failover
        waits for a replica's acknowledgement (WAIT)."""
        return bool(self.sentinels)


def address_of(where: str | RedisAddress) -> RedisAddress:
    return where if isinstance(where, RedisAddress) else RedisAddress(url=where)


def connect(where: str | RedisAddress, timeout: timedelta) -> aioredis.Redis:
    """A client whose commands survive a Redis restart's stale connections: on a blocking pool for one
    server, or on Sentinel's pool, which asks the sentinels for the master after a failover."""
    address = address_of(where)
    seconds = timeout.total_seconds()
    retry = Retry(
        ExponentialWithJitterBackoff(base=0.02, cap=0.2),
        RETRIES,
        supported_errors=(RedisConnectionError, RedisTimeoutError),  # redis-py wraps socket errors in these
    )
    if address.nodes:
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            socket_timeout=seconds,
            socket_connect_timeout=seconds,
            retry=retry,
            max_connections=MAX_CONNECTIONS,
        )
        # RedisCluster offers every command, script and scan the stores use (keys of one hash tag per
        # call), routed to the node of each key's slot; it only shares no base class with Redis.
        return cast(aioredis.Redis, cluster)
    if address.sentinels:
        client: aioredis.Redis = _sentinel(address, seconds).master_for(
            address.service_name or "",
            redis_class=aioredis.Redis,
            socket_timeout=seconds,
            socket_connect_timeout=seconds,
            retry=retry,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            max_connections=MAX_CONNECTIONS,
        )
        return client
    assert address.url is not None
    url = address.url
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
    except (RedisError, RedisClusterException, OSError) as exc:  # a slot not covered is no RedisError
        raise StoreUnavailableError(f"redis {operation} failed: {type(exc).__name__}") from exc


def listener(where: str | RedisAddress, timeout_s: float) -> aioredis.Redis:
    """A client for pub/sub: it blocks on reads by design, so it has no read timeout, only a connect one."""
    address = address_of(where)
    if address.nodes:
        # A PUBLISH on a cluster reaches every node, so a subscriber on any one node hears it all.
        host, port = address.nodes[0]
        return aioredis.Redis(
            host=host, port=port, socket_connect_timeout=timeout_s, health_check_interval=10
        )
    if address.sentinels:
        client: aioredis.Redis = _sentinel(address, timeout_s).master_for(
            address.service_name or "",
            redis_class=aioredis.Redis,
            socket_connect_timeout=timeout_s,
            health_check_interval=10,
        )
        return client
    assert address.url is not None
    return aioredis.Redis.from_url(address.url, socket_connect_timeout=timeout_s, health_check_interval=10)


def _sentinel(address: RedisAddress, timeout_s: float) -> Sentinel:
    return Sentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels),
        sentinel_kwargs={"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s},
    )


class ChannelListener:
    """Delivers the messages of one pub/sub channel, as bytes, until closed; after a Redis fault it
    reconnects with back-off (0.1 s doubling to 5 s) and calls `on_subscribed` again, so the caller can
    read back what it may have missed while nobody listened (pub/sub delivers at most once)."""

    def __init__(
        self,
        client: aioredis.Redis,
        channel: str,
        deliver: Callable[[bytes], None],
        on_subscribed: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._deliver = deliver
        self._on_subscribed = on_subscribed
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        pause = 0.1
        while not self._closing:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    pause = 0.1
                    if self._on_subscribed is not None:
                        self._on_subscribed()
                    while not self._closing:
                        message = await pubsub.get_message(timeout=1.0)
                        # redis-py can swallow a cancellation that lands as get_message times out
                        # (redis-py #2551); the flag ends the loop all the same.
                        if message is not None:
                            data = message.get("data")
                            self._deliver(data if isinstance(data, bytes) else str(data).encode())
            except (RedisError, OSError):
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def close(self) -> None:
        self._closing = True
        self._task.cancel()
        await asyncio.wait({self._task}, timeout=2)


def sharded_listener(where: str | RedisAddress, timeout_s: float) -> RedisCluster | None:
    """A cluster client for sharded pub/sub (SSUBSCRIBE), or None where the address is not a cluster."""
    address = address_of(where)
    if not address.nodes:
        return None
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
        socket_connect_timeout=timeout_s,
    )


class ShardedListener:
    """Delivers the messages of Redis Cluster shard channels (sharded pub/sub), as bytes, until closed: one
    task per channel, each subscribed on the node that owns the channel's slot, so a notice travels to that
    node only instead of over the whole cluster's bus. After a fault (a failover, a moved slot) a task
    subscribes again with back-off (0.1 s doubling to 5 s)."""

    def __init__(
        self, cluster: RedisCluster, channels: Sequence[str], deliver: Callable[[bytes], None]
    ) -> None:
        self._cluster = cluster
        self._deliver = deliver
        self._closing = False
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen(channel)) for channel in channels]

    async def _listen(self, channel: str) -> None:
        pause = 0.1
        while not self._closing:
            pubsub = self._cluster.pubsub()
            try:
                await self._cluster.initialize()  # the slots' owners: without them no channel has a node
                await pubsub.ssubscribe(channel)
                pause = 0.1
                while not self._closing:
                    message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") in (b"smessage", "smessage"):
                        data = message.get("data")
                        self._deliver(data if isinstance(data, bytes) else str(data).encode())
            except (RedisError, RedisClusterException, OSError):  # a slot not covered is not a RedisError
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=2)
