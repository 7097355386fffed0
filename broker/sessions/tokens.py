"""Single-audience tokens for a user's session, one target at a time, from the session's refresh token.

HelseID rotates refresh tokens: two refreshes racing with the same one can burn the session. So refreshes of
one session are serialised: in this process by a lock per session, across replicas by a lease with a fencing
number, renewed while the STS answers. The rotated refresh token is stored together with the access token
it bought, and only while the lease holds, before any caller sees the token. A store fault stops the
refresh (the new refresh token could not be kept) and answers UNAVAILABLE; it never loses the session.
A `min_remaining` that no fresh token of the tenant and target can meet is refused without a refresh (see
tokens/reach.py), and a token shorter than asked is never answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from broker import audit
from broker.errors import (
    IdpRejectedError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    Reason,
    StoreUnavailableError,
)
from broker.model import AccessToken, Session
from broker.protocol.tillitsrammeverk import attest_hash
from broker.sessions.locks import KeyedLocks
from broker.sessions.login import session_key
from broker.sessions.ports import LoginEndpoints, SessionLease, SessionStore, TokenEndpoint
from broker.store.bounded import ExpiringMap
from broker.tokens.policy import FreshnessPolicy
from broker.tokens.reach import LifetimeReach
from broker.tokens.routes import Route, RouteTable

_log = logging.getLogger(__name__)
_NO_TIME = timedelta(0)
_POLL = 0.1
# Session tokens this process keeps at most; the least recently used go first, expired ones in sweeps.
MEMORY_CAPACITY = 10_000


class SessionTokens:
    def __init__(
        self,
        routes: RouteTable,
        token_endpoint: TokenEndpoint,
        endpoints: LoginEndpoints,
        store: SessionStore,
        clock: Callable[[], datetime],
        *,
        policy: FreshnessPolicy | None = None,
        lease_ttl: timedelta = timedelta(seconds=10),
    ) -> None:
        self._routes = routes
        self._token_endpoint = token_endpoint
        self._endpoints = endpoints
        self._store = store
        self._clock = clock
        self._policy = policy or FreshnessPolicy()
        self._lease_ttl = lease_ttl
        # Per (tenant, target): what a fresh token can give, so an impossible min_remaining costs no refresh.
        self._reach = LifetimeReach(self._policy)
        # (session key, target) -> (token, usable until, tenant)
        self._memory: ExpiringMap[tuple[str, str], tuple[AccessToken, datetime, str]] = ExpiringMap(
            MEMORY_CAPACITY, clock
        )
        self._locks = KeyedLocks()  # a lock lives only while a refresh of its session runs or waits

    async def token(
        self,
        session_id: str,
        target: str,
        min_remaining: timedelta = _NO_TIME,
        *,
        allow: Callable[[str], None] | None = None,
        attest: Mapping[str, Any] | None = None,
    ) -> AccessToken:
        return (await self.token_and_route(session_id, target, min_remaining, allow=allow, attest=attest))[0]

    async def token_and_route(
        self,
        session_id: str,
        target: str,
        min_remaining: timedelta = _NO_TIME,
        *,
        allow: Callable[[str], None] | None = None,
        attest: Mapping[str, Any] | None = None,
    ) -> tuple[AccessToken, Route]:
        """The token, and the route (tenant, target, client) it belongs to, for signing proofs with it.

        `allow(tenant)` raises when the caller may not use the session's tenant; it runs before anything
        is read for or done with the session beyond learning its tenant. With an `attest` (the trust
        framework's), the token carries it: it is fetched by a refresh whose client assertion holds it, and
        kept apart from the session's other tokens under the hash of the attest (`slot`).
        """
        if not session_id:
            raise InvalidRequestError("session_id", "is required")
        key = session_key(session_id)
        slot = target if attest is None else f"{target}#{attest_hash(dict(attest))[:32]}"
        cached = self._memory.get((key, slot))
        # An unknown session costs one read and nothing else: no lock, no lease, no write.
        tenant = cached[2] if cached is not None else (await self._live_session(key)).tenant
        if allow is not None:
            allow(tenant)
        if cached is None or self._clock() + min_remaining >= cached[1]:
            # Known impossible (from this tenant and target's tokens): refused without a lock or a refresh.
            self._reach.refuse_beyond((tenant, target), min_remaining)
            # A caller that gives up (its deadline) must not cancel a refresh under way: HelseID may already
            # have rotated the refresh token, and only the finished save keeps the session alive. The work
            # runs as its own task; the caller waits for it through a shield.
            work = asyncio.get_running_loop().create_task(
                self._serialised(key, _Slot(target, slot, attest), min_remaining)
            )
            work.add_done_callback(_retrieve)
            await asyncio.shield(work)
            cached = self._memory[(key, slot)]
            if self._clock() + min_remaining >= cached[1]:
                raise self._reach.refusal((cached[2], target))  # never OK with less than was asked
        token, _, tenant = cached
        return token, self._routes.resolve(tenant, target)

    async def _serialised(self, key: str, slot: _Slot, min_remaining: timedelta) -> AccessToken:
        async with self._locks.hold(key):
            return await self._token_serialised(key, slot, min_remaining)

    async def end(self, session_id: str, *, allow: Callable[[str], None] | None = None) -> bool:
        """Revokes the session's refresh token at the STS (where it offers revocation) and deletes it."""
        key = session_key(session_id)
        session = await self._store.get(key)
        if session is None:
            raise NotFoundError("no such session", reason=Reason.SESSION_NOT_FOUND)
        if allow is not None:
            allow(session.tenant)
        client = self._routes.resolve(session.tenant, session.targets[0]).client
        revoked = await self._endpoints.revoke_refresh_token(client, session.refresh_token)
        await self._store.delete(key)
        audit.record("session.ended", tenant=session.tenant, session=key[:16], revoked=str(revoked).lower())
        self._memory.drop(lambda held: held[0] == key)  # every target's token, with an attest or without
        return revoked

    async def _token_serialised(self, key: str, slot: _Slot, min_remaining: timedelta) -> AccessToken:
        deadline = time.monotonic() + 3 * self._lease_ttl.total_seconds()
        while time.monotonic() < deadline:
            token = await self._stored_token(key, slot, min_remaining)
            if token is not None:
                return token
            lease = await self._store.try_lease(key, self._lease_ttl)
            if lease is not None:
                return await self._refresh_under_lease(lease, key, slot, min_remaining)
            await asyncio.sleep(
                _POLL
            )  # another replica refreshes this session; its result lands in the store
        raise StoreUnavailableError("the session stayed locked by another replica")

    async def _stored_token(self, key: str, slot: _Slot, min_remaining: timedelta) -> AccessToken | None:
        token = await self._store.get_token(key, slot.name)
        if token is None:
            return None
        session = await self._live_session(key)
        target = slot.target
        self._reach.learn((session.tenant, target), token)
        usable_until = self._policy.usable_until(token)
        if self._clock() + min_remaining >= usable_until:
            self._reach.refuse_beyond((session.tenant, target), min_remaining)  # before any lease
            return None
        self._memory.put((key, slot.name), (token, usable_until, session.tenant), usable_until)
        return token

    async def _refresh_under_lease(
        self, lease: SessionLease, key: str, slot: _Slot, min_remaining: timedelta
    ) -> AccessToken:
        saved = False
        target = slot.target
        renewer = asyncio.get_running_loop().create_task(self._keep(lease))
        try:
            # Another replica may have finished a refresh just before we got the lease.
            token = await self._stored_token(key, slot, min_remaining)
            if token is not None:
                return token
            session = await self._live_session(key)
            route = self._routes.resolve(session.tenant, target)
            if target not in session.targets:
                raise PermissionDeniedError(
                    f"the session was not logged in for target {target!r}",
                    reason=Reason.TARGET_NOT_IN_SESSION,
                    target=target,
                )
            self._reach.refuse_beyond((session.tenant, target), min_remaining)  # known from other sessions
            if slot.attest is not None and session.attested:
                raise InvalidRequestError(
                    "care_context",
                    "this session's login carried its attest; HelseID refuses a second one "
                    "(HID-DOUBLE-STRUCTURE): leave out the care context, or log in without one",
                )
            details = route.details if slot.attest is None else (*route.details, dict(slot.attest))
            try:
                tokens = await self._token_endpoint.refresh(
                    route.client,
                    refresh_token=session.refresh_token,
                    target=route.target,
                    details=details,
                )
            except IdpRejectedError as exc:
                if exc.oauth_error == "invalid_grant":
                    # The refresh token is dead (revoked, expired, or used twice): the user must log in again.
                    await self._store.delete(key)
                    raise PermissionDeniedError(
                        "the session has ended; log in again", reason=Reason.LOGIN_REQUIRED
                    ) from exc
                raise
            now = self._clock()
            refreshed = replace(
                session,
                refresh_token=tokens.refresh_token or session.refresh_token,
                expires_at=tokens.refresh_expires_at or session.expires_at,
            )
            token = tokens.access_token
            self._reach.learn((session.tenant, target), token)
            usable_until = self._policy.usable_until(token)
            renewer.cancel()
            saved = await self._store.save_refreshed(
                lease,
                session=refreshed,
                session_ttl=max(refreshed.expires_at - now, timedelta(seconds=1)),
                target=slot.name,
                token=token,
                token_ttl=max(usable_until - now, timedelta(milliseconds=1)),
            )
            if not saved:
                _log.error(
                    "lease on a session was lost during its refresh; the rotated refresh token is not stored"
                )
                raise StoreUnavailableError("the session's lease was lost during the refresh")
            self._memory.put((key, slot.name), (token, usable_until, session.tenant), usable_until)
            audit.record(
                "session.refreshed",
                tenant=session.tenant,
                target=target,
                session=key[:16],
                token_sha256=audit.token_id(token.value),
            )
            return token
        finally:
            renewer.cancel()
            if not saved:
                with contextlib.suppress(StoreUnavailableError):
                    await self._store.release(lease)

    async def _live_session(self, key: str) -> Session:
        session = await self._store.get(key)
        if session is None:
            raise NotFoundError(
                "no such session (unknown, ended or expired)", reason=Reason.SESSION_NOT_FOUND
            )
        if session.expires_at <= self._clock():
            await self._store.delete(key)
            raise NotFoundError("the session has expired", reason=Reason.SESSION_EXPIRED)
        return session

    async def _keep(self, lease: SessionLease) -> None:
        while True:
            await asyncio.sleep(self._lease_ttl.total_seconds() / 3)
            if not await self._store.renew(lease, self._lease_ttl):
                return


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where a session's token for a target is kept: the target's own slot, or one per attest."""

    target: str
    name: str  # the target, or "<target>#<attest hash>"
    attest: Mapping[str, Any] | None = None


def _retrieve(task: asyncio.Task[AccessToken]) -> None:
    """Marks a refresh's outcome as seen when the caller that started it has gone (no 'never retrieved')."""
    if not task.cancelled():
        task.exception()
