"""Leases with fencing numbers in Redis: the one mechanism that serialises work across replicas.

A lease is a key holding the fencing number of its holder, with a TTL; the fencing number comes from a
counter that only grows, so a holder whose lease expired (a slow or dead replica) can be told apart from
the one that took over. Writes that need the lease compare the fencing number in the same Lua script
(`WRITE_IF_HOLDER_GUARD`), so a stale holder can never overwrite a newer result.

The counter has a TTL too (`FENCE_TTL`, renewed by every acquisition), or every session id ever refreshed
would leave one key in Redis forever. A fencing number only matters while its holder may still write, and
a holder writes within its lease (seconds, renewed while it works) or is refused. Only a holder stalled for
over a day between taking its lease and writing could meet a counter that started again, and then only if
the new counter had reached its very number and that lease were live. We accept that over a number derived
from the clock, which would trust Redis's wall clock never to step back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import redis.asyncio as aioredis

FENCE_TTL = timedelta(days=1)

# KEYS: lease, fence. ARGV: lease ms, fence ms. Returns the new fencing number, or 0 while someone holds
# the lease.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fencing = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], fencing, 'PX', ARGV[1])
return fencing
"""
# As _ACQUIRE, and also reads KEYS[3] (a value of the same hash tag), in the same round trip. Returns
# {fencing or 0, the value or nil}.
_ACQUIRE_READING = """
local value = redis.call('GET', KEYS[3])
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, value} end
local fencing = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], fencing, 'PX', ARGV[1])
return {fencing, value}
"""
# KEYS: lease. ARGV: fencing, lease ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: lease. ARGV: fencing.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# The first line of every script that writes under a lease: KEYS[1] is the lease, ARGV[1] the fencing.
WRITE_IF_HOLDER_GUARD = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"


class Lease(Protocol):
    """Any lease with a key and a fencing number (the engine's and the session service's ports)."""

    @property
    def key(self) -> str: ...

    @property
    def fencing(self) -> int: ...


@dataclass(frozen=True, slots=True)
class FencedLease:
    key: str
    fencing: int


def milliseconds(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds() * 1000))


Guard = Callable[[str, Awaitable[Any]], Awaitable[Any]]


class RedisLeases:
    """Acquire, renew, release and inspect leases; `name(key, kind)` names the Redis keys of a lease."""

    def __init__(self, client: aioredis.Redis, name: Callable[[str, str], str], guard: Guard) -> None:
        self._redis = client
        self._name = name
        self._guard = guard
        self._acquire = client.register_script(_ACQUIRE)
        self._acquire_reading = client.register_script(_ACQUIRE_READING)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def lease_key(self, key: str) -> str:
        return self._name(key, "lease")

    async def acquire(self, key: str, ttl: timedelta) -> FencedLease | None:
        keys = [self._name(key, "lease"), self._name(key, "fence")]
        args = [milliseconds(ttl), milliseconds(max(FENCE_TTL, 100 * ttl))]
        fencing = int(await self._guard("lease", self._acquire(keys=keys, args=args)))
        return FencedLease(key, fencing) if fencing else None

    async def acquire_reading(
        self, key: str, ttl: timedelta, value_key: str
    ) -> tuple[FencedLease | None, bytes | None]:
        """The lease (None while someone holds it) and the value at `value_key`, in one round trip."""
        keys = [self._name(key, "lease"), self._name(key, "fence"), value_key]
        args = [milliseconds(ttl), milliseconds(max(FENCE_TTL, 100 * ttl))]
        answer = await self._guard("lease", self._acquire_reading(keys=keys, args=args))
        fencing, value = int(answer[0]), answer[1] if len(answer) > 1 else None
        lease = FencedLease(key, fencing) if fencing else None
        return lease, value if isinstance(value, bytes) else None

    async def renew(self, lease: Lease, ttl: timedelta) -> bool:
        args = [lease.fencing, milliseconds(ttl)]
        return bool(await self._guard("renew", self._renew(keys=[self.lease_key(lease.key)], args=args)))

    async def release(self, lease: Lease) -> None:
        await self._guard("release", self._release(keys=[self.lease_key(lease.key)], args=[lease.fencing]))

    async def held(self, key: str) -> bool:
        return bool(await self._guard("lease", self._redis.exists(self.lease_key(key))))
