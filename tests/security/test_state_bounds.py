"""Issue 7 point 5: state does not grow with what callers send.

A broker on a real Redis, in front of the dev authority, is driven through every RPC, then through 500
random session ids and 500 random login states. Every key in Redis must have a TTL (the fixed set of keys
without one is empty), the random ids and states must not write to Redis at all, and the broker's
in-process maps keyed by callers' input must stay bounded.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis.asyncio as aioredis

import broker.app
from broker.app import Broker
from broker.config import BrokerConfig, StoreSettings
from broker.model import PendingLogin
from broker.store.memory import MAX_PENDING_LOGINS, MemorySessionStore
from broker.store.redis import PREFIX
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import running_broker
from tests.fixtures.login import log_in
from tests.fixtures.redis_server import RunningRedis, start_redis
from tests.fixtures.sessions import REDIRECT_URI, WebClient, login_config, sts_for_logins
from tests.fixtures.sts import RunningSts

# Keys the broker may keep without a TTL. Empty: every key it writes expires (README, "Redis keys").
FIXED_KEYS: frozenset[str] = frozenset()
RANDOM_IDS = 500


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSts, WebClient, RunningRedis]]:
    client = WebClient()
    workdir = tmp_path_factory.mktemp("bounds")
    redis = start_redis(workdir / "redis")
    try:
        with sts_for_logins("devauthority", workdir / "sts", client) as running:
            yield running, client, redis
    finally:
        redis.stop()


@asynccontextmanager
async def broker_on(
    config: BrokerConfig, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, Broker]]:
    """A real broker server; the composition root's result is kept so the test can weigh its maps."""
    built: list[Broker] = []
    build = broker.app.build_broker

    def keep(*args: object, **kwargs: object) -> Broker:
        made = build(*args, **kwargs)  # type: ignore[arg-type]
        built.append(made)
        return made

    monkeypatch.setattr(broker.app, "build_broker", keep)
    async with running_broker(config) as address:
        yield address, built[0]


async def writes(client: aioredis.Redis) -> int:
    """Changes to the data set since start (Redis runs without saving, so this only grows)."""
    return int((await client.info("persistence"))["rdb_changes_since_last_save"])


