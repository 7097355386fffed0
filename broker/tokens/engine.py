"""The token engine: process memory in front of an optional shared store, then one fetch per missing key.

A cache hit is a dict lookup and a clock read; nothing else runs on that path. On a miss, concurrent callers
for the same key share a single fetch (single-flight). A token is never served later than its expiry minus
the skew, and a failure is never cached.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from broker.errors import InvalidRequestError, StoreUnavailableError
from broker.model import AccessToken
from broker.tokens.ports import TokenSource, TokenStore
from broker.tokens.routes import Route, RouteTable

_log = logging.getLogger(__name__)
_NO_TIME = timedelta(0)


@dataclass(frozen=True, slots=True)
class _Entry:
    token: AccessToken
    # expires_at minus the skew: the last instant the broker hands this token out.
    usable_until: datetime


def _system_clock() -> datetime:
    return datetime.now(UTC)


class TokenEngine:
    """Serves valid tokens per route; see the module docstring for the guarantees."""

    def __init__(
        self,
        routes: RouteTable,
        source: TokenSource,
        store: TokenStore | None = None,
        *,
        expiry_skew: timedelta = timedelta(seconds=30),
        clock: Callable[[], datetime] = _system_clock,
    ) -> None:
        self.routes = routes
        self._source = source
        self._store = store
        self._skew = expiry_skew
        self._clock = clock
        self._memory: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}
        self._store_down = False
        self.clock = clock

    async def get_token(self, tenant: str, target: str, min_remaining: timedelta = _NO_TIME) -> AccessToken:
        return await self.token_for(self.routes.resolve(tenant, target), min_remaining)

    async def token_for(self, route: Route, min_remaining: timedelta = _NO_TIME) -> AccessToken:
        entry = self._memory.get(route.cache_key)
        if entry is not None and self._clock() + min_remaining < entry.usable_until:
            return entry.token
        if min_remaining < _NO_TIME:
            raise InvalidRequestError("min_remaining_lifetime", "must not be negative")
        return await self._load(route, min_remaining)

    async def _load(self, route: Route, min_remaining: timedelta) -> AccessToken:
        # A caller who joined a fetch started for a smaller min_remaining may need one more, forced fetch.
        for skip_store in (False, True):
            entry = await asyncio.shield(self._shared_fill(route, min_remaining, skip_store=skip_store))
            if self._clock() + min_remaining < entry.usable_until:
                return entry.token
        raise InvalidRequestError(
            "min_remaining_lifetime",
            f"longer than the tokens this target gets ({int(entry.token.lifetime.total_seconds())} s)",
        )

    def _shared_fill(
        self, route: Route, min_remaining: timedelta, *, skip_store: bool
    ) -> asyncio.Task[_Entry]:
        key = route.cache_key
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._fill(route, min_remaining, skip_store=skip_store)
            )
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return task

    def _forget(self, key: str, task: asyncio.Task[_Entry]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so that a fetch nobody waits for any more is not reported

    async def _fill(self, route: Route, min_remaining: timedelta, *, skip_store: bool) -> _Entry:
        key = route.cache_key
        if self._store is not None and not skip_store:
            stored = await self._read_store(key)
            if stored is not None:
                entry = self._entry(stored)
                if self._clock() + min_remaining < entry.usable_until:
                    self._memory[key] = entry
                    return entry
        token = await self._source.fetch_client_credentials(route.client, route.target, route.details)
        entry = self._entry(token)
        self._memory[key] = entry
        if self._store is not None:
            await self._write_store(key, entry)
        return entry

    def _entry(self, token: AccessToken) -> _Entry:
        # A skew larger than half the lifetime would make short-lived tokens useless on arrival.
        skew = min(self._skew, token.lifetime / 2)
        return _Entry(token, token.expires_at - skew)

    async def _read_store(self, key: str) -> AccessToken | None:
        assert self._store is not None
        try:
            token = await self._store.get(key)
        except StoreUnavailableError as exc:
            self._note_store_fault(exc)
            return None
        self._note_store_ok()
        return token

    async def _write_store(self, key: str, entry: _Entry) -> None:
        assert self._store is not None
        ttl = entry.usable_until - self._clock()
        if ttl <= _NO_TIME:
            return
        try:
            await self._store.put(key, entry.token, ttl)
        except StoreUnavailableError as exc:
            self._note_store_fault(exc)
        else:
            self._note_store_ok()

    def _note_store_fault(self, exc: StoreUnavailableError) -> None:
        # Logged once per outage, not per call: an outage must not flood the logs.
        if not self._store_down:
            self._store_down = True
            _log.warning("shared store unavailable, serving from process memory and the STS: %s", exc.message)

    def _note_store_ok(self) -> None:
        if self._store_down:
            self._store_down = False
            _log.info("shared store is back")

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        if self._store is not None:
            await self._store.close()
