"""The refresh scheduler: warm routes are fetched spread out, within the budget, and kept fresh."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from broker.model import AccessToken, Client, Target, Tenancy, Tenant, TokenType
from broker.protocol import keys
from broker.store.leases import FencedLease
from broker.store.redis import LeaseAttempt
from broker.tokens.budget import RequestBudget
from broker.tokens.engine import TokenEngine
from broker.tokens.policy import FreshnessPolicy
from broker.tokens.ports import Lease
from broker.tokens.routes import RouteTable
from broker.tokens.scheduler import RefreshScheduler
from tests.unit.tokens.test_engine import Clock, CountingSource


def many_tenants(count: int) -> RouteTable:
    key = keys.generate_signing_key("ES256")
    client = Client("c", "client-id", "https://sts.test", Tenancy.MULTI, key, key)
    target = Target("sfm", ("e-helse:sfm.api/sfm.api2",))
    tenants = {
        f"t{n}": Tenant(f"t{n}", "c", ("sfm",), orgnr_parent=f"{100000000 + n}", warm_targets=("sfm",))
        for n in range(count)
    }
    return RouteTable({"c": client}, {"sfm": target}, tenants)


async def test_budget_limits_the_rate_of_starts() -> None:
    budget = RequestBudget(rate=50, burst=1)
    started = time.monotonic()
    for _ in range(11):
        await budget.take()
    assert time.monotonic() - started >= 0.19  # 10 waits of 1/50 s after the first


async def test_every_waiter_for_the_budget_is_served_and_wakes_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budget = RequestBudget(rate=2000, burst=1)
    real_sleep = asyncio.sleep
    sleeps = 0

    async def counted(delay: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await real_sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", counted)
    served: list[int] = []
    waited: list[bool] = []

    async def one(number: int) -> None:
        waited.append(await budget.take())
        served.append(number)

    await asyncio.gather(*(one(number) for number in range(200)))
    assert sorted(served) == list(range(200))
    # Each caller that had to wait slept exactly once (none woke to look again); on a slow machine the
    # bucket refills a little while the callers start, so not quite all of them wait.
    assert sleeps == sum(waited)
    assert sum(waited) >= 100


async def test_a_cancelled_waiter_gives_its_reservation_back() -> None:
    budget = RequestBudget(rate=1, burst=1)
    assert await budget.take() is False
    waiter = asyncio.create_task(budget.take())
    await asyncio.sleep(0)
    assert budget.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.waiting == 0


async def test_warm_routes_are_all_fetched_within_the_budget_and_refreshed_when_due() -> None:
    routes = many_tenants(40)
    clock = Clock()
    source = CountingSource(clock)
    engine = TokenEngine(
        routes, source, clock=clock, policy=FreshnessPolicy(jitter_fraction=0), budget=RequestBudget(rate=400)
    )
    scheduler = RefreshScheduler(engine, startup_spread=timedelta(0))
    scheduler.start_warm(routes.warm(), rate=400)  # spread over 40 / 400 = 0.1 s of the test's clock
    clock.now += timedelta(seconds=1)
    running = asyncio.create_task(scheduler.run())
    for _ in range(500):  # bounded: at most 5 s on a busy machine
        await asyncio.sleep(0.01)
        if source.calls == 40:
            break
    assert source.calls == 40
    assert all(engine.cached(route) is not None for route in routes.routes())
    clock.now += timedelta(seconds=151)  # past refresh_at of every token (300 s lifetime, 50 %)
    scheduler._wake.set()
    for _ in range(500):  # bounded: at most 5 s on a busy machine
        await asyncio.sleep(0.01)
        if source.calls == 80:
            break
    running.cancel()
    assert source.calls == 80  # each warm route renewed exactly once


async def test_callers_never_wait_for_the_budget_but_background_refreshes_do() -> None:
    routes = many_tenants(3)
    clock = Clock()
    source = CountingSource(clock)
    budget = RequestBudget(rate=1, burst=1)
    engine = TokenEngine(
        routes, source, clock=clock, policy=FreshnessPolicy(jitter_fraction=0), budget=budget
    )
    started = time.monotonic()
    for route in routes.routes():
        await engine.token_for(route)  # three fetches at once, although the budget allows one a second
    assert time.monotonic() - started < 0.5
    assert source.calls == 3
    clock.now += timedelta(seconds=151)
    started = time.monotonic()
    for route in routes.routes():
        engine.refresh_soon(route)
    while source.calls < 4 and time.monotonic() - started < 0.9:  # noqa: ASYNC110 - polls a counter of the hand-written source
        await asyncio.sleep(0.02)
    assert source.calls == 4  # one background refresh at once; the budget (1/s) holds the others back


class NoticeStore:
    """A shared store that always grants the lease and lets the test deliver another replica's notice."""

    def __init__(self) -> None:
        self.notify: Callable[[str, AccessToken | None], None] | None = None

    async def get(self, key: str) -> AccessToken | None:
        return None

    async def put(self, key: str, token: AccessToken, ttl: timedelta) -> None:
        return None

    async def try_lease(self, key: str, ttl: timedelta) -> LeaseAttempt:
        return LeaseAttempt(FencedLease(key, 1), None)

    async def renew(self, lease: Lease, ttl: timedelta) -> bool:
        return True

    async def put_if_holder(self, lease: Lease, token: AccessToken, ttl: timedelta) -> bool:
        return True

    async def release(self, lease: Lease) -> None:
        return None

    async def lease_held(self, key: str) -> bool:
        return False

    def on_renewal(self, callback: Callable[[str, AccessToken | None], None]) -> None:
        self.notify = callback

    async def close(self) -> None:
        return None


