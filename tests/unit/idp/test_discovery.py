"""The discovery cache: one shared fetch per issuer, through its breaker; an old document serves on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx

from broker.idp.discovery import WELL_KNOWN, DiscoveryCache
from broker.idp.gate import StsGate
from tests.fixtures.hung_sts import hung_sts


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_an_expired_document_is_served_at_once_while_one_fetch_renews_it_from_a_hung_sts() -> None:
    clock = Clock()
    async with hung_sts(answer_discovery=True) as sts, httpx.AsyncClient(timeout=5) as http:
        cache = DiscoveryCache(http, clock, gate=StsGate(), ttl=timedelta(hours=24))
        first = await cache.get(sts.issuer)
        sts.answer_discovery = False  # from now on the STS hangs
        clock.now += timedelta(hours=25)
        started = time.monotonic()
        served = [await cache.get(sts.issuer) for _ in range(50)]
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.05)  # the renewal reaches the STS and hangs there
        fetches = sts.requests[f"GET {WELL_KNOWN}"]
        await cache.close()
    print(f"\n50 reads of an expired document, STS hung: {elapsed * 1000:.1f} ms in all; fetches {fetches}")
    assert all(metadata is first for metadata in served)
    # A read that waited for the hung STS would wait its whole timeout (seconds); these never wait.
    assert elapsed < 2
    assert fetches == 2  # the first load, and one renewal shared by all 50 reads
    assert first.token_endpoint == f"{sts.issuer}/connect/token"


async def test_cold_callers_share_one_fetch_and_it_goes_on_when_they_give_up() -> None:
    async with hung_sts() as sts, httpx.AsyncClient(timeout=1.0) as http:
        gate = StsGate()
        cache = DiscoveryCache(http, Clock(), gate=gate)

        async def impatient() -> None:
            try:
                async with asyncio.timeout(0.2):
                    await cache.get(sts.issuer)
            except TimeoutError:
                return

        await asyncio.gather(*(impatient() for _ in range(20)))
        state_after_callers = gate.breaker(sts.issuer).state
        await asyncio.sleep(1.0)  # the shared fetch runs to the client's own timeout: one outage
        failures = gate.breaker(sts.issuer).failures
        await cache.close()
    print(f"\n20 callers gave up after 0.2 s; connections {sts.connections}; outages counted {failures}")
    assert sts.connections == 1
    assert state_after_callers == "closed"
    assert failures == 1
