"""ExchangeToken and point 4: only a real STS request is charged; the impossible costs no exchange."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from broker.errors import InvalidRequestError, RateLimitedError
from broker.model import AccessToken, Client, Target, Tenancy, Tenant, TokenType
from broker.protocol import keys
from broker.sessions.exchange import TokenExchanger
from broker.tokens.policy import FreshnessPolicy
from broker.tokens.routes import RouteTable
from tests.unit.tokens.test_engine import Clock


class ExchangeEndpoint:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls = 0

    async def exchange(
        self, client: Client, *, subject_token: str, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> AccessToken:
        self.calls += 1
        await asyncio.sleep(0.01)
        now = self.clock()
        return AccessToken(f"x-{self.calls}", TokenType.DPOP, now, now + timedelta(seconds=300))


def exchanger() -> tuple[TokenExchanger, ExchangeEndpoint]:
    key = keys.generate_signing_key("ES256")
    client = Client("c", "client-id", "https://sts.test", Tenancy.MULTI, key, key)
    routes = RouteTable(
        {"c": client},
        {"sfm": Target("sfm", ("s",), "e-helse:sfm.api")},
        {"a": Tenant("a", "c", ("sfm",), orgnr_parent="111111111")},
    )
    clock = Clock()
    endpoint = ExchangeEndpoint(clock)
    policy = FreshnessPolicy(expiry_skew=timedelta(seconds=30))
    return TokenExchanger(routes, endpoint, clock, policy=policy), endpoint  # type: ignore[arg-type]


async def test_only_requests_that_reach_the_sts_are_charged() -> None:
    tokens, endpoint = exchanger()
    charges: list[str] = []
    concurrent = [
        tokens.exchange("a", "sfm", "subject-1", charge=lambda: charges.append("c")) for _ in range(20)
    ]
    await asyncio.gather(*concurrent)
    for _ in range(20):  # cached
        await tokens.exchange("a", "sfm", "subject-1", charge=lambda: charges.append("c"))
    print(f"\n40 exchanges of one subject token: {endpoint.calls} STS request(s), {len(charges)} charge(s)")
    assert endpoint.calls == len(charges) == 1


async def test_a_caller_over_its_rate_reaches_no_sts() -> None:
    tokens, endpoint = exchanger()

    def refuse() -> None:
        raise RateLimitedError("over", retry_after=timedelta(seconds=1))

    with pytest.raises(RateLimitedError):
        await tokens.exchange("a", "sfm", "subject-1", charge=refuse)
    assert endpoint.calls == 0


async def test_an_impossible_lifetime_costs_one_learning_exchange_then_none() -> None:
    tokens, endpoint = exchanger()
    for n in range(50):
        with pytest.raises(InvalidRequestError) as caught:
            await tokens.exchange("a", "sfm", f"subject-{n}", timedelta(seconds=280))
        assert caught.value.field == "min_remaining_lifetime"
    print(f"\n50 exchanges asking 280 s of 300 s tokens: {endpoint.calls} STS request(s)")
    assert endpoint.calls == 1
