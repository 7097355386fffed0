"""The engine's min_remaining rules: the impossible is refused from the route's known lifetime, the possible
costs one shared fetch. Tokens live 300 s and the skew is 30 s, so a fresh token can give 255 s (270 s minus a
margin of 15 s for the STS round trip)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from broker.errors import InvalidRequestError
from broker.model import AccessToken, Client, Target, Tenancy, Tenant, TokenType
from broker.protocol import keys
from broker.tokens.engine import TokenEngine
from broker.tokens.policy import FreshnessPolicy
from broker.tokens.reach import reach
from broker.tokens.routes import RouteTable
from tests.unit.tokens.test_engine import START, Clock, CountingSource, engine_with

IMPOSSIBLE = timedelta(seconds=280)  # more than even an instant fresh token has (270 s)
IN_MARGIN = timedelta(seconds=260)  # a fresh token might: never worth a fetch
LONGEST = timedelta(seconds=255)


@pytest.fixture(scope="module")
def routes() -> RouteTable:
    key = keys.generate_signing_key("ES256")
    client = Client("c", "client-id", "https://sts.test", Tenancy.MULTI, key, key)
    targets = {"sfm": Target("sfm", ("e-helse:sfm.api/sfm.api2",), "e-helse:sfm.api")}
    return RouteTable({"c": client}, targets, {"a": Tenant("a", "c", ("sfm",), orgnr_parent="111111111")})


async def refused(engine: TokenEngine, min_remaining: timedelta) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        await engine.get_token("a", "sfm", min_remaining)
    return caught.value


def test_reach_is_the_lifetime_minus_skew_minus_a_twentieth() -> None:
    policy = FreshnessPolicy(expiry_skew=timedelta(seconds=30))
    assert reach(policy, timedelta(seconds=300)) == LONGEST
    assert reach(policy, timedelta(seconds=20)) == timedelta(seconds=9)  # skew capped at half the life
    assert reach(policy, timedelta(0)) == timedelta(0)


async def test_100_impossible_requests_cost_one_learning_fetch_and_name_the_field(routes: RouteTable) -> None:
    engine, source, _ = engine_with(routes)
    errors = [await refused(engine, IMPOSSIBLE) for _ in range(100)]
    print(f"\n100 GetToken with min_remaining {IMPOSSIBLE.seconds} s: {source.calls} STS request(s)")
    assert source.calls == 1
    assert {error.field for error in errors} == {"min_remaining_lifetime"}
    assert {error.reason for error in errors} == {"LIFETIME_UNAVAILABLE"}
    assert "at most 255 s" in errors[0].description


async def test_100_concurrent_impossible_requests_on_a_cold_route_share_the_one_learning_fetch(
    routes: RouteTable,
) -> None:
    engine, source, _ = engine_with(routes)
    source.gate = asyncio.Event()
    calls = [asyncio.create_task(engine.get_token("a", "sfm", IMPOSSIBLE)) for _ in range(100)]
    await asyncio.sleep(0)
    source.gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    print(f"\n100 concurrent impossible requests on a cold route: {source.calls} STS request(s)")
    assert source.calls == 1
    assert all(isinstance(result, InvalidRequestError) for result in results)


async def test_a_known_route_refuses_the_impossible_without_any_fetch(routes: RouteTable) -> None:
    engine, source, clock = engine_with(routes)
    await engine.get_token("a", "sfm")
    clock.now += timedelta(seconds=200)  # stale and nearly gone: nothing cached could meet it either
    for _ in range(100):
        await refused(engine, IMPOSSIBLE)
    assert source.calls == 1


async def test_a_request_inside_the_margin_is_served_from_a_token_at_hand_but_never_fetched_for(
    routes: RouteTable,
) -> None:
    engine, source, clock = engine_with(routes)
    served = await engine.get_token("a", "sfm", IN_MARGIN)  # the learning fetch happens to meet it
    clock.now += timedelta(seconds=5)
    again = await engine.get_token("a", "sfm", IN_MARGIN)  # 265 s left: still met by the cached token
    clock.now += timedelta(seconds=10)
    errors = [await refused(engine, IN_MARGIN) for _ in range(100)]
    print(
        f"\n{IN_MARGIN.seconds} s (inside the margin): 2 served, 100 refused, {source.calls} STS request(s)"
    )
    assert served is again
    assert source.calls == 1
    assert {error.field for error in errors} == {"min_remaining_lifetime"}


async def test_the_longest_possible_request_is_met_by_one_fetch_shared_by_all_callers(
    routes: RouteTable,
) -> None:
    engine, source, clock = engine_with(routes)
    await engine.get_token("a", "sfm")
    clock.now += timedelta(seconds=20)  # the cached token has 250 s of 255 left: too short for 255
    source.gate = asyncio.Event()
    calls = [asyncio.create_task(engine.get_token("a", "sfm", LONGEST)) for _ in range(100)]
    await asyncio.sleep(0)
    source.gate.set()
    tokens = await asyncio.gather(*calls)
    after_concurrent = source.calls
    tokens += [await engine.get_token("a", "sfm", LONGEST) for _ in range(100)]
    print(
        f"\n200 requests for {LONGEST.seconds} s the cached one could not meet: {source.calls - 1} fetch(es)"
    )
    assert after_concurrent == source.calls == 2
    assert {token.value for token in tokens} == {"token-2"}
    assert all(token.remaining(clock.now) > LONGEST for token in tokens)


async def test_demanding_callers_renew_a_route_at_most_once_per_margin(routes: RouteTable) -> None:
    engine, source, clock = engine_with(routes)
    await engine.get_token("a", "sfm")
    for _ in range(600):  # a caller asking for the most it may, every 100 ms for a minute
        clock.now += timedelta(milliseconds=100)
        token = await engine.get_token("a", "sfm", LONGEST)
        assert token.remaining(clock.now) > LONGEST
    print(f"\n600 requests for {LONGEST.seconds} s over 60 s: {source.calls - 1} renewals (margin 15 s)")
    assert source.calls - 1 <= 60 // 15


class SlowSource(CountingSource):
    """An STS that takes longer than the margin: a fresh token arrives with less than the reach left."""

    def __init__(self, clock: Clock, delay: timedelta) -> None:
        super().__init__(clock)
        self.delay = delay

    async def fetch_client_credentials(
        self, client: Client, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> AccessToken:
        token = await super().fetch_client_credentials(client, target, details)
        self.clock.now += self.delay
        return token


async def test_an_sts_slower_than_the_margin_costs_at_most_one_fetch_per_request(routes: RouteTable) -> None:
    engine, _, clock = engine_with(routes)
    slow = SlowSource(clock, timedelta(seconds=20))
    engine._source = slow  # the engine under test, with an STS that answers after 20 s
    for _ in range(5):
        error = await refused(engine, LONGEST)
        assert error.field == "min_remaining_lifetime"
    print(f"\n5 requests for {LONGEST.seconds} s with an STS taking 20 s: {slow.calls} fetches")
    assert slow.calls == 5


class SlowStore:
    """A store holding one old token (100 s of usable life left), read with a pause so callers can join."""

    def __init__(self, token: AccessToken) -> None:
        self.token = token

    async def get(self, key: str) -> AccessToken | None:
        await asyncio.sleep(0.01)
        return self.token

    async def put(self, key: str, token: AccessToken, ttl: timedelta) -> None:
        self.token = token

    async def close(self) -> None:
        return None


async def test_a_caller_that_joined_a_fill_for_less_starts_its_own_and_is_served(routes: RouteTable) -> None:
    old = AccessToken(
        "stored", TokenType.DPOP, START - timedelta(seconds=170), START + timedelta(seconds=130)
    )
    engine, source, clock = engine_with(routes, store=SlowStore(old))
    modest = asyncio.create_task(engine.get_token("a", "sfm"))
    demanding = asyncio.create_task(engine.get_token("a", "sfm", timedelta(seconds=200)))
    assert (await modest).value == "stored"
    token = await demanding
    print(f"\njoined a fill for 0 s, asked for 200 s: served {token.value}, {source.calls} fetch(es)")
    assert token.value == "token-1"
    assert token.remaining(clock.now) > timedelta(seconds=200)
    assert source.calls == 1
