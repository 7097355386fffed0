"""The engine's cache rules, with a hand-written token source and a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.errors import (
    IdpUnavailableError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    StoreUnavailableError,
)
from broker.model import AccessToken, Client, Target, Tenancy, Tenant, TokenType
from broker.protocol import keys
from broker.tokens.engine import TokenEngine
from broker.tokens.policy import Backoff, FreshnessPolicy
from broker.tokens.routes import RouteTable

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class CountingSource:
    """Issues numbered tokens; can be told to fail or to wait for a gate."""

    def __init__(self, clock: Clock, lifetime: timedelta = timedelta(seconds=300)) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def fetch_client_credentials(
        self, client: Client, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> AccessToken:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        now = self.clock()
        return AccessToken(f"token-{self.calls}", TokenType.DPOP, now, now + self.lifetime, target.scopes)


class BrokenStore:
    def __init__(self) -> None:
        self.reads = 0

    async def get(self, key: str) -> AccessToken | None:
        self.reads += 1
        raise StoreUnavailableError("redis read failed: ConnectionError")

    async def put(self, key: str, token: AccessToken, ttl: timedelta) -> None:
        raise StoreUnavailableError("redis write failed: ConnectionError")

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def routes() -> RouteTable:
    key = keys.generate_signing_key("ES256")
    client = Client("c", "client-id", "https://sts.test", Tenancy.MULTI, key, key)
    targets = {
        "sfm": Target("sfm", ("e-helse:sfm.api/sfm.api2",), "e-helse:sfm.api"),
        "pps": Target("pps", ("p",)),
    }
    tenants = {
        "a": Tenant("a", "c", ("sfm",), orgnr_parent="111111111"),
        "b": Tenant("b", "c", ("sfm",), orgnr_parent="222222222"),
    }
    return RouteTable({"c": client}, targets, tenants)


def engine_with(
    routes: RouteTable, expiry_skew: timedelta = timedelta(seconds=30), **kwargs: Any
) -> tuple[TokenEngine, CountingSource, Clock]:
    clock = Clock()
    source = CountingSource(clock)
    policy = FreshnessPolicy(refresh_fraction=0.5, jitter_fraction=0, expiry_skew=expiry_skew)
    backoff = Backoff(initial=timedelta(milliseconds=5), maximum=timedelta(milliseconds=20))
    engine = TokenEngine(routes, source, clock=clock, policy=policy, backoff=backoff, **kwargs)
    return engine, source, clock


async def settle() -> None:
    """Lets background tasks run (they use the fake clock, and sleep only for back-off)."""
    for _ in range(5):
        await asyncio.sleep(0.03)


async def test_cached_token_is_served_when_still_fresh(routes: RouteTable) -> None:
    engine, source, clock = engine_with(routes)
    first = await engine.get_token("a", "sfm")
    clock.now += timedelta(seconds=140)
    assert await engine.get_token("a", "sfm") is first
    await settle()
    assert source.calls == 1


async def test_stale_token_is_served_and_refreshed_once_in_the_background(routes: RouteTable) -> None:
    engine, source, clock = engine_with(routes)
    first = await engine.get_token("a", "sfm")
    clock.now += timedelta(seconds=160)  # past half of the 300 s lifetime
    served = [await engine.get_token("a", "sfm") for _ in range(20)]
    assert all(token is first for token in served)
    await settle()
    assert source.calls == 2
    assert (await engine.get_token("a", "sfm")).value == "token-2"


async def test_failing_refresh_does_not_disturb_callers_while_the_token_is_valid(routes: RouteTable) -> None:
    engine, source, clock = engine_with(routes)
    first = await engine.get_token("a", "sfm")
    source.fail = IdpUnavailableError("down", issuer="https://sts.test")
    clock.now += timedelta(seconds=200)
    assert await engine.get_token("a", "sfm") is first
    await settle()
    assert source.calls > 2  # retried with back-off
    assert await engine.get_token("a", "sfm") is first
    source.fail = None
    await settle()
    assert (await engine.get_token("a", "sfm")).value.startswith("token-")
    assert (await engine.get_token("a", "sfm")) is not first


async def test_token_is_never_served_past_expiry_minus_skew_when_the_sts_is_down(routes: RouteTable) -> None:
    engine, source, clock = engine_with(routes)
    first = await engine.get_token("a", "sfm")
    source.fail = IdpUnavailableError("down", issuer="https://sts.test")
    clock.now = first.expires_at - timedelta(seconds=30)
    with pytest.raises(IdpUnavailableError):
        await engine.get_token("a", "sfm")


async def test_token_is_replaced_when_inside_the_expiry_skew(routes: RouteTable) -> None:
    engine, source, clock = engine_with(routes, expiry_skew=timedelta(seconds=30))
    first = await engine.get_token("a", "sfm")
    clock.now = first.expires_at - timedelta(seconds=29)
    second = await engine.get_token("a", "sfm")
    assert second.value != first.value
    assert source.calls == 2


async def test_tenants_never_share_a_token_when_their_orgs_differ(routes: RouteTable) -> None:
    engine, _, _ = engine_with(routes)
    assert (await engine.get_token("a", "sfm")).value != (await engine.get_token("b", "sfm")).value
    assert routes.resolve("a", "sfm").cache_key != routes.resolve("b", "sfm").cache_key


async def test_min_remaining_lifetime_forces_a_new_token_when_the_cached_one_is_too_short(
    routes: RouteTable,
) -> None:
    engine, source, clock = engine_with(routes)
    await engine.get_token("a", "sfm")
    clock.now += timedelta(seconds=140)
    token = await engine.get_token("a", "sfm", timedelta(seconds=150))
    assert token.remaining(clock.now) >= timedelta(seconds=150)
    assert source.calls == 2


async def test_min_remaining_lifetime_beyond_any_token_is_an_invalid_argument(routes: RouteTable) -> None:
    engine, _, _ = engine_with(routes)
    with pytest.raises(InvalidRequestError) as caught:
        await engine.get_token("a", "sfm", timedelta(hours=2))
    assert caught.value.field == "min_remaining_lifetime"


async def test_concurrent_misses_share_one_fetch(routes: RouteTable) -> None:
    engine, source, _ = engine_with(routes)
    source.gate = asyncio.Event()
    callers = [asyncio.create_task(engine.get_token("a", "sfm")) for _ in range(50)]
    await asyncio.sleep(0)
    source.gate.set()
    tokens = await asyncio.gather(*callers)
    assert source.calls == 1
    assert {token.value for token in tokens} == {"token-1"}


async def test_failure_is_not_cached_when_the_sts_fails(routes: RouteTable) -> None:
    engine, source, _ = engine_with(routes)
    source.fail = IdpUnavailableError("down", issuer="https://sts.test")
    with pytest.raises(IdpUnavailableError):
        await engine.get_token("a", "sfm")
    source.fail = None
    assert (await engine.get_token("a", "sfm")).value == "token-2"


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(routes: RouteTable) -> None:
    engine, source, _ = engine_with(routes)
    source.gate = asyncio.Event()
    impatient = asyncio.create_task(engine.get_token("a", "sfm"))
    patient = asyncio.create_task(engine.get_token("a", "sfm"))
    await asyncio.sleep(0)
    impatient.cancel()
    source.gate.set()
    assert (await patient).value == "token-1"
    assert source.calls == 1


async def test_broker_goes_on_when_the_store_fails(routes: RouteTable) -> None:
    store = BrokenStore()
    engine, source, _ = engine_with(routes, store=store)
    assert (await engine.get_token("a", "sfm")).value == "token-1"
    assert store.reads == 1
    assert (await engine.get_token("a", "sfm")).value == "token-1"  # from process memory
    assert source.calls == 1


async def test_unknown_names_give_not_found_and_unlisted_targets_permission_denied(
    routes: RouteTable,
) -> None:
    engine, _, _ = engine_with(routes)
    with pytest.raises(NotFoundError) as tenant:
        await engine.get_token("nobody", "sfm")
    assert tenant.value.reason == "TENANT_NOT_FOUND"
    with pytest.raises(NotFoundError) as target:
        await engine.get_token("a", "nothing")
    assert target.value.reason == "TARGET_NOT_FOUND"
    with pytest.raises(PermissionDeniedError) as denied:
        await engine.get_token("a", "pps")
    assert denied.value.reason == "TARGET_NOT_ALLOWED"


async def test_short_lived_token_is_served_when_skew_exceeds_half_its_life(routes: RouteTable) -> None:
    engine, source, clock = engine_with(routes, expiry_skew=timedelta(seconds=30))
    source.lifetime = timedelta(seconds=20)
    first = await engine.get_token("a", "sfm")
    clock.now += timedelta(seconds=9)
    assert await engine.get_token("a", "sfm") is first
    clock.now += timedelta(seconds=2)  # 11 s of 20: past expiry minus half the lifetime
    assert (await engine.get_token("a", "sfm")).value == "token-2"


async def test_a_watcher_gets_a_renewal_installed_while_it_still_held_the_last_token(
    routes: RouteTable,
) -> None:
    engine, source, clock = engine_with(routes)
    watch = engine.watch(engine.routes.resolve("a", "sfm"))
    first = await anext(watch)
    # The renewal lands while the watcher's caller is still busy with the first token, before the watcher
    # waits again: no wake-up event exists to be set, so the watcher must look before it waits.
    clock.now += timedelta(seconds=160)
    await engine.get_token("a", "sfm")  # stale: served, and refreshed in the background
    await settle()
    second = await asyncio.wait_for(anext(watch), timeout=2)
    await watch.aclose()
    assert (first.value, second.value, source.calls) == ("token-1", "token-2", 2)
