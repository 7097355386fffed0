"""Replicas coordinated through a real Redis: one fetch per key, renewals reach every replica, pushes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from broker.config import BrokerConfig
from broker.idp.sts import StsClient
from broker.store.redis import PREFIX, RedisTokenStore
from broker.tokens.engine import TokenEngine
from broker.tokens.policy import FreshnessPolicy
from broker.tokens.routes import RouteTable
from broker.tokens.scheduler import RefreshScheduler
from tests.fixtures.broker_server import broker_config, sfm_clients
from tests.fixtures.redis_server import RunningRedis
from tests.fixtures.sts import RunningSts, running_sts


def now() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def replica(
    config: BrokerConfig,
    redis_url: str,
    key: bytes,
    store: RedisTokenStore | None = None,
    **engine: object,
) -> AsyncIterator[TokenEngine]:
    """One broker replica's engine: its own process memory, HTTP client and Redis connections."""
    store = store or RedisTokenStore.from_url(redis_url, key)
    sts = StsClient(httpx.AsyncClient(timeout=10), now, shared_nonces=store)
    policy = FreshnessPolicy(refresh_fraction=0.5, jitter_fraction=0.1, expiry_skew=timedelta(seconds=1))
    routes = RouteTable(config.clients, config.targets, config.tenants)
    settings: dict[str, object] = {"clock": now, **engine}
    built = TokenEngine(routes, sts, store, store, policy=policy, **settings)  # type: ignore[arg-type]
    try:
        yield built
    finally:
        await built.close()
        await sts.close()


def issued(sts: RunningSts) -> int:
    return int(sts.stats()["tokens_issued"])


async def test_three_replicas_fetch_a_cold_token_once(redis_server: RunningRedis, tmp_path: Path) -> None:
    clients = sfm_clients()
    key = os.urandom(32)
    with running_sts("devauthority", tmp_path, clients) as sts:
        config = broker_config(sts.issuer, clients)
        async with (
            replica(config, redis_server.url, key) as a,
            replica(config, redis_server.url, key) as b,
            replica(config, redis_server.url, key) as c,
        ):
            calls = [engine.get_token("oslo", "sfm") for engine in (a, b, c) for _ in range(50)]
            tokens = await asyncio.gather(*calls)
        assert len({token.value for token in tokens}) == 1
        assert issued(sts) == 1
        print(f"\n150 callers on 3 replicas, cold key: {issued(sts)} token issued by the STS")


async def test_a_renewal_reaches_every_replica_and_the_nonce_is_shared(
    redis_server: RunningRedis, tmp_path: Path
) -> None:
    clients = sfm_clients()
    key = os.urandom(32)
    with running_sts("devauthority", tmp_path, clients, token_lifetime=4) as sts:
        config = broker_config(sts.issuer, clients)
        async with replica(config, redis_server.url, key) as a, replica(config, redis_server.url, key) as b:
            first_a = await a.get_token("oslo", "sfm")
            first_b = await b.get_token("oslo", "sfm")
            assert first_a.value == first_b.value
            await asyncio.sleep(2.6)  # past refresh_at (50 % +- 10 % of 4 s)
            await a.get_token("oslo", "sfm")  # stale: a refreshes in the background
            for _ in range(40):
                await asyncio.sleep(0.05)
                route = b.routes.resolve("oslo", "sfm")
                cached = b.cached(route)
                if cached is not None and cached.token.value != first_b.value:
                    break
            # b learned the renewal through pub/sub, without asking the STS or being asked.
            assert cached is not None
            assert cached.token.value != first_b.value
            assert cached.token.value == (await a.get_token("oslo", "sfm")).value
        stats = sts.stats()
    assert stats["tokens_issued"] == 2
    assert stats["nonce_challenges"] == 1  # b used the nonce a learned, through Redis


async def test_watch_sends_the_current_token_then_each_renewal(
    redis_server: RunningRedis, tmp_path: Path
) -> None:
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path, clients, token_lifetime=3) as sts:
        config = broker_config(sts.issuer, clients)
        async with replica(config, redis_server.url, os.urandom(32)) as engine:
            scheduler = RefreshScheduler(engine)
            running = asyncio.create_task(scheduler.run())
            route = engine.routes.resolve("bergen", "sfm")
            scheduler.keep(route)
            seen: list[str] = []

            async def watch() -> None:
                async for token in engine.watch(route):
                    assert token.expires_at > now()
                    seen.append(token.value)
                    if len(seen) == 3:
                        return

            await asyncio.wait_for(watch(), timeout=15)
            running.cancel()
    assert len(set(seen)) == 3


async def test_values_in_redis_are_sealed_and_leases_are_gone_after_the_fetch(
    redis_server: RunningRedis, tmp_path: Path
) -> None:
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path, clients) as sts:
        config = broker_config(sts.issuer, clients)
        async with replica(config, redis_server.url, os.urandom(32)) as engine:
            token = await engine.get_token("trondheim", "sfm")
            cache_key = engine.routes.resolve("trondheim", "sfm").cache_key
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        sealed = await client.get(f"{PREFIX}{{{cache_key}}}:tok")
        lease = await client.exists(f"{PREFIX}{{{cache_key}}}:lease")
        fencing = int(await client.get(f"{PREFIX}{{{cache_key}}}:fence"))
    finally:
        await client.aclose()
    assert sealed is not None
    assert token.value.encode() not in sealed
    assert lease == 0
    assert fencing >= 1
