"""The production store: sealed tokens in Redis with TTLs, leases with fencing, renewal notices, nonces.

Keys of one cache key share a hash tag (`{...}`), so the Lua scripts stay valid on Redis Cluster:

    broker:v1:{<cache key>}:tok     the sealed token, TTL = until the broker stops serving it
    broker:v1:{<cache key>}:lease   the fencing number of the replica fetching it, TTL = lease time
    broker:v1:{<cache key>}:fence   the last fencing number handed out (TTL = leases.FENCE_TTL)
    broker:v1:nonce:{<issuer>}      the issuer's last DPoP nonce, TTL = NONCE_TTL
    broker:v1:renewed               pub/sub channel: "<fencing> <cache key>\n<sealed token>" after each
                                    stored renewal: the other replicas install the token from the notice
                                    itself, with no read of their own
    broker:v1:renewed:{<n>}         on Redis Cluster instead: 16 shard channels (sharded pub/sub, SPUBLISH),
                                    n from the cache key, spread over the masters by their hash tags

Every key has a TTL. Every Redis fault becomes a StoreUnavailableError (`redis_client.guarded`); the engine
goes on without the store.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from broker.errors import StoreUnavailableError
from broker.model import AccessToken
from broker.store.codec import SealedCodec
from broker.store.leases import WRITE_IF_HOLDER_GUARD, FencedLease, Lease, RedisLeases
from broker.store.leases import milliseconds as _ms
from broker.store.redis_client import (
    ChannelListener,
    RedisAddress,
    ShardedListener,
    connect,
    guarded,
    listener,
    sharded_listener,
)

_log = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = "broker:v1:"
CHANNEL = PREFIX + "renewed"
SHARD_CHANNELS = 16  # on a cluster: enough to spread over the masters, few enough to listen to all
NONCE_TTL = timedelta(minutes=10)

# KEYS: lease, token. ARGV: fencing, sealed value, ttl ms, channel, notice head. Compare-and-set on the
# fencing. The notice carries the sealed token after its head line, sent to Redis once. An empty channel:
# the caller publishes on a shard channel itself (a script may only SPUBLISH to its own keys' slot).
_PUT_IF_HOLDER = (
    WRITE_IF_HOLDER_GUARD
    + """
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[1])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5] .. '\\n' .. ARGV[2]) end
return 1
"""
)


@dataclass(frozen=True, slots=True)
class LeaseAttempt:
    lease: FencedLease | None  # None while another replica holds the key's lease
    stored: AccessToken | None  # the token stored for the key at that moment


RenewalCallback = Callable[[str, AccessToken | None], None]


def shard_channel(cache_key: str) -> str:
    """The shard channel of a key's renewal notices on a cluster."""
    return shard_channel_of(zlib.crc32(cache_key.encode()) % SHARD_CHANNELS)


def shard_channel_of(index: int) -> str:
    return f"{CHANNEL}:{{{index}}}"


def _tag(cache_key: str, kind: str) -> str:
    return f"{PREFIX}{{{cache_key}}}:{kind}"


