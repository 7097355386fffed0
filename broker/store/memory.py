"""The embedded default's session store: process memory, one process, gone when the broker stops.

It keeps the same contract as the Redis store (single-use login states, leases with fencing, the rotated
refresh token saved with the new access token in one step), so the session service has one code path.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from broker.model import AccessToken, PendingLogin, Session
from broker.store.bounded import ExpiringMap
from broker.store.leases import FencedLease, Lease

V = TypeVar("V")

# Caps on what callers can make this process hold. Pending logins are the cheapest to create (one
# StartLogin each) and live ten minutes, so they have the smallest cap; past it the oldest goes first.
MAX_PENDING_LOGINS = 10_000
MAX_SESSIONS = 100_000
MAX_SESSION_TOKENS = 100_000


class _Expiring(Generic[V]):
    """Entries with a time to live, swept when expired and capped in number (see store.bounded)."""

    def __init__(self, clock: Callable[[], datetime], capacity: int) -> None:
        self._clock = clock
        self._items: ExpiringMap[str, V] = ExpiringMap(capacity, clock)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, value: V, ttl: timedelta) -> None:
        self._items.put(key, value, self._clock() + ttl)

    def get(self, key: str) -> V | None:
        return self._items.get(key)

    def pop(self, key: str) -> V | None:
        return self._items.pop(key)

    def drop_prefix(self, prefix: str) -> None:
        self._items.drop(lambda key: key.startswith(prefix))


class MemorySessionStore:
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._pending: _Expiring[PendingLogin] = _Expiring(clock, MAX_PENDING_LOGINS)
        self._sessions: _Expiring[Session] = _Expiring(clock, MAX_SESSIONS)
        self._tokens: _Expiring[AccessToken] = _Expiring(clock, MAX_SESSION_TOKENS)
        # Leases are taken only for sessions that exist (the session service reads the session first).
        self._leases: _Expiring[int] = _Expiring(clock, MAX_SESSIONS)
        self._fencing = itertools.count(1)

    def sizes(self) -> dict[str, int]:
        """How many entries each map holds (for tests and diagnostics)."""
        return {
            "pending": len(self._pending),
            "sessions": len(self._sessions),
            "tokens": len(self._tokens),
            "leases": len(self._leases),
        }

    async def put_pending(self, state: str, login: PendingLogin, ttl: timedelta) -> None:
        self._pending.put(state, login, ttl)

    async def take_pending(self, state: str) -> PendingLogin | None:
        return self._pending.pop(state)

    async def create(self, session: Session, ttl: timedelta) -> None:
        self._sessions.put(session.session_key, session, ttl)

    async def get(self, session_key: str) -> Session | None:
        return self._sessions.get(session_key)

    async def delete(self, session_key: str) -> None:
        self._sessions.pop(session_key)
        self._tokens.drop_prefix(session_key + "|")

    async def get_token(self, session_key: str, target: str) -> AccessToken | None:
        return self._tokens.get(f"{session_key}|{target}")

    async def put_token(self, session_key: str, target: str, token: AccessToken, ttl: timedelta) -> None:
        self._tokens.put(f"{session_key}|{target}", token, ttl)

    async def try_lease(self, session_key: str, ttl: timedelta) -> FencedLease | None:
        if self._leases.get(session_key) is not None:
            return None
        fencing = next(self._fencing)
        self._leases.put(session_key, fencing, ttl)
        return FencedLease(session_key, fencing)

    async def renew(self, lease: Lease, ttl: timedelta) -> bool:
        if self._leases.get(lease.key) != lease.fencing:
            return False
        self._leases.put(lease.key, lease.fencing, ttl)
        return True

    async def release(self, lease: Lease) -> None:
        if self._leases.get(lease.key) == lease.fencing:
            self._leases.pop(lease.key)

    async def save_refreshed(
        self,
        lease: Lease,
        *,
        session: Session,
        session_ttl: timedelta,
        target: str,
        token: AccessToken,
        token_ttl: timedelta,
    ) -> bool:
        if self._leases.get(lease.key) != lease.fencing:
            return False
        self._sessions.put(session.session_key, session, session_ttl)
        self._tokens.put(f"{session.session_key}|{target}", token, token_ttl)
        self._leases.pop(lease.key)
        return True

    async def close(self) -> None:
        return None
