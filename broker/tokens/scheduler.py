"""Keeps warm routes fetched and fresh without waiting for callers.

At start the warm routes are spread over a window (at least as long as the request budget needs for them),
so thousands of tenants do not hit HelseID in the same second. After each new token a route is due again at
its `refresh_at`, which carries the policy's jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from broker.tokens.engine import Entry, TokenEngine
from broker.tokens.routes import Route

_log = logging.getLogger(__name__)


class RefreshScheduler:
    """Refreshes kept routes when they are due; `keep`/`release` add routes while a watcher needs them."""

    def __init__(
        self,
        engine: TokenEngine,
        *,
        startup_spread: timedelta = timedelta(seconds=10),
        retry_after: timedelta = timedelta(seconds=15),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._engine = engine
        self._startup_spread = startup_spread
        self._retry_after = retry_after
        self._clock = clock or engine.clock
        self._due: list[tuple[datetime, str]] = []
        self._kept: dict[str, int] = {}
        # The instant `keep` last queued per key: a key kept and released over and over (a watcher that comes
        # and goes) queues its token's instant once, not once per keep. Keys come from the route table only.
        self._kept_at: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        self.started = 0
        engine.on_installed = self._on_installed

    def start_warm(
        self, routes: list[Route], rate: float, *, spread_at_least: timedelta | None = None
    ) -> None:
        """Schedules the first fetch of each warm route, spread so the budget is never the bottleneck."""
        at_least = self._startup_spread if spread_at_least is None else spread_at_least
        spread = max(at_least.total_seconds(), len(routes) / rate)
        now = self._clock()
        for route in routes:
            self._kept[route.cache_key] = self._kept.get(route.cache_key, 0) + 1
            # Each replica picks its own instant: the first fetches the key, the others find it in the store
            # later at the cost of one read (the budget is spent only by requests that reach the STS).
            offset = timedelta(seconds=random.uniform(0, spread))  # noqa: S311 - spreading, not secrecy
            heapq.heappush(self._due, (now + offset, route.cache_key))
        self._wake.set()

    def rewarm(self, before: list[Route], after: list[Route], rate: float) -> None:
        """After a reload: warms the routes newly asked to be warm (a new tenant's, or a new key) at once,
        spread only as far as the budget needs, and stops keeping those no longer asked."""
        before_keys = {route.cache_key for route in before}
        after_keys = {route.cache_key for route in after}
        for route in before:
            if route.cache_key not in after_keys:
                self.release(route)
        self.start_warm(
            [route for route in after if route.cache_key not in before_keys],
            rate,
            spread_at_least=timedelta(0),
        )

    def keep(self, route: Route) -> None:
        """Keeps the route fresh until as many `release`s: counted, so a key is scheduled once however many
        keep it."""
        key = route.cache_key
        count = self._kept.get(key, 0)
        self._kept[key] = count + 1
        if count:
            return  # already kept: scheduled when it was first kept, and again by each new token
        entry = self._engine.cached(route)
        if entry is None:
            return  # the keeper's own first call fetches it, and each installed token is scheduled
        if self._kept_at.get(key) == entry.refresh_at and entry.refresh_at > self._clock():
            return  # an earlier keep of this token queued this very instant, still ahead: once is enough
        self._kept_at[key] = entry.refresh_at
        self._push(entry.refresh_at, key)

    def release(self, route: Route) -> None:
        key = route.cache_key
        count = self._kept.get(key, 0) - 1
        if count > 0:
            self._kept[key] = count
            return
        self._kept.pop(key, None)
        kept_at = self._kept_at.get(key)
        if kept_at is not None and kept_at <= self._clock():
            del self._kept_at[key]  # its instant has come and gone: no entry of that keep is queued

    def _on_installed(self, route: Route, entry: Entry) -> None:
        if route.cache_key in self._kept:
            self._push(entry.refresh_at, route.cache_key)

    def _push(self, at: datetime, key: str) -> None:
        heapq.heappush(self._due, (at, key))
        if self._due[0][1] == key:
            self._wake.set()

    async def run(self) -> None:
        while True:
            if not self._due:
                await self._wait(None)
                continue
            at, key = self._due[0]
            delay = (at - self._clock()).total_seconds()
            if delay > 0:
                await self._wait(delay)
                continue
            heapq.heappop(self._due)
            route = self._engine.routes.by_key(key)
            if route is None or key not in self._kept or not self._is_due(route):
                continue  # superseded by a newer token, or no longer kept
            self.started += 1
            self._engine.refresh_soon(route)
            # Looked at again later in case this refresh fails; a new token makes the look a no-op.
            self._push(self._clock() + self._retry_after, key)

    def _is_due(self, route: Route) -> bool:
        entry = self._engine.cached(route)
        return entry is None or self._clock() >= entry.refresh_at

    async def _wait(self, seconds: float | None) -> None:
        # Cleared after waking, not before waiting: a wake-up that comes while the loop is busy must not be
        # lost, or an earlier-due route would wait for the later one's timer.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