class RedisTokenStore:
    """TokenStore, Coordinator and SharedNonces on one Redis (or Sentinel/Cluster through redis-py)."""

    def __init__(
        self,
        client: aioredis.Redis,
        codec: SealedCodec,
        listener: aioredis.Redis | None = None,
        sharded: RedisCluster | None = None,
    ) -> None:
        self._redis = client
        self._listener_client = listener
        self._sharded = sharded  # a cluster: notices on shard channels
        self._codec = codec
        self._leases = RedisLeases(client, _tag, self._call)
        self._put_if_holder = client.register_script(_PUT_IF_HOLDER)
        self._callbacks: list[RenewalCallback] = []
        self._own_writes: deque[bytes] = deque(maxlen=256)
        self._listener: ChannelListener | ShardedListener | None = None

    @classmethod
    def from_url(
        cls, url: str | RedisAddress, key: bytes, *, timeout: timedelta = timedelta(seconds=1)
    ) -> RedisTokenStore:
        seconds = timeout.total_seconds()
        client = connect(url, timeout)
        sharded = sharded_listener(url, seconds)  # a cluster's renewal notices: shard channels only
        plain = listener(url, seconds) if sharded is None else None
        return cls(client, SealedCodec(key), plain, sharded)

    # --- tokens -----------------------------------------------------------------------------------------

    async def get(self, key: str) -> AccessToken | None:
        blob = await self._call("read", self._redis.get(_tag(key, "tok")))
        return None if blob is None else self._open(key, blob)

    def _open(self, key: str, blob: bytes | str) -> AccessToken | None:
        token = self._codec.open(key, blob if isinstance(blob, bytes) else str(blob).encode())
        if token is None:
            _log.warning("dropping a cached value that does not open under its key %s", key)
        return token

    async def put(self, key: str, token: AccessToken, ttl: timedelta) -> None:
        await self._call(
            "write", self._redis.set(_tag(key, "tok"), self._codec.seal(key, token), px=_ms(ttl))
        )

    # --- coordination -----------------------------------------------------------------------------------

    async def try_lease(self, key: str, ttl: timedelta) -> LeaseAttempt:
        lease, blob = await self._leases.acquire_reading(key, ttl, _tag(key, "tok"))
        return LeaseAttempt(lease, None if blob is None else self._open(key, blob))

    async def renew(self, lease: Lease, ttl: timedelta) -> bool:
        return await self._leases.renew(lease, ttl)

    async def put_if_holder(self, lease: Lease, token: AccessToken, ttl: timedelta) -> bool:
        message = f"{lease.fencing} {lease.key}"
        self._own_writes.append(message.encode())
        keys = [self._leases.lease_key(lease.key), _tag(lease.key, "tok")]
        sealed = self._codec.seal(lease.key, token)
        channel = "" if self._sharded is not None else CHANNEL
        args: list[bytes | str | int] = [lease.fencing, sealed, _ms(ttl), channel, message]
        written = bool(await self._call("write", self._put_if_holder(keys=keys, args=args)))
        if written and self._sharded is not None:
            # The token is stored either way: without the notice the others find it at their own instant.
            with contextlib.suppress(StoreUnavailableError):
                notice = message.encode() + b"\n" + sealed
                await self._call("notice", self._redis.spublish(shard_channel(lease.key), notice))
        return written

    async def release(self, lease: Lease) -> None:
        await self._leases.release(lease)

    async def lease_held(self, key: str) -> bool:
        return await self._leases.held(key)

    def on_renewal(self, callback: RenewalCallback) -> None:
        self._callbacks.append(callback)
        if self._listener is not None:
            return
        if self._sharded is not None:
            channels = [shard_channel_of(index) for index in range(SHARD_CHANNELS)]
            self._listener = ShardedListener(self._sharded, channels, self._deliver)
        elif self._listener_client is not None:
            self._listener = ChannelListener(self._listener_client, CHANNEL, self._deliver)

    # --- nonces -----------------------------------------------------------------------------------------

    async def get_nonce(self, issuer: str) -> str | None:
        value = await self._call("nonce", self._redis.get(f"{PREFIX}nonce:{{{issuer}}}"))
        return None if value is None else value.decode() if isinstance(value, bytes) else str(value)

    async def put_nonce(self, issuer: str, nonce: str) -> None:
        await self._call("nonce", self._redis.set(f"{PREFIX}nonce:{{{issuer}}}", nonce, px=_ms(NONCE_TTL)))

    # --- plumbing ---------------------------------------------------------------------------------------

    def _deliver(self, notice: bytes) -> None:
        """A renewal notice of another replica (this one's own are known and skipped), with the token."""
        head, _, blob = notice.partition(b"\n")
        if head in self._own_writes:
            return
        _, _, name = head.partition(b" ")
        cache_key = name.decode()
        token = self._open(cache_key, blob) if blob else None  # a notice without one: the callee reads
        for callback in self._callbacks:
            callback(cache_key, token)

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        return await guarded(operation, call)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._redis.aclose()
        if self._listener_client is not None:
            await self._listener_client.aclose()
        if self._sharded is not None:
            await self._sharded.aclose()