async def code(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return "OK"


async def every_rpc(stub: pb_grpc.TokenBrokerServiceStub) -> None:
    """Each RPC once, the way a front end and a service would use them."""
    await stub.GetToken(pb.GetTokenRequest(tenant="oslo", target="sfm"), timeout=30)
    url = "https://sfm.test.nhn.no/api/patients"
    await stub.AuthorizeRequest(
        pb.AuthorizeRequestRequest(tenant="oslo", target="sfm", http_method="GET", url=url), timeout=30
    )
    stream = stub.WatchToken(pb.WatchTokenRequest(tenant="oslo", target="sfm"), timeout=30)
    async for _ in stream:
        break
    stream.cancel()
    started = await stub.StartLogin(pb.StartLoginRequest(tenant="oslo", targets=["sfm", "pps"]), timeout=30)
    await stub.StartLogin(pb.StartLoginRequest(tenant="oslo", targets=["sfm"]), timeout=30)  # never completed
    callback = await asyncio.to_thread(log_in, started.authorization_url, redirect_uri=REDIRECT_URI)
    assert callback.iss is not None
    done = await stub.CompleteLogin(
        pb.CompleteLoginRequest(state=callback.state, code=callback.code, issuer=callback.iss), timeout=30
    )
    session_id = done.session.session_id
    pps = await stub.GetSessionToken(
        pb.GetSessionTokenRequest(session_id=session_id, target="pps"), timeout=30
    )
    await stub.AuthorizeSessionRequest(
        pb.AuthorizeSessionRequestRequest(
            session_id=session_id, target="pps", http_method="GET", url="https://pps.test.nhn.no/v2/results"
        ),
        timeout=30,
    )
    await stub.ExchangeToken(
        pb.ExchangeTokenRequest(tenant="oslo", target="sfm", subject_token=pps.access_token.token), timeout=30
    )
    # A second session that stays open, so its keys are in the scan too.
    second = await stub.StartLogin(pb.StartLoginRequest(tenant="oslo", targets=["sfm"]), timeout=30)
    callback = await asyncio.to_thread(log_in, second.authorization_url, redirect_uri=REDIRECT_URI)
    assert callback.iss is not None
    kept = await stub.CompleteLogin(
        pb.CompleteLoginRequest(state=callback.state, code=callback.code, issuer=callback.iss), timeout=30
    )
    await stub.GetSessionToken(pb.GetSessionTokenRequest(session_id=kept.session.session_id, target="sfm"))
    await stub.EndSession(pb.EndSessionRequest(session_id=session_id), timeout=30)


async def random_ids(stub: pb_grpc.TokenBrokerServiceStub) -> dict[str, int]:
    """RANDOM_IDS unknown session ids through each session RPC, and as many unknown login states."""
    answers: dict[str, int] = {}

    async def one(index: int) -> None:
        session_id = secrets.token_urlsafe(32)
        calls = [
            stub.GetSessionToken(pb.GetSessionTokenRequest(session_id=session_id, target="sfm"), timeout=30),
            stub.AuthorizeSessionRequest(
                pb.AuthorizeSessionRequestRequest(
                    session_id=session_id, target="sfm", http_method="GET", url="https://sfm.test.nhn.no/a"
                ),
                timeout=30,
            ),
            stub.EndSession(pb.EndSessionRequest(session_id=session_id), timeout=30),
            stub.CompleteLogin(
                pb.CompleteLoginRequest(state=secrets.token_urlsafe(32), code=f"c{index}", issuer="x"),
                timeout=30,
            ),
        ]
        for answer in await asyncio.gather(*(code(call) for call in calls)):
            answers[answer] = answers.get(answer, 0) + 1

    for batch in range(0, RANDOM_IDS, 50):
        await asyncio.gather(*(one(index) for index in range(batch, batch + 50)))
    return answers


def kind(key: str) -> str:
    """A key's kind: the part after its hash tag (`tok`, `fence`, `session`, ...) or `login`, `nonce`."""
    rest = key.removeprefix(PREFIX)
    return rest.split(":", 1)[0] if not rest.startswith("{") else rest.rsplit("}:", 1)[1].split(":", 1)[0]


async def scan(client: aioredis.Redis) -> tuple[int, int, list[str], set[str]]:
    """(keys scanned, keys with a TTL, keys without one, the kinds of keys seen)."""
    scanned, with_ttl, without, kinds = 0, 0, [], set()
    async for key in client.scan_iter(match=PREFIX + "*", count=1000):
        scanned += 1
        kinds.add(kind(key.decode()))
        if await client.pttl(key) > 0:
            with_ttl += 1
        else:
            without.append(key.decode())
    return scanned, with_ttl, without, kinds


async def test_every_redis_key_expires_and_unknown_ids_write_nothing(
    stack: tuple[RunningSts, WebClient, RunningRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    running, client, redis = stack
    store = StoreSettings(kind="redis", url=redis.url, encryption_key=secrets.token_bytes(32))
    config = login_config(running.issuer, client, store)
    redis_client = aioredis.Redis.from_url(redis.url)
    try:
        async with (
            broker_on(config, monkeypatch) as (address, built),
            grpc.aio.insecure_channel(address) as channel,
        ):
            stub = pb_grpc.TokenBrokerServiceStub(channel)
            await every_rpc(stub)
            keys_before, writes_before = await redis_client.dbsize(), await writes(redis_client)
            answers = await random_ids(stub)
            keys_after, writes_after = await redis_client.dbsize(), await writes(redis_client)
            tokens = built.users.tokens
            locks, memory = len(tokens._locks), len(tokens._memory)
        scanned, with_ttl, without, kinds = await scan(redis_client)
    finally:
        await redis_client.aclose()
    fixed = [key for key in without if key in FIXED_KEYS]
    print(
        f"\nRedis keys: {scanned} scanned ({', '.join(sorted(kinds))}), {with_ttl} with TTL, "
        f"{len(fixed)} fixed ({', '.join(fixed) or 'none'}); "
        f"random session ids: {writes_after - writes_before} writes "
        f"({RANDOM_IDS} ids x 3 session RPCs + {RANDOM_IDS} login states, answers {answers}); "
        f"keys {keys_before} -> {keys_after}; in-process: {locks} session locks, {memory} session tokens"
    )
    assert {"tok", "fence", "session", "login", "nonce"} <= kinds  # every kind of key the RPCs write
    assert without == fixed, f"keys without a TTL: {without}"
    assert writes_after == writes_before
    assert keys_after == keys_before
    assert "OK" not in answers
    assert locks == 0
    assert memory <= 2  # the open session's tokens, nothing for the random ids


async def test_memory_session_store_sweeps_and_caps_pending_logins() -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    store = MemorySessionStore(clock=lambda: now[0])
    login = PendingLogin("oslo", ("sfm",), REDIRECT_URI, "v" * 43, "n", now[0] + timedelta(minutes=10))
    for index in range(MAX_PENDING_LOGINS + 5_000):
        await store.put_pending(f"state-{index}", login, timedelta(minutes=10))
    capped = store.sizes()["pending"]
    oldest_gone = await store.take_pending("state-0") is None
    newest_kept = await store.take_pending(f"state-{MAX_PENDING_LOGINS + 4_999}") is not None
    now[0] += timedelta(minutes=11)
    for index in range(2_000):  # later logins sweep the expired ones as they arrive
        await store.put_pending(f"later-{index}", login, timedelta(minutes=10))
    swept = store.sizes()["pending"]
    print(
        f"\nmemory store: {MAX_PENDING_LOGINS + 5_000} pending logins put, {capped} kept (cap "
        f"{MAX_PENDING_LOGINS}); after they expired and 2000 more arrived: {swept} held"
    )
    assert capped == MAX_PENDING_LOGINS
    assert oldest_gone
    assert newest_kept
    assert swept <= 2_000
