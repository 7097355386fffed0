"""User sessions in Redis: sealed records with TTLs, single-use login states, and refresh serialisation.

    broker:v1:login:{<state hash>}          a pending login (TTL: the login's lifetime), taken with GETDEL
    broker:v1:{sess:<key>}:session          the session: refresh token and user identity (TTL: rt_expires_in)
    broker:v1:{sess:<key>}:tok:<target>     a session's access token for a target
    broker:v1:{sess:<key>}:lease            the fencing number of the replica refreshing the session
    broker:v1:{sess:<key>}:fence            the last fencing number handed out (TTL: leases.FENCE_TTL)

Every key has a TTL, and an unknown session id writes nothing (the session service reads the session
before it takes a lease). `<key>` is a hash of the session id, never the id: the id is the caller's
credential. One hash tag per session keeps the Lua scripts valid on Redis Cluster. Sessions survive a
broker restart, and a Redis restart when Redis persists (AOF or RDB).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

import redis.asyncio as aioredis

from broker.model import AccessToken, PendingLogin, Session
from broker.store.codec import SealedCodec
from broker.store.leases import WRITE_IF_HOLDER_GUARD, FencedLease, Lease, RedisLeases
from broker.store.leases import milliseconds as _ms
from broker.store.redis import PREFIX
from broker.store.redis_client import RedisAddress, address_of, connect, guarded

T = TypeVar("T")

# KEYS: lease, session, token. ARGV: fencing, sealed session, session ms, sealed token, token ms.
# The rotated refresh token and the access token it bought are stored together, or not at all.
_SAVE_REFRESHED = (
    WRITE_IF_HOLDER_GUARD
    + """
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5])
redis.call('DEL', KEYS[1])
return 1
"""
)


_log = logging.getLogger(__name__)


def _session(key: str, kind: str) -> str:
    return f"{PREFIX}{{sess:{key}}}:{kind}"


# How long a session's refresh waits for a replica to acknowledge the rotated refresh token (Sentinel).
REPLICA_WAIT = timedelta(seconds=1)


class RedisSessionStore:
    def __init__(self, client: aioredis.Redis, codec: SealedCodec, *, replicated: bool = False) -> None:
        self._redis = client
        self._codec = codec
        # With a replica (Sentinel), the refreshed session's write waits for its acknowledgement, so a
        # failover right after it cannot lose the rotated refresh token (HelseID has spent the old one).
        self._replicated = replicated
        self._leases = RedisLeases(client, _session, lambda _, call: self._call(call))
        self._save = client.register_script(_SAVE_REFRESHED)

    @classmethod
    def from_url(
        cls, where: str | RedisAddress, key: bytes, *, timeout: timedelta = timedelta(seconds=1)
    ) -> RedisSessionStore:
        address = address_of(where)
        return cls(connect(address, timeout), SealedCodec(key), replicated=address.replicated)

    async def put_pending(self, state: str, login: PendingLogin, ttl: timedelta) -> None:
        record = _pending(state)
        await self._call(self._redis.set(record, self._codec.seal_pending(record, login), px=_ms(ttl)))

    async def take_pending(self, state: str) -> PendingLogin | None:
        record = _pending(state)
        blob = await self._call(self._redis.getdel(record))
        return None if blob is None else self._codec.open_pending(record, _bytes(blob))

    async def create(self, session: Session, ttl: timedelta) -> None:
        record = _session(session.session_key, "session")
        await self._call(self._redis.set(record, self._codec.seal_session(record, session), px=_ms(ttl)))

    async def get(self, session_key: str) -> Session | None:
        record = _session(session_key, "session")
        blob = await self._call(self._redis.get(record))
        return None if blob is None else self._codec.open_session(record, _bytes(blob))

    async def delete(self, session_key: str) -> None:
        # Glob-escape the hash tag's braces; the pattern then matches exactly this session's records.
        pattern = _session(session_key, "*").replace("{", "\\{").replace("}", "\\}")
        keys = await self._call(self._matching(pattern))
        if keys:
            await self._call(self._redis.delete(*keys))

    async def get_token(self, session_key: str, target: str) -> AccessToken | None:
        record = _session(session_key, f"tok:{target}")
        blob = await self._call(self._redis.get(record))
        return None if blob is None else self._codec.open(record, _bytes(blob))

    async def put_token(self, session_key: str, target: str, token: AccessToken, ttl: timedelta) -> None:
        record = _session(session_key, f"tok:{target}")
        await self._call(self._redis.set(record, self._codec.seal(record, token), px=_ms(ttl)))

    async def try_lease(self, session_key: str, ttl: timedelta) -> FencedLease | None:
        return await self._leases.acquire(session_key, ttl)

    async def renew(self, lease: Lease, ttl: timedelta) -> bool:
        return await self._leases.renew(lease, ttl)

    async def release(self, lease: Lease) -> None:
        await self._leases.release(lease)

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
        record = _session(session.session_key, "session")
        token_record = _session(session.session_key, f"tok:{target}")
        keys = [_session(lease.key, "lease"), record, token_record]
        args: list[bytes | str | int] = [
            lease.fencing,
            self._codec.seal_session(record, session),
            _ms(session_ttl),
            self._codec.seal(token_record, token),
            _ms(token_ttl),
        ]
        if not self._replicated:
            return bool(await self._call(self._save(keys=keys, args=args)))
        # WAIT counts this connection's writes: the script and the WAIT go down one connection.
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._save(keys=keys, args=args, client=pipe)  # queued, sent by execute()
            pipe.execute_command("WAIT", 1, _ms(REPLICA_WAIT))
            saved, acknowledged = await self._call(pipe.execute())
        if saved and int(acknowledged) < 1:
            _log.warning(
                "a refreshed session was not acknowledged by a replica within %.1f s; a failover now could "
                "lose it",
                REPLICA_WAIT.total_seconds(),
            )
        return bool(saved)

    async def _matching(self, pattern: str) -> list[bytes]:
        return [key async for key in self._redis.scan_iter(match=pattern)]

    async def _call(self, call: Awaitable[T]) -> T:
        return await guarded("session operation", call)

    async def close(self) -> None:
        await self._redis.aclose()


def _pending(state: str) -> str:
    # The state travels through the browser; hashing it keeps it out of Redis key names.
    return f"{PREFIX}login:{{{hashlib.sha256(state.encode()).hexdigest()}}}"


def _bytes(blob: bytes | str) -> bytes:
    return blob if isinstance(blob, bytes) else blob.encode()