async def test_a_renewal_that_another_replica_did_while_this_one_waited_for_the_budget_is_not_fetched() -> (
    None
):
    routes = many_tenants(1)
    clock = Clock()
    source = CountingSource(clock)
    store = NoticeStore()
    budget = RequestBudget(rate=20, burst=1)
    engine = TokenEngine(
        routes, source, store, store, clock=clock, policy=FreshnessPolicy(jitter_fraction=0), budget=budget
    )
    route = routes.routes()[0]
    await engine.token_for(route)
    assert source.calls == 1
    clock.now += timedelta(seconds=200)  # stale: past half of the 300 s lifetime
    assert await budget.take() is False  # the burst is gone: the refresh below waits 1/20 s
    engine.refresh_soon(route)
    for _ in range(10):
        await asyncio.sleep(0)
    assert budget.waiting == 1
    renewed = AccessToken("other-replica", TokenType.DPOP, clock.now, clock.now + timedelta(seconds=300))
    assert store.notify is not None
    store.notify(route.cache_key, renewed)  # its notice arrives while this replica waits
    for _ in range(100):
        await asyncio.sleep(0.01)
        if budget.waiting == 0 and route.cache_key not in engine._refreshing:
            break
    assert source.calls == 1  # not fetched again
    entry = engine.cached(route)
    assert entry is not None
    assert entry.token.value == "other-replica"


async def test_a_waiter_that_may_not_wait_long_goes_within_its_limit_and_the_others_wait_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budget = RequestBudget(rate=1, burst=1)
    real_sleep = asyncio.sleep
    delays: list[float] = []

    async def recorded(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", recorded)
    assert await budget.take() is False
    assert await budget.take(within=0.25) is True  # would wait about 1 s; may wait 0.25
    assert await budget.take() is True  # behind it: its reservation stays, so about 2 s
    assert delays[0] == pytest.approx(0.25)
    assert delays[1] > 1.5


async def test_a_renewal_whose_token_is_about_to_run_out_does_not_wait_for_the_budget() -> None:
    routes = many_tenants(1)
    clock = Clock()
    source = CountingSource(clock)
    budget = RequestBudget(rate=0.01, burst=1)  # one request per 100 s
    engine = TokenEngine(
        routes, source, clock=clock, policy=FreshnessPolicy(jitter_fraction=0), budget=budget
    )
    route = routes.routes()[0]
    await engine.token_for(route)
    assert await budget.take() is False  # the burst is gone: a renewal would wait 100 s
    clock.now += timedelta(seconds=250)  # servable until 270 s (300 s less the 30 s skew): 20 s left
    engine.refresh_soon(route)
    for _ in range(200):
        await asyncio.sleep(0.005)
        if source.calls == 2:
            break
    assert source.calls == 2  # renewed now, not after the 100 s the budget asked
