"""Redis Sentinel: two broker replicas (real processes) find the master through three sentinels; under load
the master is killed, the sentinels fail over to the replica, and the brokers follow it.

Counted and printed: calls served and failed (0), the STS's tokens issued during the run (one per key: the
failover costs HelseID nothing), and that the brokers write to the new master after the failover.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from broker.model import AccessToken, Session, TokenType, UserIdentity
from broker.protocol import keys
from broker.store.redis_client import RedisAddress
from broker.store.redis_sessions import RedisSessionStore
from tests.fixtures.cluster import Replica, start_replica, wait_serving, write_cluster_config
from tests.fixtures.sentinel import SERVICE, sentinel_group
from tests.fixtures.sts import TestClient, running_sts
from tests.reload.test_replicas import call, load_until

REPLICAS = 2


def test_the_master_killed_under_load_fails_over_with_no_failed_call(tmp_path: Path) -> None:
    client = TestClient("sentinel", "multi", "999888777", ("e-helse:sfm.api/sfm.api2",), "e-helse:sfm.api")
    started: list[Replica] = []
    with (
        sentinel_group(tmp_path / "redis") as group,
        running_sts("devauthority", tmp_path / "sts", [client], token_lifetime=300) as sts,
    ):
        shared = write_cluster_config(
            tmp_path,
            issuer=sts.issuer,
            client_id=client.client_id,
            redis_url="redis://unused",
            key_jwk=keys.private_jwk(client.signing_key),
        )
        text = re.sub(r'url = "redis://unused"', group.sentinels_toml, shared.read_text())
        shared.write_text(text)
        store_key = base64.b64encode(os.urandom(32)).decode()
        try:
            started = [start_replica(shared, tmp_path, index, store_key) for index in range(REPLICAS)]
            asyncio.run(_all_serving(started))
            addresses = [replica.address for replica in started]
            old_master = group.master.port

            async def scenario() -> tuple[dict[str, int], float]:
                stop = asyncio.Event()
                loading = asyncio.create_task(load_until(addresses, stop, callers=6))
                await asyncio.sleep(2)
                group.master.process.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                while group.master_port() == old_master:
                    assert time.monotonic() - killed < 30, "the sentinels did not fail over"
                    await asyncio.sleep(0.1)
                failed_over = time.monotonic() - killed
                await asyncio.sleep(3)  # the brokers work on through the new master
                # A token fetched now (a tenant nobody asked for yet) is written to the new master.
                assert await call(addresses[0], "bergen", "sfm") == "OK"
                await asyncio.sleep(3)
                stop.set()
                return dict(await loading), failed_over

            before = sts.stats()["tokens_issued"]
            outcomes, failed_over = asyncio.run(scenario())
            issued = sts.stats()["tokens_issued"] - before
            new_master = redis.Redis(port=group.master_port())
            tokens_there = len(list(new_master.scan_iter(match="broker:v1:*:tok")))
            new_master.close()
        finally:
            for replica in started:
                replica.stop()
    failed = sum(count for outcome, count in outcomes.items() if outcome != "OK")
    print(
        f"sentinel failover after {failed_over:.1f} s; load on {REPLICAS} replicas: {outcomes.get('OK', 0)} "
        f"calls served, {failed} failed; tokens issued by the STS during the run: {issued}; "
        f"token records on the new master: {tokens_there}"
    )
    assert failed == 0
    assert outcomes.get("OK", 0) > 0
    # oslo's token once (at the start, not again for the outage), bergen's once after the failover.
    assert issued == 2
    assert tokens_there == 2


async def _all_serving(started: list[Replica]) -> None:
    await asyncio.gather(*(wait_serving(replica.address) for replica in started))


async def test_a_refreshed_session_is_on_the_replica_when_its_save_returns(tmp_path: Path) -> None:
    """The write that holds a session's rotated refresh token waits for the replica (WAIT 1): once the save
    returns, a failover cannot lose it."""
    with sentinel_group(tmp_path / "redis") as group:
        address = RedisAddress(
            sentinels=tuple(("127.0.0.1", port) for port in group.sentinel_ports), service_name=SERVICE
        )
        store = RedisSessionStore.from_url(address, os.urandom(32))
        now = datetime.now(UTC)
        session = Session(
            session_key="k" * 43,
            tenant="oslo",
            targets=("sfm",),
            refresh_token="rotated-refresh-token",
            expires_at=now + timedelta(hours=1),
            user=UserIdentity(subject="s"),
            created_at=now,
        )
        token = AccessToken("access", TokenType.DPOP, now, now + timedelta(minutes=5))
        await store.create(session, timedelta(hours=1))
        lease = await store.try_lease(session.session_key, timedelta(seconds=10))
        assert lease is not None
        saved = await store.save_refreshed(
            lease,
            session=session,
            session_ttl=timedelta(hours=1),
            target="sfm",
            token=token,
            token_ttl=timedelta(minutes=5),
        )
        replica = redis.Redis(port=group.replica.port)
        on_replica = replica.exists(f"broker:v1:{{sess:{session.session_key}}}:session")
        replica.close()
        await store.close()
    assert saved
    assert on_replica == 1
