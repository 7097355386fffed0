"""Key rotation across three replicas (real processes) on one real Redis, in front of the dev authority and
its Selvbetjening-like key API.

The client's registered key expires within the policy's margin, so the first look finds a rotation due.
Under load on all three: while Selvbetjening refuses, the old key stays and `broker_key_rotation_failing`
says so; once it accepts, exactly one new key is registered (one replica holds the lease), every replica
signs with it within a second of the commit (log times), the tokens served before the switch keep being
served (no fetch storm), and each replica's next fetch is signed by the new key; 0 failed calls.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from broker.protocol import keys
from broker.store.codec import SealedCodec
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.cluster import Replica, start_replica, wait_serving, write_cluster_config
from tests.fixtures.redis_server import free_port, start_redis
from tests.fixtures.sts import RunningSts, TestClient, running_sts
from tests.reload.test_replicas import load_until

REPLICAS = 3
TOKEN_LIFETIME_S = 60
SWITCH_WITHIN_S = 1.0
ROTATION = """
[clients.multi.rotation]
selvbetjening_url = "{issuer}/v1/client-secret"
rotate_before_expiry_days = 30
check_interval_s = 1
keep_old_key_s = 30
"""
TENANTS = """
[tenants.tromso]
client = "multi"
orgnr_parent = "956789012"
targets = ["sfm"]

[tenants.bodo]
client = "multi"
orgnr_parent = "967890123"
targets = ["sfm"]
"""


@dataclass
class Cluster:
    sts: RunningSts
    client: TestClient
    replicas: list[Replica]
    metrics_ports: list[int]
    redis_url: str
    store_key: bytes


def register_expiring_soon(sts: RunningSts, client: TestClient) -> None:
    """The client's registered key expires in a day, and it may use Selvbetjening."""
    registered = client.for_devauthority()
    registered["allowed_scopes"] = [*registered["allowed_scopes"], "nhn:selvbetjening/client"]
    registered["allowed_resources"] = [*registered["allowed_resources"], "nhn:selvbetjening"]
    registered["key_expirations"] = {client.signing_key.kid: time.time() + 86_400}
    httpx.post(f"{sts.issuer}/dev/clients", json=registered, timeout=5).raise_for_status()


def refuse_registrations(issuer: str, *, refuse: bool) -> None:
    httpx.post(f"{issuer}/dev/selvbetjening/faults", json={"refuse": refuse}, timeout=5).raise_for_status()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    client = TestClient("rotating", "multi", "999888777", ("e-helse:sfm.api/sfm.api2",), "e-helse:sfm.api")
    redis = start_redis(tmp_path / "redis")
    started: list[Replica] = []
    try:
        with running_sts("devauthority", tmp_path / "sts", [client], token_lifetime=TOKEN_LIFETIME_S) as sts:
            register_expiring_soon(sts, client)
            # Selvbetjening refuses at first: the test lifts it once the refusal has shown.
            httpx.post(
                f"{sts.issuer}/dev/selvbetjening/faults", json={"refuse": True}, timeout=5
            ).raise_for_status()
            shared = write_cluster_config(
                tmp_path,
                issuer=sts.issuer,
                client_id=client.client_id,
                redis_url=redis.url,
                key_jwk=keys.private_jwk(client.signing_key),
            )
            store_key = base64.b64encode(os.urandom(32)).decode()
            ports = [free_port() for _ in range(REPLICAS)]
            for index, port in enumerate(ports):
                main = tmp_path / f"broker-{index}.toml"
                telemetry = f'\n[telemetry]\nprometheus_listen = "127.0.0.1:{port}"\n'
                rotation = ROTATION.format(issuer=sts.issuer)
                main.write_text(shared.read_text() + TENANTS + telemetry + rotation)
                started.append(start_replica(main, tmp_path, index, store_key))
            asyncio.run(_all_serving(started))
            yield Cluster(sts, client, started, ports, redis.url, base64.b64decode(store_key))
    finally:
        for replica in started:
            replica.stop()
        redis.stop()


async def _all_serving(started: list[Replica]) -> None:
    await asyncio.gather(*(wait_serving(replica.address) for replica in started))


def gauge(port: int, name: str) -> float | None:
    scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


async def served_token(address: str, tenant: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        answer = await pb_grpc.TokenBrokerServiceStub(channel).GetToken(
            pb.GetTokenRequest(tenant=tenant, target="sfm"), timeout=20
        )
    return answer.access_token.token


async def new_private_key(cluster: Cluster) -> tuple[str, bytes]:
    """The rotated key's private member `d` (opened with the store key) and every raw value of its hash."""
    client = aioredis.Redis.from_url(cluster.redis_url)
    try:
        fields = await client.hgetall("broker:v1:{keys:multi}")
    finally:
        await client.aclose()
    current = fields[b"current"].decode()
    name = f"key:{current}"
    record = SealedCodec(cluster.store_key).open_table(
        f"broker:v1:{{keys:multi}}:{name}", fields[name.encode()]
    )
    assert record is not None
    private = record["private_jwk"]
    assert isinstance(private, dict)
    return str(private["d"]), b"".join(fields.values())


def keys_list(address: str) -> list[dict[str, object]]:
    """`python -m broker keys list` against a replica (no callers: loopback, no credential)."""
    command = [sys.executable, "-m", "broker", "keys", "list", "--address", address]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    listed: list[dict[str, object]] = json.loads(done.stdout)
    return listed


def issued_at(token: str) -> int:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["iat"])


