"""Issue 7 point 9: Redis coming back is not a second outage, and no write is unfenced while Redis answers.

Three broker replicas (real processes) on a real Redis, in front of the dev authority, under steady load.
Redis is killed, restarted on the same port a few seconds later, and the load goes on. Before the fix, the
pooled connections of the dead server failed their first command after the restart: a replica logged the
outage again, and when that command was a lease it fetched without coordination and wrote the token with a
plain SET. Redis's MONITOR shows every write: a token key may only be written from inside the fenced
script (`client_type` lua), never by a plain command.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from broker.protocol import keys
from broker.store.redis import PREFIX
from tests.fixtures.cluster import Replica, load, replicas, wait_serving, write_cluster_config
from tests.fixtures.redis_server import RunningRedis, start_redis
from tests.fixtures.sts import RunningSts, TestClient, running_sts

OUTAGE_S = 5
WENT = "shared store unavailable"
BACK = "shared store is back"


@dataclass
class Stack:
    sts: RunningSts
    redis: RunningRedis
    replicas: list[Replica]


@dataclass
class TokenWrites:
    """Writes to token keys seen by MONITOR: inside the fenced script, or plain (unfenced)."""

    fenced: int = 0
    plain: list[str] = field(default_factory=list)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    client = TestClient(
        "return-client", "multi", "999888777", ("e-helse:sfm.api/sfm.api2",), "e-helse:sfm.api"
    )
    redis = start_redis(tmp_path / "redis")
    try:
        with running_sts("devauthority", tmp_path / "sts", [client], token_lifetime=4) as sts:
            config = write_cluster_config(
                tmp_path,
                issuer=sts.issuer,
                client_id=client.client_id,
                redis_url=redis.url,
                key_jwk=keys.private_jwk(client.signing_key),
            )
            with replicas(config, tmp_path, 3) as started:
                asyncio.run(_serving(started))
                yield Stack(sts, redis, started)
    finally:
        redis.stop()


async def _serving(started: list[Replica]) -> None:
    await asyncio.gather(*(wait_serving(replica.address) for replica in started))


async def watch_token_writes(url: str, writes: TokenWrites) -> None:
    """Records every SET of a token key until cancelled; reconnects while Redis is down."""
    while True:
        client = aioredis.Redis.from_url(url)
        try:
            async with client.monitor() as monitor:
                while True:
                    entry = await monitor.next_command()
                    words = entry["command"].split(" ", 2)
                    if words[0] != "SET" or not (words[1].startswith(PREFIX) and words[1].endswith(":tok")):
                        continue
                    if entry["client_type"] == "lua":
                        writes.fenced += 1
                    else:
                        writes.plain.append(words[1])
        except (OSError, aioredis.ConnectionError):
            await asyncio.sleep(0.05)
        finally:
            await client.aclose()


async def test_redis_back_after_an_outage_is_logged_once_and_never_written_unfenced(stack: Stack) -> None:
    addresses = [replica.address for replica in stack.replicas]
    assert not (await load(addresses, callers=6, seconds=0.5)).errors
    writes = TokenWrites()
    monitor = asyncio.create_task(watch_token_writes(stack.redis.url, writes))
    restarted_at: list[float] = []

    async def outage() -> None:
        await asyncio.sleep(2)
        stack.redis.stop()
        await asyncio.sleep(OUTAGE_S)
        restarted = await asyncio.to_thread(start_redis, stack.redis.workdir, stack.redis.port)
        stack.redis.process = restarted.process
        restarted_at.append(time.monotonic())

    started = time.monotonic()
    result, _ = await asyncio.gather(load(addresses, callers=12, seconds=2 + OUTAGE_S + 7), outage())
    elapsed = time.monotonic() - started
    monitor.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await monitor
    logs = [replica.log.read_text() for replica in stack.replicas]
    went = [log.count(WENT) for log in logs]
    back = [log.count(BACK) for log in logs]
    print(
        f"\nRedis killed under load for {OUTAGE_S} s, then restarted: {result.summary()} "
        f"({result.calls / elapsed:.0f} calls/s); STS issued {stack.sts.stats()['tokens_issued']} tokens; "
        f"per replica '{WENT}' {went}, '{BACK}' {back}; token writes seen: "
        f"{writes.fenced} fenced, {len(writes.plain)} unfenced"
    )
    assert restarted_at
    assert not result.errors
    assert result.expired == 0
    assert went == [1, 1, 1]
    assert back == [1, 1, 1]
    assert writes.plain == []
    assert writes.fenced >= 1  # the replicas went on storing renewals, under their leases
