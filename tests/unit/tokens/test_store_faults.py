"""The engine and a shared store that fails part of the time: no unfenced write, one log line each way."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest

from broker.errors import StoreUnavailableError
from broker.model import AccessToken
from broker.store.redis import LeaseAttempt
from broker.tokens.ports import Lease
from broker.tokens.routes import RouteTable
from broker.tokens.store_health import StoreHealth
from tests.unit.tokens.test_engine import engine_with, routes  # noqa: F401 - the routes fixture


class LeaseFailsStore:
    """Reads and plain writes answer, but taking a lease fails, as on a stale connection after a restart."""

    def __init__(self) -> None:
        self.plain_writes = 0
        self.fenced_writes = 0

    async def get(self, key: str) -> AccessToken | None:
        return None

    async def put(self, key: str, token: AccessToken, ttl: timedelta) -> None:
        self.plain_writes += 1

    async def try_lease(self, key: str, ttl: timedelta) -> LeaseAttempt:
        raise StoreUnavailableError("redis lease failed: ConnectionError")

    async def renew(self, lease: Lease, ttl: timedelta) -> bool:
        return True

    async def put_if_holder(self, lease: Lease, token: AccessToken, ttl: timedelta) -> bool:
        self.fenced_writes += 1
        return True

    async def release(self, lease: Lease) -> None:
        return None

    async def lease_held(self, key: str) -> bool:
        return False

    def on_renewal(self, callback: Callable[[str, AccessToken | None], None]) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_a_failed_lease_call_serves_the_caller_but_stores_nothing(routes: RouteTable) -> None:  # noqa: F811
    store = LeaseFailsStore()
    engine, source, _ = engine_with(routes, store=store, coordinator=store)
    token = await engine.get_token("a", "sfm")
    print(
        f"\nlease call failed: token served ({source.calls} STS request), "
        f"{store.plain_writes} unfenced writes, {store.fenced_writes} fenced"
    )
    assert token.value == "token-1"
    assert store.plain_writes == 0
    assert store.fenced_writes == 0
    await engine.close()


def test_store_health_logs_once_when_it_goes_and_once_when_it_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    health = StoreHealth(settle_s=10, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="broker.tokens.engine")
    for _ in range(5):
        health.failed("redis read failed: ConnectionError")
    now[0] = 6
    health.answered()
    now[0] = 9  # a stale connection fails right after the return: not a new outage
    health.failed("redis lease failed: ConnectionError")
    health.answered()
    went_once = health.down
    now[0] = 30  # much later: a real new outage
    health.failed("redis read failed: ConnectionError")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    print(
        f"\nstore health: {len(warnings)} outage lines, {len(infos)} return lines "
        "for two outages and a failure right after the return"
    )
    assert not went_once
    assert len(warnings) == 2
    assert len(infos) == 1
    assert health.down
