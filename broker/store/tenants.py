"""Tenants written through the AdminService: a table per tenant in the shared store, and a notice per change.

In Redis (keys with one hash tag, so the scripts stay valid on Redis Cluster):

    broker:v1:{tenants}            hash: tenant name -> its settings, sealed (AES-256-GCM, the name as
                                   associated data), so only a holder of the store key can write a tenant
                                   the replicas will serve
    broker:v1:{tenants}:version    a counter, incremented by every change
    broker:v1:tenants:changed      pub/sub channel: "<version> <tenant name>" after each change

A change and its version are one script, so a replica that sees version n + 1 after n has missed nothing;
one that sees a gap (a notice lost while it was disconnected: pub/sub delivers at most once) reads the whole
hash again. These keys have no TTL: they are configuration, bounded by `MAX_STORED_TENANTS`.

The memory store keeps them in the process: they are lost at a restart, and seen by this process only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Protocol

import redis.asyncio as aioredis

from broker.errors import BrokerError, Reason
from broker.store.codec import SealedCodec
from broker.store.redis_client import ChannelListener, RedisAddress, connect, guarded, listener

_log = logging.getLogger(__name__)

TABLES = "broker:v1:{tenants}"
VERSION = "broker:v1:{tenants}:version"
CHANNEL = "broker:v1:tenants:changed"
# Enough for the largest suppliers (issue: a hundred thousand tenants), and a bound on what an admin caller
# can make the store hold: a table is a few hundred bytes, so at most some tens of megabytes.
MAX_STORED_TENANTS = 100_000

Table = Mapping[str, Any]
# A notice of this name asks every replica to read its configuration files again (not a tenant name: those
# start with a letter or digit).
RELOAD_ALL = "*"
Notice = Callable[[int, str], None]  # (version, tenant name) of a change another replica made

# KEYS: tables, version. ARGV: name, sealed table, limit, channel. Returns {created (0/1), version}, or
# {-1, count} when the name is new and the store is full.
_PUT = """
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1])
if exists == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return {-1, redis.call('HLEN', KEYS[1])}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local version = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], version .. ' ' .. ARGV[1])
return {1 - exists, version}
"""
# KEYS: tables, version. ARGV: name, channel. Returns the new version, or 0 when there was no such tenant.
_DELETE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local version = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], version .. ' ' .. ARGV[1])
return version
"""


# KEYS: tables, version. Returns {version or false, the hash's fields and values, flat}.
_READ_ALL = """
return {redis.call('GET', KEYS[2]), redis.call('HGETALL', KEYS[1])}
"""


class TooManyTenantsError(BrokerError):
    """The store holds `MAX_STORED_TENANTS` already; a new tenant needs another removed first."""

    reason = Reason.TOO_MANY_TENANTS


def too_many(limit: int) -> TooManyTenantsError:
    return TooManyTenantsError(f"the store holds its limit of {limit} tenants", limit=str(limit))


class TenantRecords(Protocol):
    """Where tenants written through the AdminService live."""

    shared: bool  # whether other replicas and processes see them

    async def read_all(self) -> tuple[int, dict[str, Table]]:
        """The version and every tenant's table (a table that does not open is left out, and logged)."""
        ...

    async def read(self, name: str) -> Table | None: ...

    async def version(self) -> int:
        """The version alone: what a replica compares to notice a change it did not hear of."""
        ...

    async def put(self, name: str, table: Table) -> tuple[bool, int]:
        """Stores a tenant; (whether it is new, the new version). TooManyTenantsError when full."""
        ...

    async def delete(self, name: str) -> int | None:
        """Removes a tenant; the new version, or None when there was none."""
        ...

    async def announce_reload(self) -> None:
        """Asks every replica to read its configuration files again."""
        ...

    def on_change(self, notice: Notice, on_reconnect: Callable[[], None]) -> None:
        """Calls `notice` for each change (also this replica's own) and `on_reconnect` after a gap."""
        ...

    async def close(self) -> None: ...


