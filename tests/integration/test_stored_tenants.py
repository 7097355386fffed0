"""Tenants in Redis (the AdminService's store): sealed, bounded, announced to every replica, and read again
whole when a notice was missed."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from broker.config import BrokerConfig, load_config
from broker.errors import ConfigurationError
from broker.protocol import keys
from broker.store.codec import SealedCodec
from broker.store.tenants import TABLES, RedisTenantRecords, TooManyTenantsError
from broker.stored_tenants import StoredTenants
from tests.fixtures.redis_server import RunningRedis

MOLDE = {"client": "multi", "orgnr_parent": "934567890", "targets": ["sfm"]}


def records(url: str, key: bytes, limit: int = 100) -> RedisTenantRecords:
    made = RedisTenantRecords.from_url(url, key)
    made._limit = limit  # a small store, to reach its bound
    return made


async def fresh(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    await client.aclose()


async def test_a_stored_tenant_is_sealed_and_one_written_without_the_key_is_never_read(
    redis_server: RunningRedis,
) -> None:
    await fresh(redis_server.url)
    key = os.urandom(32)
    store = records(redis_server.url, key)
    created, version = await store.put("molde", MOLDE)
    assert created
    assert version == 1
    assert await store.read("molde") == MOLDE

    client = aioredis.Redis.from_url(redis_server.url)
    sealed = await client.hget(TABLES, "molde")
    assert sealed is not None
    assert b"934567890" not in sealed
    # Someone with write access to Redis but not the store key plants a tenant: it never opens.
    forged = SealedCodec(os.urandom(32)).seal_table(f"{TABLES}:evil", {**MOLDE, "orgnr_parent": "912345678"})
    await client.hset(TABLES, "evil", forged)
    # And a valid table moved under another name does not open either (the name is associated data).
    await client.hset(TABLES, "copy", sealed)
    await client.aclose()

    version, tables = await store.read_all()
    assert tables == {"molde": MOLDE}
    assert await store.read("evil") is None
    assert await store.read("copy") is None
    await store.close()


async def test_the_store_holds_at_most_its_limit_of_tenants(redis_server: RunningRedis) -> None:
    await fresh(redis_server.url)
    store = records(redis_server.url, os.urandom(32), limit=2)
    await store.put("a", MOLDE)
    await store.put("b", MOLDE)
    with pytest.raises(TooManyTenantsError):
        await store.put("c", MOLDE)
    created, _ = await store.put("b", {**MOLDE, "orgnr_parent": "945678901"})  # replacing is not growing
    assert not created
    assert await store.delete("a") is not None
    assert (await store.put("c", MOLDE))[0]
    assert sorted((await store.read_all())[1]) == ["b", "c"]
    await store.close()


async def test_every_change_is_announced_with_its_version(redis_server: RunningRedis) -> None:
    await fresh(redis_server.url)
    key = os.urandom(32)
    writer, listener = records(redis_server.url, key), records(redis_server.url, key)
    heard: list[tuple[int, str]] = []
    connected = asyncio.Event()
    listener.on_change(lambda version, name: heard.append((version, name)), connected.set)
    await asyncio.wait_for(connected.wait(), 5)
    await writer.put("molde", MOLDE)
    await writer.put("tromso", MOLDE)
    await writer.delete("molde")
    await writer.announce_reload()
    for _ in range(100):
        if len(heard) == 4:
            break
        await asyncio.sleep(0.02)
    assert heard == [(1, "molde"), (2, "tromso"), (3, "molde"), (0, "*")]
    assert await listener.delete("nobody") is None  # no change, no notice, no version
    assert await listener.version() == 3
    await writer.close()
    await listener.close()


class Reloads:
    """Stands in for the reloader: counts what the stored tenants ask of it."""

    def __init__(self) -> None:
        self.reloads = 0
        self.asked = 0

    async def reload(self, trigger: str, *, reread_files: bool = True) -> None:
        self.reloads += 1

    def ask(self) -> None:
        self.asked += 1


def config(tmp_path: Path) -> BrokerConfig:
    path = tmp_path / "broker.toml"
    (tmp_path / "key.jwk").write_text(json.dumps(keys.private_jwk(keys.generate_signing_key())))
    path.write_text(
        '[clients.multi]\nclient_id = "c"\nissuer = "https://sts.test"\ntenancy = "multi"\n'
        'signing_key = { file = "key.jwk" }\n'
        '[targets.sfm]\nresource = "e-helse:sfm.api"\nscopes = ["e-helse:sfm.api/sfm.api2"]\n'
    )
    return load_config(path)


async def test_a_replica_catches_up_by_notice_and_reads_everything_again_after_a_gap(
    redis_server: RunningRedis, tmp_path: Path
) -> None:
    await fresh(redis_server.url)
    key = os.urandom(32)
    writer = records(redis_server.url, key)
    await writer.put("molde", MOLDE)
    stored = StoredTenants(records(redis_server.url, key))
    await stored.load()
    assert stored.version == 1
    reloads = Reloads()
    running = asyncio.create_task(stored.run(reloads))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.3)  # subscribed (the first connect reads everything once more)
        settled = reloads.reloads

        await writer.put("tromso", MOLDE)
        await _until(lambda: "tromso" in stored.names())
        assert stored.version == 2

        # A notice lost (written behind pub/sub's back, as while a replica was disconnected): the next
        # notice shows the gap, and the whole hash is read again.
        await writer._redis.hset(TABLES, "lost", SealedCodec(key).seal_table(f"{TABLES}:lost", MOLDE))
        await writer._redis.incr("broker:v1:{tenants}:version")
        await writer.put("bodo", MOLDE)
        await _until(lambda: {"lost", "bodo"} <= stored.names())
        assert stored.version == 4
        assert reloads.reloads >= settled + 2

        await writer.announce_reload()
        await _until(lambda: reloads.asked == 1)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    # What was read validates like a tenant file against the running clients and targets.
    tenants = stored.tenants(config(tmp_path))
    assert sorted(tenants) == ["bodo", "lost", "molde", "tromso"]
    assert tenants["molde"].orgnr_parent == "934567890"
    await writer.put("broken", {**MOLDE, "client": "nobody"})
    await stored.load()
    with pytest.raises(ConfigurationError) as caught:
        stored.tenants(config(tmp_path))
    assert caught.value.problems == (
        ("the shared store: tenants.broken.client", "no client named 'nobody' in [clients]"),
    )
    await writer.close()
    await stored.records.close()


async def _until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, "not within the time"
        await asyncio.sleep(0.02)
