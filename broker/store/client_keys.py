"""Client keys made by rotation, in the shared store: sealed, with the one replica rotating under a lease.

In Redis, one hash tag per client so its keys and lease go together on Redis Cluster:

    broker:v1:{keys:<client>}          hash: "current" -> kid; "key:<kid>" -> the key's record, sealed
                                       (AES-256-GCM under the store key, the field's name as associated
                                       data): its private JWK, when it was made, when HelseID expires it,
                                       and, once replaced, until when it is kept
    broker:v1:{keys:<client>}:lease    the rotating replica's fencing number, TTL = the lease time
    broker:v1:{keys:<client>}:fence    the last fencing number handed out (leases.py)
    broker:v1:keys:changed             pub/sub channel: "<client>" after the current key changed

A private key never leaves these records except into the signer that uses it. The records have no TTL: a
key is kept while it signs or may still be needed, and is deleted by the rotation that retires it.
The memory store keeps them in the process (one replica, lost at a restart: with it, a rotation is only
useful for a test or a single broker whose file key the operator then replaces).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import redis.asyncio as aioredis

from broker.store.codec import SealedCodec
from broker.store.leases import FencedLease, Lease, RedisLeases
from broker.store.redis_client import ChannelListener, RedisAddress, connect, guarded, listener

_log = logging.getLogger(__name__)
CHANNEL = "broker:v1:keys:changed"


def _hash(client: str) -> str:
    return f"broker:v1:{{keys:{client}}}"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One rotated key of a client. Times are epoch seconds."""

    kid: str
    private_jwk: dict[str, Any] = field(repr=False)
    created_at: float
    expires_at: float | None = None  # HelseID's expiration, from Selvbetjening
    retire_after: float | None = None  # once replaced: kept until then, then deleted

    def to_table(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_table(cls, table: dict[str, object]) -> KeyRecord | None:
        try:
            return cls(**table)  # type: ignore[arg-type]
        except TypeError:
            return None


@dataclass(frozen=True, slots=True)
class ClientKeys:
    current: str | None
    records: dict[str, KeyRecord]


class KeyRecords(Protocol):
    shared: bool

    async def read(self, client: str) -> ClientKeys: ...

    async def commit(self, client: str, new: KeyRecord, retired: KeyRecord | None) -> None:
        """Makes `new` the current key (and stores `retired`, the replaced one with its retire time), then
        announces the change."""
        ...

    async def update(self, client: str, record: KeyRecord) -> None:
        """Rewrites one record (its expiry learned, say) without changing which key is current."""
        ...

    async def delete(self, client: str, kid: str) -> None: ...

    async def try_lease(self, client: str, ttl: timedelta) -> Lease | None: ...

    async def release(self, lease: Lease) -> None: ...

    def on_change(self, callback: Callable[[str], None]) -> None: ...

    async def close(self) -> None: ...


class MemoryKeyRecords:
    shared = False

    def __init__(self) -> None:
        self._keys: dict[str, ClientKeys] = {}
        self._leases: dict[str, Lease] = {}
        self._fencing = 0
        self._callbacks: list[Callable[[str], None]] = []

    async def read(self, client: str) -> ClientKeys:
        keys = self._keys.get(client, ClientKeys(None, {}))
        return ClientKeys(keys.current, dict(keys.records))

    async def commit(self, client: str, new: KeyRecord, retired: KeyRecord | None) -> None:
        records = dict(self._keys.get(client, ClientKeys(None, {})).records)
        records[new.kid] = new
        if retired is not None:
            records[retired.kid] = retired
        self._keys[client] = ClientKeys(new.kid, records)
        for callback in self._callbacks:
            callback(client)

    async def update(self, client: str, record: KeyRecord) -> None:
        keys = self._keys.get(client, ClientKeys(None, {}))
        self._keys[client] = ClientKeys(keys.current, {**keys.records, record.kid: record})

    async def delete(self, client: str, kid: str) -> None:
        keys = self._keys.get(client)
        if keys is not None and kid != keys.current:
            self._keys[client] = ClientKeys(keys.current, {k: v for k, v in keys.records.items() if k != kid})

    async def try_lease(self, client: str, ttl: timedelta) -> Lease | None:
        if client in self._leases:
            return None
        self._fencing += 1
        lease = self._leases[client] = FencedLease(client, self._fencing)
        return lease

    async def release(self, lease: Lease) -> None:
        if self._leases.get(lease.key) == lease:
            del self._leases[lease.key]

    def on_change(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    async def close(self) -> None:
        return None


# KEYS: hash. ARGV: new kid, new field, new sealed, retired field ('' for none), retired sealed, channel,
# client. One script: the current key and its record change together, and the notice follows.
_COMMIT = """
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3], 'current', ARGV[1])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], ARGV[4], ARGV[5]) end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""


class RedisKeyRecords:
    shared = True

    def __init__(self, client: aioredis.Redis, codec: SealedCodec, listener: aioredis.Redis) -> None:
        self._redis = client
        self._codec = codec
        self._listener_client = listener
        self._commit = client.register_script(_COMMIT)
        # The one lease implementation of the store (fenced, as the token and session stores use it).
        self._leases = RedisLeases(client, lambda name, kind: f"{_hash(name)}:{kind}", guarded)
        self._callbacks: list[Callable[[str], None]] = []
        self._listener: ChannelListener | None = None

    @classmethod
    def from_url(cls, url: str | RedisAddress, key: bytes, *, timeout_s: float = 1.0) -> RedisKeyRecords:
        client = connect(url, timedelta(seconds=timeout_s))
        return cls(client, SealedCodec(key), listener(url, timeout_s))

    async def read(self, client: str) -> ClientKeys:
        fields = await guarded("keys", self._redis.hgetall(_hash(client)))
        current: str | None = None
        records: dict[str, KeyRecord] = {}
        for raw_name, raw_value in fields.items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            value = raw_value.encode() if isinstance(raw_value, str) else raw_value
            if name == "current":
                current = value.decode()
                continue
            table = self._codec.open_table(f"{_hash(client)}:{name}", value)
            record = None if table is None else KeyRecord.from_table(table)
            if record is None:
                _log.error(
                    "a stored key of client %r does not open with the store key; it is ignored", client
                )
                continue
            records[record.kid] = record
        return ClientKeys(current if current in records else None, records)

    async def commit(self, client: str, new: KeyRecord, retired: KeyRecord | None) -> None:
        name = _hash(client)
        new_field = f"key:{new.kid}"
        retired_field = "" if retired is None else f"key:{retired.kid}"
        retired_sealed = b"" if retired is None else self._seal(name, retired_field, retired)
        args: list[bytes | str] = [
            new.kid,
            new_field,
            self._seal(name, new_field, new),
            retired_field,
            retired_sealed,
            CHANNEL,
            client,
        ]
        await guarded("keys", self._commit(keys=[name], args=args))

    async def update(self, client: str, record: KeyRecord) -> None:
        name, field_name = _hash(client), f"key:{record.kid}"
        await guarded("keys", self._redis.hset(name, field_name, self._seal(name, field_name, record)))

    async def delete(self, client: str, kid: str) -> None:
        await guarded("keys", self._redis.hdel(_hash(client), f"key:{kid}"))

    async def try_lease(self, client: str, ttl: timedelta) -> Lease | None:
        return await self._leases.acquire(client, ttl)

    async def release(self, lease: Lease) -> None:
        await self._leases.release(lease)

    def on_change(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)
        if self._listener is None:
            self._listener = ChannelListener(self._listener_client, CHANNEL, self._deliver)

    def _deliver(self, notice: bytes) -> None:
        client = notice.decode(errors="replace")
        for callback in self._callbacks:
            callback(client)

    def _seal(self, name: str, field_name: str, record: KeyRecord) -> bytes:
        return self._codec.seal_table(f"{name}:{field_name}", record.to_table())

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._redis.aclose()
        await self._listener_client.aclose()
