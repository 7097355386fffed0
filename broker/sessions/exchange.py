"""RFC 8693 token exchange: a subject token a service received becomes a token for another target, with the
tenant's client as the actor. Cached by a hash of the subject token and the target's route, never by the
subject token itself; concurrent identical exchanges share one request to the STS. A `min_remaining` that no
fresh token of the tenant and target can meet is refused without an exchange (see tokens/reach.py), and only
a real request to the STS is charged to the caller's rate (`charge`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from broker import audit
from broker.errors import InvalidRequestError, RateLimitedError, StoreUnavailableError
from broker.model import AccessToken
from broker.sessions.ports import TokenEndpoint
from broker.store.bounded import ExpiringMap
from broker.tokens.policy import FreshnessPolicy
from broker.tokens.ports import TokenStore
from broker.tokens.reach import LifetimeReach
from broker.tokens.routes import RouteTable

_NO_TIME = timedelta(0)
# Exchanged tokens this process keeps at most (keyed by a hash of a caller's subject token); the least
# recently used go first, expired ones in sweeps.
MEMORY_CAPACITY = 10_000


class TokenExchanger:
    def __init__(
        self,
        routes: RouteTable,
        token_endpoint: TokenEndpoint,
        clock: Callable[[], datetime],
        store: TokenStore | None = None,
        *,
        policy: FreshnessPolicy | None = None,
    ) -> None:
        self._routes = routes
        self._token_endpoint = token_endpoint
        self._clock = clock
        self._store = store
        self._policy = policy or FreshnessPolicy()
        self._reach = LifetimeReach(self._policy)  # per (tenant, target)
        self._memory: ExpiringMap[str, tuple[AccessToken, datetime]] = ExpiringMap(MEMORY_CAPACITY, clock)
        self._inflight: dict[str, asyncio.Task[AccessToken]] = {}

    async def exchange(
        self,
        tenant: str,
        target: str,
        subject_token: str,
        min_remaining: timedelta = _NO_TIME,
        *,
        charge: Callable[[], None] | None = None,
    ) -> AccessToken:
        """`charge()` runs right before a request to the STS (never for a cached token); it may raise
        RateLimitedError."""
        if not subject_token:
            raise InvalidRequestError("subject_token", "is required")
        route = self._routes.resolve(tenant, target)
        digest = hashlib.sha256(f"{route.cache_key}|{subject_token}".encode()).hexdigest()[:40]
        key = f"x1:{tenant}:{target}:{digest}"
        cached = self._memory.get(key)
        if cached is not None and self._clock() + min_remaining < cached[1]:
            return cached[0]
        self._reach.refuse_beyond((tenant, target), min_remaining)  # known impossible: no exchange
        for _ in range(3):
            task = self._inflight.get(key)
            joined = task is not None
            if task is None:
                fetch = self._fetch(key, tenant, target, subject_token, min_remaining, charge=charge)
                task = asyncio.get_running_loop().create_task(fetch)
                self._inflight[key] = task
                task.add_done_callback(lambda _: self._inflight.pop(key, None))
            try:
                token = await asyncio.shield(task)
            except RateLimitedError:
                if not joined:
                    raise
                continue  # another caller's rate stopped the shared exchange; this caller may have room
            if self._clock() + min_remaining < self._policy.usable_until(token):
                return token
            self._reach.refuse_beyond((tenant, target), min_remaining)  # the exchange taught the lifetime
            if not joined:
                break  # an exchange for this very request fell short: the STS is slower than the margin
        raise self._reach.refusal((tenant, target))

    async def _fetch(
        self,
        key: str,
        tenant: str,
        target: str,
        subject_token: str,
        min_remaining: timedelta,
        *,
        charge: Callable[[], None] | None,
    ) -> AccessToken:
        if self._store is not None:
            stored = None
            with contextlib.suppress(StoreUnavailableError):  # the store is a cache here: go on without it
                stored = await self._store.get(key)
            if stored is not None and self._clock() + min_remaining < self._policy.usable_until(stored):
                until = self._policy.usable_until(stored)
                self._memory.put(key, (stored, until), until)
                return stored
        route = self._routes.resolve(tenant, target)
        if charge is not None:
            charge()
        token = await self._token_endpoint.exchange(
            route.client, subject_token=subject_token, target=route.target, details=route.details
        )
        audit.record(
            "token.exchanged",
            tenant=tenant,
            target=target,
            subject_sha256=audit.token_id(subject_token),
            token_sha256=audit.token_id(token.value),
        )
        self._reach.learn((tenant, target), token)
        usable_until = self._policy.usable_until(token)
        self._memory.put(key, (token, usable_until), usable_until)
        if self._store is not None:
            with contextlib.suppress(StoreUnavailableError):
                await self._store.put(
                    key, token, max(usable_until - self._clock(), timedelta(milliseconds=1))
                )
        return token
