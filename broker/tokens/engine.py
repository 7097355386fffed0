"""The token engine: process memory in front of a shared store, then one fetch per key across replicas.

- A cache hit is a dict lookup and a clock read. A stale hit (past `refresh_at`) also starts one background
  refresh; a refresh that fails while the token is valid is retried with back-off and callers never notice.
- A miss waits for one fetch. In-process, concurrent callers share one task; across replicas, the one that
  holds the key's lease fetches while the others wait for its result (pub/sub, with polling as a fallback).
- A token is never served at or after `usable_until` (expiry minus skew), and a failure is never cached.
- A `min_remaining` that no fresh token can meet is refused from the route's known lifetime (reach.py),
  without an STS request; one that a fresh token can meet costs one shared fetch, not one per caller.
- When the shared store fails, the engine goes on with process memory and direct fetches. With a
  coordinator, a token reaches the store only under its lease (fenced), even when the lease call failed
  and the token was fetched without coordination: a write is never unfenced while Redis is reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from broker import audit
from broker.errors import BrokerError, InvalidRequestError, StoreUnavailableError
from broker.model import AccessToken
from broker.telemetry import SOURCE_MEMORY, SOURCE_STORE, SOURCE_STS, Metrics, tracer
from broker.tokens.budget import RequestBudget
from broker.tokens.policy import Backoff, FreshnessPolicy, staggered
from broker.tokens.ports import Coordinator, Lease, TokenSource, TokenStore
from broker.tokens.reach import LifetimeReach
from broker.tokens.routes import Route, RouteTable, is_warm
from broker.tokens.store_health import StoreHealth

_log = logging.getLogger(__name__)
_NO_TIME = timedelta(0)
_POLL = 0.2  # seconds between store reads while another replica fetches (covers a lost pub/sub message)
_UNAVAILABLE: Any = object()  # what a failed store call yields when None would mean an answer


@dataclass(frozen=True, slots=True)
class Entry:
    token: AccessToken
    refresh_at: datetime
    usable_until: datetime
    source: str = SOURCE_STS  # where this process got the token: the STS or the shared store


def _system_clock() -> datetime:
    return datetime.now(UTC)


class TokenEngine:
    """Serves valid tokens per route; see the module docstring for the guarantees."""

    def __init__(
        self,
        routes: RouteTable,
        source: TokenSource,
        store: TokenStore | None = None,
        coordinator: Coordinator | None = None,
        *,
        policy: FreshnessPolicy | None = None,
        backoff: Backoff | None = None,
        lease_ttl: timedelta = timedelta(seconds=10),
        clock: Callable[[], datetime] = _system_clock,
        metrics: Metrics | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        self.routes = routes
        self.clock = clock
        self.metrics = metrics or Metrics()
        self._source = source
        self._store = store
        self._coordinator = coordinator
        self._policy = policy or FreshnessPolicy()
        self._backoff = backoff or Backoff()
        self._lease_ttl = lease_ttl
        self._budget = budget
        # Per route, what a fresh token can give: impossible min_remaining requests cost no STS request.
        self._reach = LifetimeReach(self._policy)
        self._memory: dict[str, Entry] = {}
        self._inflight: dict[str, asyncio.Task[Entry]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._store_health = StoreHealth()
        self._replica = os.urandom(16)  # this process's own renewal delays (policy.staggered)
        self.on_installed: Callable[[Route, Entry], None] | None = None
        if coordinator is not None:
            coordinator.on_renewal(self._on_remote_renewal)

    # --- serving ----------------------------------------------------------------------------------------

    async def get_token(
        self, tenant: str, target: str, min_remaining: timedelta = _NO_TIME, *, rpc: str = "GetToken"
    ) -> AccessToken:
        return await self.token_for(self.routes.resolve(tenant, target), min_remaining, rpc=rpc)

    async def token_for(
        self, route: Route, min_remaining: timedelta = _NO_TIME, *, rpc: str = "GetToken"
    ) -> AccessToken:
        entry = self._memory.get(route.cache_key)
        if entry is not None:
            now = self.clock()
            if now + min_remaining < entry.usable_until:
                if now >= entry.refresh_at:
                    self.refresh_soon(route)
                self.metrics.served(rpc, SOURCE_MEMORY)
                return entry.token
        if min_remaining < _NO_TIME:
            raise InvalidRequestError("min_remaining_lifetime", "must not be negative")
        entry = await self._load(route, min_remaining)
        self.metrics.served(rpc, entry.source)
        return entry.token

    def cached(self, route: Route) -> Entry | None:
        return self._memory.get(route.cache_key)

    async def watch(self, route: Route) -> AsyncIterator[AccessToken]:
        """The current token, then each new one for the route, for as long as the caller iterates."""
        token = await self.token_for(route, rpc="WatchToken")
        yield token
        while True:
            changed = self._changed.setdefault(route.cache_key, asyncio.Event())
            if self.routes.by_key(route.cache_key) is None:
                # A reload removed the route or changed its key: a removed one answers why (resolve raises
                # TENANT_NOT_FOUND, ...); a changed one ends the stream, and the caller watches the new one.
                self._changed.pop(route.cache_key, None)
                self.routes.resolve(route.tenant.name, route.target.name)
                return
            # Look after taking the event, not only after it fires: a token installed while the caller
            # had the last one (before this event existed) set no event, and would wait for the next renewal.
            entry = self._memory.get(route.cache_key)
            if entry is not None and entry.token is not token:
                token = entry.token
                self.metrics.served("WatchToken", SOURCE_MEMORY)
                yield token
                continue
            await changed.wait()

    async def _load(self, route: Route, min_remaining: timedelta) -> Entry:
        key = route.cache_key
        self._reach.refuse_beyond(key, min_remaining)  # known impossible: no STS request
        for _ in range(3):
            joined = key in self._inflight
            entry = await asyncio.shield(self._shared_fill(route, min_remaining, fresh=False))
            if self.clock() + min_remaining < entry.usable_until:
                return entry
            self._reach.refuse_beyond(key, min_remaining)  # the fill taught the route's lifetime
            if not joined:
                break  # a fill for this very request fell short: the STS is slower than the margin
            # Joined a fill for a smaller min_remaining: start one for this request.
        raise self._reach.refusal(key)

    # --- refreshing -------------------------------------------------------------------------------------

    def refresh_soon(self, route: Route) -> None:
        """Starts one background refresh of the route unless one is already running."""
        key = route.cache_key
        if key not in self._refreshing:
            task = asyncio.get_running_loop().create_task(self._refresh(route))
            self._refreshing[key] = task
            task.add_done_callback(lambda _: self._refreshing.pop(key, None))

    async def _refresh(self, route: Route) -> None:
        for attempt in range(1_000):
            try:
                await asyncio.shield(self._shared_fill(route, _NO_TIME, fresh=True, background=True))
            except BrokerError as exc:
                self.metrics.refresh("failed")
                entry = self._memory.get(route.cache_key)
                delay = self._backoff.delay(attempt, random.random())  # noqa: S311 - jitter, not secrecy
                if entry is None or self.clock() + delay >= entry.usable_until:
                    _log.warning("refresh of %s failed, token runs out: %s", route.cache_key, exc.reason)
                    return  # callers fetch (and see the error) once nothing valid is left
                _log.info(
                    "refresh of %s failed (%s), retrying in %.1f s",
                    route.cache_key,
                    exc.reason,
                    delay.total_seconds(),
                )
                await asyncio.sleep(delay.total_seconds())
            else:
                self.metrics.refresh("ok")
                return

    # --- filling: one task per key in this process ------------------------------------------------------

    def _shared_fill(
        self, route: Route, min_remaining: timedelta, *, fresh: bool, background: bool = False
    ) -> asyncio.Task[Entry]:
        key = route.cache_key
        task = self._inflight.get(key)
        if task is None:
            fill = self._fill(route, min_remaining, fresh=fresh, background=background)
            task = asyncio.get_running_loop().create_task(fill)
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return task

    def _forget(self, key: str, task: asyncio.Task[Entry]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved, so a fill nobody waits for any more is not reported as lost

    def _good(self, entry: Entry, min_remaining: timedelta, *, fresh: bool) -> bool:
        now = self.clock()
        return now + min_remaining < entry.usable_until and (not fresh or now < entry.refresh_at)

    async def _fill(self, route: Route, min_remaining: timedelta, *, fresh: bool, background: bool) -> Entry:
        key = route.cache_key
        with tracer.start_as_current_span("broker.token.fill", attributes={"broker.cache_key": key}):
            entry = self._memory.get(key)
            if entry is not None and self._good(entry, min_remaining, fresh=fresh):
                return entry
            # A coordinated renewal in the background reads nothing first: another replica's renewal came
            # with its notice (it carries the token), and the lease's answer carries what the store holds.
            renewal = background and self._coordinator is not None
            if not renewal:
                stored = await self._from_store(route, min_remaining, fresh=fresh)
                if stored is not None:
                    return stored
            if background and self._budget is not None:
                # Background work waits for the budget before it takes a lease, never while holding one
                # (other replicas would wait for a lease that waits for the budget), then looks again.
                waited = await self._budget.take(within=self._patience(entry))
                if waited:
                    # Another replica's renewal may have come (with its notice) while this one queued.
                    current = self._memory.get(key)
                    if current is not None and self._good(current, min_remaining, fresh=fresh):
                        self._budget.give_back()
                        return current
                    stored = None if renewal else await self._from_store(route, min_remaining, fresh=fresh)
                    if stored is not None:
                        return stored
            if self._coordinator is not None:
                coordinated = await self._fill_coordinated(
                    route, min_remaining, fresh=fresh, background=background
                )
                if coordinated is not None:
                    return coordinated
            entry = await self._fetch(route)
            if self._store is not None and self._coordinator is None:
                # Only a store without leases takes plain writes; with a coordinator, tokens are stored
                # fenced (put_if_holder) or not at all.
                await self._store_call("write", self._store.put(key, entry.token, self._ttl(entry)))
            return entry

    def _patience(self, entry: Entry | None) -> float | None:
        """How long a renewal may wait for the budget: until shortly before its token stops being served
        (the lease time, or a tenth of the servable life if longer, before it), so a queue behind the budget
        never lets a warm token run out. None: no token yet (a warm-up waits its turn)."""
        if entry is None:
            return None
        servable = entry.usable_until - entry.token.issued_at
        margin = max(self._lease_ttl, servable / 10)
        return max(0.0, (entry.usable_until - margin - self.clock()).total_seconds())

    async def _from_store(self, route: Route, min_remaining: timedelta, *, fresh: bool) -> Entry | None:
        if self._store is None:
            return None
        token = await self._store_call("read", self._store.get(route.cache_key))
        return None if token is None else self._take_stored(route, token, min_remaining, fresh=fresh)

    def _take_stored(
        self, route: Route, token: AccessToken, min_remaining: timedelta, *, fresh: bool
    ) -> Entry | None:
        entry = self._entry(route, token, SOURCE_STORE)
        if not self._good(entry, min_remaining, fresh=fresh):
            return None
        self._install(route, entry)
        return entry

    async def _fill_coordinated(
        self, route: Route, min_remaining: timedelta, *, fresh: bool, background: bool
    ) -> Entry | None:
        """Fetches under the key's lease, or waits for the replica that holds it. None: fetch directly."""
        assert self._coordinator is not None
        coordinator = self._coordinator
        for _ in range(3):
            attempt = await self._store_call(
                "lease", coordinator.try_lease(route.cache_key, self._lease_ttl), _UNAVAILABLE
            )
            if attempt is _UNAVAILABLE:
                return None  # no coordination possible now: fetch for the callers, store nothing
            lease = attempt.lease
            stored = attempt.stored
            # The previous holder may have stored its token just before we asked (its notice on the way).
            entry = None if stored is None else self._take_stored(route, stored, min_remaining, fresh=fresh)
            if entry is not None:
                if lease is not None:
                    await self._store_call("release", coordinator.release(lease))
                return entry
            if lease is not None:
                return await self._fetch_under_lease(route, lease)
            self.metrics.lease_contention()
            current = self._memory.get(route.cache_key)
            if background and current is not None and self._good(current, min_remaining, fresh=False):
                # Another replica renews it and publishes the result; a background refresh need not wait.
                return current
            entry = await self._await_other_replica(route, min_remaining, fresh=fresh)
            if entry is not None:
                return entry
        return None

    async def _fetch_under_lease(self, route: Route, lease: Lease) -> Entry:
        assert self._coordinator is not None
        coordinator = self._coordinator
        stored = False
        try:
            renewer = asyncio.get_running_loop().create_task(self._keep_lease(lease))
            try:
                entry = await self._fetch(route)
            finally:
                renewer.cancel()
            answer = await self._store_call(
                "write", coordinator.put_if_holder(lease, entry.token, self._ttl(entry)), _UNAVAILABLE
            )
            stored = answer is True
            if answer is False:
                _log.warning(
                    "lease of %s was lost during the fetch; its token is not stored", route.cache_key
                )
            return entry
        finally:
            if not stored:
                await self._store_call("release", coordinator.release(lease))

    async def _keep_lease(self, lease: Lease) -> None:
        assert self._coordinator is not None
        while True:
            await asyncio.sleep(self._lease_ttl.total_seconds() / 3)
            if not await self._store_call("renew", self._coordinator.renew(lease, self._lease_ttl)):
                return

    async def _await_other_replica(
        self, route: Route, min_remaining: timedelta, *, fresh: bool
    ) -> Entry | None:
        assert self._coordinator is not None
        deadline = time.monotonic() + self._lease_ttl.total_seconds()
        while time.monotonic() < deadline:
            changed = self._changed.setdefault(route.cache_key, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), _POLL)
            entry = self._memory.get(route.cache_key)
            if entry is not None and self._good(entry, min_remaining, fresh=fresh):
                return entry
            entry = await self._from_store(route, min_remaining, fresh=fresh)
            if entry is not None:
                return entry
            if not await self._store_call("lease", self._coordinator.lease_held(route.cache_key), False):
                return None  # the holder is gone without a result (or the store): take the lease ourselves
        return None

    async def _fetch(self, route: Route) -> Entry:
        token = await self._source.fetch_client_credentials(route.client, route.target, route.details)
        audit.record(
            "token.minted",
            tenant=route.tenant.name,
            target=route.target.name,
            token_sha256=audit.token_id(token.value),
        )
        entry = self._entry(route, token, SOURCE_STS)
        self._install(route, entry)
        return entry

    # --- bookkeeping ------------------------------------------------------------------------------------

    def _entry(self, route: Route, token: AccessToken, source: str) -> Entry:
        self._reach.learn(route.cache_key, token)
        if self._coordinator is None:
            refresh_at = self._policy.refresh_at(token, route.cache_key)
        else:
            refresh_at = staggered(self._policy, token, route.cache_key, self._replica)
        return Entry(token, refresh_at, self._policy.usable_until(token), source)

    def _ttl(self, entry: Entry) -> timedelta:
        return max(entry.usable_until - self.clock(), timedelta(milliseconds=1))

    def _install(self, route: Route, entry: Entry) -> None:
        if self.routes.by_key(route.cache_key) is None:
            return  # a fill that ended after a reload removed its route: nothing may hold its token
        current = self._memory.get(route.cache_key)
        if current is not None and current.token.value == entry.token.value:
            return
        if current is not None and current.token.expires_at > entry.token.expires_at:
            return  # never replace a token with an older one
        self._memory[route.cache_key] = entry
        self.metrics.time_to_expiry(entry.token.remaining(self.clock()).total_seconds())
        changed = self._changed.pop(route.cache_key, None)
        if changed is not None:
            changed.set()
        if self.on_installed is not None:
            self.on_installed(route, entry)

    def _on_remote_renewal(self, cache_key: str, token: AccessToken | None) -> None:
        """Another replica stored a new token: take it, so process memory is never staler than the store.
        The notice carries the token; only one without it costs a read."""
        route = self.routes.by_key(cache_key)
        if route is None or self._store is None:
            return
        entry = self._memory.get(cache_key)
        if entry is None and cache_key not in self._changed and not is_warm(route):
            return  # nobody here uses, awaits or keeps this key warm
        if token is None:
            self._spawn(self._from_store(route, _NO_TIME, fresh=False))
        else:
            self._take_stored(route, token, _NO_TIME, fresh=False)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _store_call(self, operation: str, call: Coroutine[Any, Any, Any], failed: Any = None) -> Any:
        """Runs one store operation; a store fault is counted, logged once per outage (StoreHealth), and
        yields `failed`. Each caller decides from its own call's result, never from a shared flag that a
        concurrent call may have flipped."""
        try:
            result = await call
        except StoreUnavailableError as exc:
            self.metrics.store_error(operation)
            self._store_health.failed(exc.message)
            return failed
        self._store_health.answered()
        return result

    # --- reloading --------------------------------------------------------------------------------------

    def carry(self, moves: Iterable[tuple[Route, Route]]) -> int:
        """Keeps serving tokens whose cache key changed only because their client's signing key did (a
        rotation): the token is the same, whichever key signed the assertion that fetched it, so it moves to
        the new key and is renewed with the new signing key when it goes stale, not all at once. Returns how
        many moved."""
        moved = 0
        for old, new in moves:
            entry = self._memory.pop(old.cache_key, None)
            refreshing = self._refreshing.pop(old.cache_key, None)
            if refreshing is not None:
                refreshing.cancel()
            if entry is not None and new.cache_key not in self._memory:
                self._memory[new.cache_key] = entry
                moved += 1
            changed = self._changed.pop(old.cache_key, None)
            if changed is not None:
                changed.set()  # its watchers look again: the stream ends and the caller watches the new key
        return moved

    def drop(self, routes: Iterable[Route]) -> int:
        """Forgets the tokens of routes a reloaded configuration no longer has (their cache key is gone),
        and stops their background refreshes; returns how many tokens were held."""
        dropped = 0
        for route in routes:
            key = route.cache_key
            dropped += self._memory.pop(key, None) is not None
            refreshing = self._refreshing.pop(key, None)
            if refreshing is not None:
                refreshing.cancel()
            changed = self._changed.pop(key, None)
            if changed is not None:
                changed.set()  # its watchers look again and end
        return dropped

    async def close(self) -> None:
        tasks = [*self._inflight.values(), *self._refreshing.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._store is not None:
            await self._store.close()
