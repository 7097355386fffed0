"""The Redis store: sealed values, shared between broker instances, and a Redis outage is survived."""

from __future__ import annotations

import os
from pathlib import Path

import redis.asyncio as aioredis

from broker.config import StoreSettings
from broker.store.redis import PREFIX
from tests.fixtures.broker_server import broker_config, get_token, running_broker, sfm_clients
from tests.fixtures.redis_server import RunningRedis, start_redis
from tests.fixtures.sts import running_sts


def redis_settings(url: str) -> StoreSettings:
    return StoreSettings(kind="redis", url=url, encryption_key=os.urandom(32))


async def test_second_broker_reads_the_token_from_redis_without_asking_the_sts(
    redis_server: RunningRedis, tmp_path: Path
) -> None:
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path, clients) as sts:
        config = broker_config(sts.issuer, clients, store=redis_settings(redis_server.url))
        async with running_broker(config) as first:
            token = await get_token(first, "oslo")
        before = sts.stats()["token_requests"]
        async with running_broker(config) as second:
            again = await get_token(second, "oslo")
        assert again.token == token.token
        assert sts.stats()["token_requests"] == before
    client = aioredis.Redis.from_url(redis_server.url)
    keys = [key async for key in client.scan_iter(match=PREFIX + "{v1:oslo:*}:tok")]
    values = [await client.get(key) for key in keys]
    await client.aclose()
    assert values
    assert all(token.token.encode() not in value for value in values if value)


async def test_a_broker_with_another_key_cannot_read_the_values(
    redis_server: RunningRedis, tmp_path: Path
) -> None:
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path, clients) as sts:
        async with running_broker(
            broker_config(sts.issuer, clients, store=redis_settings(redis_server.url))
        ) as a:
            first = await get_token(a, "oslo")
        async with running_broker(
            broker_config(sts.issuer, clients, store=redis_settings(redis_server.url))
        ) as b:
            second = await get_token(b, "oslo")
    assert first.token != second.token


async def test_broker_serves_tokens_when_redis_is_down(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis")
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path, clients) as sts:
        config = broker_config(sts.issuer, clients, store=redis_settings(redis.url))
        redis.stop()
        async with running_broker(config) as address:
            token = await get_token(address, "oslo")
            assert token.token
            assert (await get_token(address, "oslo")).token == token.token
