"""Redis Cluster: two broker replicas (real processes) on a real three-master cluster, in front of the dev
authority. Under load on several tenants the replicas share tokens through the cluster (one STS request per
key), coordinate with leases and scripts that each run on one slot, hear each other's notices (pub/sub), and
a tenant upserted through one replica's AdminService is served by the other; the keys spread over the
nodes. Counts are printed."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from broker.model import AccessToken, TokenType
from broker.protocol import keys
from broker.store.redis import CHANNEL, RedisTokenStore, shard_channel
from broker.store.redis_client import RedisAddress
from broker.v1 import admin_service_pb2 as admin
from broker.v1 import admin_service_pb2_grpc as admin_grpc
from tests.fixtures.cluster import Replica, start_replica, wait_serving, write_cluster_config
from tests.fixtures.redis_cluster import redis_cluster
from tests.fixtures.sts import TestClient, running_sts
from tests.reload.test_replicas import call, load_until

REPLICAS = 2
TENANTS = ["oslo", "bergen"]


def test_two_replicas_on_a_three_master_cluster_share_tokens_notices_and_tenants(tmp_path: Path) -> None:
    client = TestClient("clustered", "multi", "999888777", ("e-helse:sfm.api/sfm.api2",), "e-helse:sfm.api")
    started: list[Replica] = []
    with (
        redis_cluster(tmp_path / "redis") as cluster,
        running_sts("devauthority", tmp_path / "sts", [client], token_lifetime=300) as sts,
    ):
        shared = write_cluster_config(
            tmp_path,
            issuer=sts.issuer,
            client_id=client.client_id,
            redis_url="redis://unused",
            key_jwk=keys.private_jwk(client.signing_key),
        )
        shared.write_text(re.sub(r'url = "redis://unused"', cluster.nodes_toml, shared.read_text()))
        store_key = base64.b64encode(os.urandom(32)).decode()
        try:
            started = [start_replica(shared, tmp_path, index, store_key) for index in range(REPLICAS)]
            asyncio.run(_all_serving(started))
            addresses = [replica.address for replica in started]

            async def scenario() -> tuple[dict[str, int], float]:
                stop = asyncio.Event()
                loading = asyncio.create_task(load_until(addresses, stop, callers=6))
                for tenant in TENANTS:
                    for address in addresses:
                        assert await call(address, tenant, "sfm") == "OK"
                # A tenant upserted on one replica is served by the other (a script and a notice on the
                # cluster).
                began = time.monotonic()
                async with grpc.aio.insecure_channel(addresses[0]) as channel:
                    settings = admin.TenantSettings(client="multi", targets=["sfm"], orgnr_parent="956789012")
                    await admin_grpc.AdminServiceStub(channel).UpsertTenant(
                        admin.UpsertTenantRequest(tenant="tromso", settings=settings), timeout=10
                    )
                while await call(addresses[1], "tromso", "sfm") != "OK":
                    assert time.monotonic() - began < 5, "the other replica never served the upserted tenant"
                    await asyncio.sleep(0.05)
                served_after = time.monotonic() - began
                await asyncio.sleep(2)
                stop.set()
                return dict(await loading), served_after

            before = sts.stats()["tokens_issued"]
            outcomes, served_after = asyncio.run(scenario())
            issued = sts.stats()["tokens_issued"] - before
            tokens = cluster.keys("broker:v1:*:tok")
            spread = [len(cluster.keys_on(node, "broker:v1:*")) for node in cluster.nodes]
        finally:
            for replica in started:
                replica.stop()
    failed = sum(count for outcome, count in outcomes.items() if outcome != "OK")
    print(
        f"cluster of {len(spread)} masters, {REPLICAS} replicas: {outcomes.get('OK', 0)} calls served, "
        f"{failed} failed; tokens issued {issued} for 3 tenants; token records {len(tokens)}; keys per node "
        f"{spread}; the upserted tenant served by the other replica after {served_after:.2f} s"
    )
    assert failed == 0
    assert issued == 3  # one STS request per key, shared through the cluster by both replicas
    assert len(tokens) == 3
    assert sum(spread) >= len(tokens)


async def _all_serving(started: list[Replica]) -> None:
    await asyncio.gather(*(wait_serving(replica.address) for replica in started))


def test_renewal_notices_travel_on_shard_channels_to_the_other_replica_with_their_tokens(
    tmp_path: Path,
) -> None:
    with redis_cluster(tmp_path / "redis") as cluster:
        address = RedisAddress(nodes=tuple(("127.0.0.1", node.port) for node in cluster.nodes))
        key = os.urandom(32)
        heard: dict[str, AccessToken | None] = {}
        counts: dict[int, int] = {}

        async def scenario() -> None:
            renewing = RedisTokenStore.from_url(address, key)
            other = RedisTokenStore.from_url(address, key)
            try:
                other.on_renewal(heard.__setitem__)
                await asyncio.sleep(1.0)  # every shard channel subscribed on its node
                counts.update({node.port: _numsub(node.port) for node in cluster.nodes})
                now = datetime.now(UTC)
                for index in range(48):
                    cache_key = f"v1:shard-test-{index}"
                    attempt = await renewing.try_lease(cache_key, timedelta(seconds=10))
                    assert attempt.lease is not None
                    token = AccessToken(f"token-{index}", TokenType.DPOP, now, now + timedelta(minutes=5))
                    assert await renewing.put_if_holder(attempt.lease, token, timedelta(minutes=4))
                for _ in range(100):
                    if len(heard) == 48:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await renewing.close()
                await other.close()

        asyncio.run(scenario())
    tokens = {cache_key: None if token is None else token.value for cache_key, token in heard.items()}
    channels = {shard_channel(f"v1:shard-test-{index}") for index in range(48)}
    print(
        f"notices heard: {len(heard)} of 48, on {len(channels)} shard channels; plain subscribers: {counts}"
    )
    assert tokens == {f"v1:shard-test-{index}": f"token-{index}" for index in range(48)}
    assert len(channels) > 8  # spread over the shard channels, and so over the masters
    assert set(counts.values()) == {0}  # nobody listens on the plain channel, which a cluster broadcasts


def _numsub(port: int) -> int:
    """Subscribers of the plain renewal channel on one node (none: notices go on shard channels)."""
    answer = subprocess.run(
        ["redis-cli", "-p", str(port), "PUBSUB", "NUMSUB", CHANNEL],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return int(answer.stdout.split()[-1])
