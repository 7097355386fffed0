"""The tenants of the shared store as a source of the running configuration, kept current on every replica.

Each replica holds a copy of the stored tables. A change notice (`store/tenants.py`) carries the new version
and the tenant's name: the next version is read alone (one HGET), a gap (a notice lost while Redis was away)
reads the whole hash again, and every few seconds a cheap version check catches what pub/sub dropped. After
each change the configuration is re-merged and applied (`Reloader.reload(reread_files=False)`), so a tenant
written on one replica is served by all of them well within a second.

Validating a tenant is pydantic work; with many stored tenants it would be repeated on every reload, so each
tenant's result is kept until its table or the clients and targets it is checked against change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from broker.config import BrokerConfig
from broker.config.loader import parse_tenant
from broker.errors import BrokerError, ConfigurationError
from broker.model import Client, Target, Tenant
from broker.reload import Reloader
from broker.store.tenants import RELOAD_ALL, Table, TenantRecords

_log = logging.getLogger(__name__)

# How often a replica compares its version with the store's, for a notice pub/sub lost.
CHECK_INTERVAL_S = 5.0
RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class _Checked:
    table: Table
    clients: Mapping[str, Client]
    targets: Mapping[str, Target]
    tenant: Tenant


class StoredTenants:
    """A `TenantSource` for the reloader: the store's tenants, validated against the running clients and
    targets exactly as a tenant file is."""

    name = "the shared store"

    def __init__(self, records: TenantRecords) -> None:
        self.records = records
        self._tables: dict[str, Table] = {}
        self._version = -1  # -1: never read
        self._checked: dict[str, _Checked] = {}
        self._heard: list[tuple[int, str]] = []
        self._wake = asyncio.Event()
        self._read_all = True

    @property
    def version(self) -> int:
        return self._version

    def names(self) -> frozenset[str]:
        return frozenset(self._tables)

    def tenants(self, config: BrokerConfig) -> Mapping[str, Tenant]:
        found: dict[str, Tenant] = {}
        problems: list[tuple[str, str]] = []
        for name, table in self._tables.items():
            checked = self._checked.get(name)
            if (
                checked is not None
                and checked.table is table
                and checked.clients is config.clients
                and checked.targets is config.targets
            ):
                found[name] = checked.tenant
                continue
            try:
                tenant = parse_tenant(name, table, config)
            except ConfigurationError as exc:
                problems.extend((f"{self.name}: {path}", message) for path, message in exc.problems)
                continue
            self._checked[name] = _Checked(table, config.clients, config.targets, tenant)
            found[name] = tenant
        for name in set(self._checked) - set(self._tables):
            del self._checked[name]
        if problems:
            raise ConfigurationError(problems[0][0], problems[0][1], problems=problems)
        return found

    def remember(self, name: str, table: Table | None, version: int) -> None:
        """This replica's own write, applied at once (its notice, when it comes, is then old news)."""
        if version == self._version + 1:
            self._version = version
        else:  # another write landed in between: read everything at the next turn
            self._read_all = True
            self._wake.set()
        if table is None:
            self._tables.pop(name, None)
        else:
            self._tables[name] = table

    async def load(self) -> None:
        """Reads every stored tenant (at start and after a gap); StoreUnavailableError when Redis is down."""
        version, tables = await self.records.read_all()
        self._tables = tables
        self._version = version
        self._read_all = False

    async def run(self, reloader: Reloader) -> None:
        """Keeps the copy current and applies each change, until cancelled."""
        self.records.on_change(self._notice, self._gap)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_INTERVAL_S if self.records.shared else None)
            self._wake.clear()
            heard, self._heard = self._heard, []
            if any(name == RELOAD_ALL for _, name in heard):
                reloader.ask()
            try:
                changed = await self._catch_up([item for item in heard if item[1] != RELOAD_ALL])
            except BrokerError as exc:  # the store is away: the running tenants stay, and this retries
                _log.warning("stored tenants could not be read (%s); retrying", exc.reason)
                self._read_all = True
                await asyncio.sleep(RETRY_S)
                self._wake.set()
                continue
            if changed:
                await reloader.reload("a change in the shared store", reread_files=False)

    async def _catch_up(self, heard: list[tuple[int, str]]) -> bool:
        """Reads what changed; whether anything did."""
        changed = False
        if not self._read_all:
            for version, name in sorted(heard):
                if version <= self._version:
                    continue  # this replica's own write, or one already read
                if version != self._version + 1:
                    self._read_all = True  # a notice was lost
                    break
                self.remember(name, await self.records.read(name), version)
                changed = True
        if not self._read_all and not heard and self.records.shared:
            # The periodic check: a notice pub/sub dropped shows as a newer version.
            self._read_all = await self.records.version() != self._version
        if not self._read_all:
            return changed
        before = self._tables
        await self.load()
        return changed or before != self._tables

    def _notice(self, version: int, name: str) -> None:
        self._heard.append((version, name))
        self._wake.set()

    def _gap(self) -> None:
        self._read_all = True
        self._wake.set()
