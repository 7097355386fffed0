"""Reloading the configuration while the broker runs: on SIGHUP, and when the main file or the tenants
directory changes on disk (looked at every second; each replica watches its own mount).

The new configuration is read and validated whole, then applied in one step: the route table is swapped
(every holder sees the new one at once), tokens whose cache key no longer exists leave process memory, and
warm routes that are new start warming. What can change at run time is the tenants, targets and clients
(their keys included); a change to anything else (listen address, workers, TLS, store, callers, cache,
limits, telemetry, audit) keeps the running value and logs that it needs a restart. An invalid
configuration keeps the running one: the error is logged with the field paths (never a value) and counted
in `broker.config.reloads{outcome="invalid"}`.

Tenants also come from other places than the files (the shared store, written through the AdminService):
each is a named `TenantSource` merged into every configuration read. The files win: a tenant named by both is
the files' (the other place's is shadowed, and a warning names it), because the files are the reviewed,
declared state, and an API write must never silently override them. A change in a source re-merges the
files as last read (`reread_files=False`), without touching the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Protocol

from broker.config import BrokerConfig, load_config
from broker.config.directory import tenant_file_paths
from broker.errors import ConfigurationError
from broker.model import ReloadOutcome, SigningKey, Tenant
from broker.telemetry import Metrics
from broker.tokens.engine import TokenEngine
from broker.tokens.routes import Route
from broker.tokens.scheduler import RefreshScheduler

_log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
# What a reload applies; every other field of BrokerConfig is fixed at start.
RELOADABLE = frozenset({"clients", "targets", "tenants", "tenants_directory"})

Fingerprint = tuple[tuple[str, int, int, int] | None, ...]


class TenantSource(Protocol):
    """Another place tenants come from, merged into every configuration the reload reads."""

    name: str

    def tenants(self, config: BrokerConfig) -> Mapping[str, Tenant]: ...


def fingerprint(main: Path, directory: Path | None) -> Fingerprint:
    """What tells a change on disk: name, inode, size and mtime of the main file and each tenant file
    (symlinks followed, so a ConfigMap's `..data` swap shows as new inodes)."""
    paths = [main, *([] if directory is None else tenant_file_paths(directory))]
    return tuple(_stat(path) for path in paths)


def _stat(path: Path) -> tuple[str, int, int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (path.name, found.st_ino, found.st_size, found.st_mtime_ns)


def with_sources(config: BrokerConfig, sources: Sequence[TenantSource]) -> BrokerConfig:
    """`config` (from the files) with each source's tenants added; a name already taken keeps the first
    place's tenant (the files', then the sources' in order) and the later one is logged as shadowed. A
    source's invalid tenant raises ConfigurationError (its paths name the source)."""
    tenants = dict(config.tenants)
    origin = dict.fromkeys(tenants, "the configuration files")
    problems: list[tuple[str, str]] = []
    for source in sources:
        try:
            found = source.tenants(config)
        except ConfigurationError as exc:
            problems.extend(exc.problems)
            continue
        for name, tenant in found.items():
            if name in tenants:
                _log.warning(
                    "tenant %r is defined in %s and in %s: the first is served, delete the other",
                    name,
                    origin[name],
                    source.name,
                )
                continue
            tenants[name] = tenant
            origin[name] = source.name
    if problems:
        raise ConfigurationError(problems[0][0], problems[0][1], problems=problems)
    return replace(config, tenants=tenants)


def with_signing_keys(config: BrokerConfig, keys: Mapping[str, SigningKey]) -> BrokerConfig:
    """`config` with the rotated signing keys of its clients (a client no longer configured is skipped)."""
    if not keys:
        return config
    clients = {
        name: replace(client, signing_key=keys[name]) if name in keys else client
        for name, client in config.clients.items()
    }
    return replace(config, clients=clients)


def rekeyed(removed: Sequence[Route], added: Sequence[Route]) -> list[tuple[Route, Route]]:
    """The (old, new) route pairs that differ only in their client's signing key."""
    by_pair = {(route.tenant.name, route.target.name): route for route in added}
    moves = []
    for old in removed:
        new = by_pair.get((old.tenant.name, old.target.name))
        if (
            new is not None
            and old.tenant == new.tenant
            and old.target == new.target
            and replace(old.client, signing_key=new.client.signing_key) == new.client
        ):
            moves.append((old, new))
    return moves


def restart_needed(running: BrokerConfig, new: BrokerConfig) -> tuple[str, ...]:
    """The settings that differ but cannot change while running."""
    return tuple(
        item.name
        for item in fields(BrokerConfig)
        if item.name not in RELOADABLE and getattr(running, item.name) != getattr(new, item.name)
    )


class Reloader:
    """Holds the running configuration and applies valid new ones to the engine and the scheduler."""

    def __init__(
        self,
        path: Path | None,
        config: BrokerConfig,
        engine: TokenEngine,
        scheduler: RefreshScheduler,
        *,
        metrics: Metrics,
        read: Callable[[Path], BrokerConfig] = load_config,
        sources: Sequence[TenantSource] = (),
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.path = path  # None: the embedded defaults, no files to read again
        self.config = config
        # The configuration as the files last gave it, before the sources' tenants were merged in.
        self._from_files = config
        # Signing keys made by rotation (`broker/rotation.py`): they replace the files' keys of their clients.
        self._signing_keys: dict[str, SigningKey] = {}
        self._engine = engine
        self._scheduler = scheduler
        self._metrics = metrics
        self._read = read
        self._sources = sources
        self._poll_interval_s = poll_interval_s
        self._asked = asyncio.Event()
        self._lock = asyncio.Lock()

    def ask(self) -> None:
        """Reload at the next moment (SIGHUP)."""
        self._asked.set()

    def listen_for_sighup(self) -> None:
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.ask)

    @property
    def file_tenants(self) -> frozenset[str]:
        """The tenants the files define (which the AdminService may not change)."""
        return frozenset(self._from_files.tenants)

    async def run(self) -> None:
        """Reloads when asked or when the files change, until cancelled."""
        if self.path is None:
            return
        last = await asyncio.to_thread(fingerprint, self.path, self.config.tenants_directory)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._asked.wait(), self._poll_interval_s)
            asked = self._asked.is_set()
            self._asked.clear()
            # Taken before reading: a write that lands during the read changes it again, and is reloaded.
            now = await asyncio.to_thread(fingerprint, self.path, self.config.tenants_directory)
            if asked or now != last:
                last = now
                await self.reload("SIGHUP" if asked else "a change on disk")

    async def reload(self, trigger: str, *, reread_files: bool = True) -> ReloadOutcome | None:
        """Reads, validates and applies the configuration; None when it was invalid (the old one stays)."""
        try:
            return await self.reload_or_raise(trigger, reread_files=reread_files)
        except ConfigurationError:
            return None

    async def reload_or_raise(self, trigger: str, *, reread_files: bool = True) -> ReloadOutcome:
        """As `reload`, but an invalid configuration raises its ConfigurationError (also logged and
        counted), for the AdminService to answer with."""
        async with self._lock:
            try:
                read = self._from_files
                if reread_files and self.path is not None:
                    read = await asyncio.to_thread(self._read, self.path)
                new = with_signing_keys(with_sources(read, self._sources), self._signing_keys)
            except ConfigurationError as exc:
                self._metrics.config_reload("invalid")
                mistakes = "; ".join(f"{path}: {message}" for path, message in exc.problems)
                _log.error(
                    "configuration reload (%s) refused, the running configuration stays: %d mistake(s): %s",
                    trigger,
                    len(exc.problems),
                    mistakes,
                )
                raise
            applied = self.apply(new)
            self._from_files = read
        self._metrics.config_reload("applied")
        _log.info(
            "configuration reloaded (%s): %d tenants (added %s, removed %s), %d routes added, %d removed, "
            "%d cached tokens dropped, %d routes warming",
            trigger,
            len(self.config.tenants),
            list(applied.added_tenants) or "none",
            list(applied.removed_tenants) or "none",
            applied.routes_added,
            applied.routes_removed,
            applied.tokens_dropped,
            applied.warming,
        )
        if applied.needs_restart:
            _log.warning(
                "configuration changes to %s take effect only after a restart; the running values stay",
                ", ".join(applied.needs_restart),
            )
        return applied

    async def use_signing_key(self, client: str, key: SigningKey) -> ReloadOutcome | None:
        """Signs for `client` with `key` from now on (a rotated key), above whatever key the files name;
        its tokens keep being served until they go stale (`TokenEngine.carry`)."""
        self._signing_keys[client] = key
        return await self.reload(f"the rotated key {key.kid} of client {client}", reread_files=False)

    def apply(self, new: BrokerConfig) -> ReloadOutcome:
        """Swaps in the reloadable part of `new` (synchronously: no call sees half of it)."""
        running = self.config
        routes = self._engine.routes
        warm_before = routes.warm()
        changes = routes.replace(new.clients, new.targets, new.tenants)
        moves = rekeyed(changes.removed, changes.added)
        self._engine.carry(moves)
        carried = {old.cache_key for old, _ in moves}
        dropped = self._engine.drop(route for route in changes.removed if route.cache_key not in carried)
        warm_after = routes.warm()
        self._scheduler.rewarm(warm_before, warm_after, running.cache.refresh_budget_per_s)
        warm_keys = {route.cache_key for route in warm_before}
        self.config = replace(running, **{name: getattr(new, name) for name in RELOADABLE})
        return ReloadOutcome(
            added_tenants=tuple(sorted(set(new.tenants) - set(running.tenants))),
            removed_tenants=tuple(sorted(set(running.tenants) - set(new.tenants))),
            routes_added=len(changes.added),
            routes_removed=len(changes.removed),
            tokens_dropped=dropped,
            warming=sum(route.cache_key not in warm_keys for route in warm_after),
            needs_restart=restart_needed(running, new),
        )