class MemoryTenantRecords:
    shared = False

    def __init__(self, limit: int = MAX_STORED_TENANTS) -> None:
        self._tables: dict[str, Table] = {}
        self._version = 0
        self._limit = limit

    async def read_all(self) -> tuple[int, dict[str, Table]]:
        return self._version, dict(self._tables)

    async def read(self, name: str) -> Table | None:
        return self._tables.get(name)

    async def version(self) -> int:
        return self._version

    async def announce_reload(self) -> None:
        """Nothing to tell: this process is the only one."""

    async def put(self, name: str, table: Table) -> tuple[bool, int]:
        created = name not in self._tables
        if created and len(self._tables) >= self._limit:
            raise too_many(self._limit)
        self._tables[name] = dict(table)
        self._version += 1
        return created, self._version

    async def delete(self, name: str) -> int | None:
        if self._tables.pop(name, None) is None:
            return None
        self._version += 1
        return self._version

    def on_change(self, notice: Notice, on_reconnect: Callable[[], None]) -> None:
        """Nothing to hear: no one else writes this process's memory."""

    async def close(self) -> None:
        return None


class RedisTenantRecords:
    shared = True

    def __init__(
        self,
        client: aioredis.Redis,
        codec: SealedCodec,
        listener: aioredis.Redis,
        limit: int = MAX_STORED_TENANTS,
    ) -> None:
        self._redis = client
        self._codec = codec
        self._listener_client = listener
        self._limit = limit
        self._put = client.register_script(_PUT)
        self._delete = client.register_script(_DELETE)
        self._read_all = client.register_script(_READ_ALL)
        self._listener: ChannelListener | None = None

    @classmethod
    def from_url(cls, url: str | RedisAddress, key: bytes, *, timeout_s: float = 1.0) -> RedisTenantRecords:
        client = connect(url, timedelta(seconds=timeout_s))
        # Pub/sub blocks on reads by design, so it gets a connection without a read timeout.
        return cls(client, SealedCodec(key), listener(url, timeout_s))

    async def read_all(self) -> tuple[int, dict[str, Table]]:
        # One script: the version belongs to exactly these tables (and it runs on one slot of a cluster).
        version, flat = await guarded("tenants", self._read_all(keys=[TABLES, VERSION]))
        sealed = dict(zip(flat[::2], flat[1::2], strict=True))
        tables: dict[str, Table] = {}
        for raw_name, blob in sealed.items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            table = self._codec.open_table(_record(name), blob)
            if table is None:
                # Written without the store key (or tampered with): never served.
                _log.error("stored tenant %r does not open with the store key; it is ignored", name[:64])
                continue
            tables[name] = table
        return int(version or 0), tables

    async def read(self, name: str) -> Table | None:
        blob: bytes | None = await guarded("tenants", self._redis.hget(TABLES, name))  # type: ignore[arg-type]
        return None if blob is None else self._codec.open_table(_record(name), blob)

    async def version(self) -> int:
        return int(await guarded("tenants", self._redis.get(VERSION)) or 0)

    async def announce_reload(self) -> None:
        """Asks every replica to read its configuration files again (ReloadConfiguration)."""
        await guarded("tenants", self._redis.publish(CHANNEL, f"0 {RELOAD_ALL}"))

    async def put(self, name: str, table: Table) -> tuple[bool, int]:
        sealed = self._codec.seal_table(_record(name), dict(table))
        created, version = await guarded(
            "tenants", self._put(keys=[TABLES, VERSION], args=[name, sealed, self._limit, CHANNEL])
        )
        if int(created) < 0:
            raise too_many(self._limit)
        return bool(created), int(version)

    async def delete(self, name: str) -> int | None:
        version = await guarded("tenants", self._delete(keys=[TABLES, VERSION], args=[name, CHANNEL]))
        return int(version) or None

    def on_change(self, notice: Notice, on_reconnect: Callable[[], None]) -> None:
        if self._listener is None:
            self._listener = ChannelListener(
                self._listener_client,
                CHANNEL,
                lambda data: _deliver(data.decode(errors="replace"), notice),
                on_reconnect,
            )

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._redis.aclose()
        await self._listener_client.aclose()


def _record(name: str) -> str:
    return f"{TABLES}:{name}"


def _deliver(text: str, notice: Notice) -> None:
    version, _, name = text.partition(" ")
    if version.isdigit() and name:
        notice(int(version), name)
