"""What one renewal costs the replicas in Redis round trips, on a real Redis and the dev authority.

The renewing replica: one lease script that also answers with the stored token, one fenced write that also
publishes the token; no plain read. Every other replica: nothing at all, the notice carries the token.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from broker.store.codec import SealedCodec
from broker.store.redis import RedisTokenStore
from broker.store.redis_client import connect, listener
from broker.tokens.engine import TokenEngine
from tests.fixtures.broker_server import broker_config, sfm_clients
from tests.fixtures.redis_server import RunningRedis
from tests.fixtures.sts import running_sts
from tests.integration.test_coordination import now, replica

T = TypeVar("T")


class CountingStore(RedisTokenStore):
    """The real store, counting its Redis calls by operation (every call passes `_call`)."""

    def __init__(self, url: str, key: bytes) -> None:
        timeout = timedelta(seconds=1)
        super().__init__(connect(url, timeout), SealedCodec(key), listener(url, 1.0))
        self.calls: Counter[str] = Counter()

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        self.calls[operation] += 1
        return await super()._call(operation, call)


def later(offset: list[timedelta]) -> Callable[[], datetime]:
    return lambda: now() + offset[0]


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not come true")


def current(engine: TokenEngine, tenant: str) -> str | None:
    entry = engine.cached(engine.routes.resolve(tenant, "sfm"))
    return None if entry is None else entry.token.value


async def test_a_background_renewal_is_one_lease_and_one_write_with_no_read(
    redis_server: RunningRedis, tmp_path: Path
) -> None:
    clients = sfm_clients()
    key = os.urandom(32)
    offset = [timedelta(0)]
    with running_sts("devauthority", tmp_path, clients) as sts:
        config = broker_config(sts.issuer, clients)
        store = CountingStore(redis_server.url, key)
        async with replica(config, redis_server.url, key, store, clock=later(offset)) as engine:
            first = (await engine.get_token("oslo", "sfm")).value
            store.calls.clear()
            offset[0] = timedelta(seconds=240)  # 0.8 of the 300 s lifetime: stale, still servable
            engine.refresh_soon(engine.routes.resolve("oslo", "sfm"))
            await until(lambda: current(engine, "oslo") not in (None, first))
            await until(lambda: store.calls["write"] == 1)
    print(f"store calls of one renewal: {dict(store.calls)}")
    assert store.calls["lease"] == 1
    assert store.calls["write"] == 1
    assert store.calls["read"] == 0


async def test_the_other_replicas_take_the_renewed_token_from_its_notice_without_a_read(
    redis_server: RunningRedis, tmp_path: Path
) -> None:
    clients = sfm_clients()
    key = os.urandom(32)
    offset = [timedelta(0)]
    with running_sts("devauthority", tmp_path, clients) as sts:
        config = broker_config(sts.issuer, clients)
        watcher = CountingStore(redis_server.url, key)
        async with (
            replica(config, redis_server.url, key, clock=later(offset)) as renewing,
            replica(config, redis_server.url, key, watcher) as other,
        ):
            first = (await renewing.get_token("bergen", "sfm")).value
            assert (await other.get_token("bergen", "sfm")).value == first
            await asyncio.sleep(0.2)  # the listener subscribed
            watcher.calls.clear()
            offset[0] = timedelta(seconds=240)
            renewing.refresh_soon(renewing.routes.resolve("bergen", "sfm"))
            await until(lambda: current(renewing, "bergen") not in (None, first))
            renewed = current(renewing, "bergen")
            await until(lambda: current(other, "bergen") == renewed)
    print(f"the other replica's store calls while it took the renewal: {dict(watcher.calls)}")
    assert sum(watcher.calls.values()) == 0