def logged_at(log: str, text: str) -> datetime | None:
    """The time of the first log line holding `text` (the text format's "2026-12-01 14:02:32,871 ...")."""
    for line in log.splitlines():
        if text in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return None


async def until(condition: Callable[[], bool], what: str, within_s: float = 30) -> float:
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < within_s, f"{what}: not within {within_s} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - began


def test_a_refused_registration_keeps_the_old_key_then_one_replica_rotates_and_all_switch_under_load(
    cluster: Cluster,
) -> None:
    old_kid = cluster.client.signing_key.kid
    addresses = [replica.address for replica in cluster.replicas]

    def failing() -> list[float | None]:
        return [gauge(port, "broker_key_rotation_failing") for port in cluster.metrics_ports]

    async def scenario() -> tuple[Counter[str], list[str]]:
        lines: list[str] = []
        stop = asyncio.Event()
        loading = asyncio.create_task(load_until(addresses, stop, callers=6))
        try:
            # Selvbetjening refuses: the replica that rotates says so, and every replica keeps the old key.
            await until(lambda: 1 in failing(), "the failing gauge")
            refused = cluster.sts.stats()
            assert refused["selvbetjening"]["registrations"] == 0
            assert set(refused["tokens_by_kid"]) == {old_kid}
            lines.append(
                f"refused: {refused['selvbetjening']['refused']} registration(s) refused, the old key kept, "
                f"broker_key_rotation_failing = 1 on {failing().count(1)} of {REPLICAS} replicas"
            )
            before = {address: await served_token(address, "oslo") for address in addresses}

            await asyncio.to_thread(refuse_registrations, cluster.sts.issuer, refuse=False)
            waited = await until(
                lambda: cluster.sts.stats()["selvbetjening"]["registrations"] == 1, "the registration"
            )
            lines.append(f"refusal lifted: the new key registered {waited:.2f} s later")

            def all_switched() -> bool:
                return all("signs with its rotated key" in r.log.read_text() for r in cluster.replicas)

            await until(all_switched, "every replica's switch", within_s=10)
            logs = [replica.log.read_text() for replica in cluster.replicas]
            committed = next(t for log in logs if (t := logged_at(log, "': commit ok")) is not None)
            switches = [
                (switched - committed).total_seconds()
                for log in logs
                if (switched := logged_at(log, "signs with its rotated key")) is not None
            ]
            lines.append(
                "after the commit every replica signs with the new key: "
                + ", ".join(f"{seconds:.3f}" for seconds in switches)
                + " s"
            )
            assert len(switches) == REPLICAS
            assert max(switches) < SWITCH_WITHIN_S

            # The tokens served before the switch are served after it: nothing refetched on the switch.
            after = {address: await served_token(address, "oslo") for address in addresses}
            assert after == before
            kids_then = Counter(cluster.sts.stats()["tokens_by_kid"])
            # Each replica's next fetch (a tenant nobody asked for yet) is a new token, and not one token
            # request is signed by the old key any more.
            switched_at = committed.timestamp()
            for address, tenant in zip(addresses, ["bergen", "tromso", "bodo"], strict=True):
                assert issued_at(await served_token(address, tenant)) >= int(switched_at) - 1
            kids_now = Counter(cluster.sts.stats()["tokens_by_kid"])
            new_kids = [kid for kid in kids_now if kid != old_kid]
            assert len(new_kids) == 1
            assert kids_now[old_kid] == kids_then[old_kid]
            assert kids_now[new_kids[0]] >= kids_then[new_kids[0]] + REPLICAS
            await until(lambda: 1 not in failing(), "the failing gauge back to 0")
            listed = await asyncio.to_thread(keys_list, addresses[0])
            assert [(key["kid"], key["location"], key["current"]) for key in listed] == [
                (new_kids[0], "store", True)
            ]
            assert listed[0]["expires"] is not None  # Selvbetjening's expiration of the new key
            lines.append(f"keys list: {listed}")
            lines.append(
                f"after the switch: {REPLICAS} fresh fetches, none signed by the old key (token requests by "
                f"key: old {kids_now[old_kid]}, new {kids_now[new_kids[0]]}); failing gauge 0"
            )
            await asyncio.sleep(2)  # the load goes on across the switch
        finally:
            stop.set()
        return await loading, lines

    outcomes, lines = asyncio.run(scenario())
    listed = cluster.sts.stats()["selvbetjening"]
    for line in lines:
        print(line)
    failed = sum(count for outcome, count in outcomes.items() if outcome != "OK")
    print(
        f"Selvbetjening: {listed['registrations']} registration(s), {listed['refused']} refused; "
        f"load on {REPLICAS} replicas: {outcomes['OK']} calls served, {failed} failed"
    )
    assert listed["registrations"] == 1
    assert failed == 0
    assert outcomes["OK"] > 0
    # The secret scan: the new private key, opened from Redis with the store key, is in no log, and Redis
    # holds it only sealed.
    private_d, raw = asyncio.run(new_private_key(cluster))
    for replica in cluster.replicas:
        log = replica.log.read_text()
        assert private_d not in log
        assert '"d"' not in log
        assert "Traceback" not in log
    assert private_d.encode() not in raw
    assert "failed at register" in "".join(replica.log.read_text() for replica in cluster.replicas)
