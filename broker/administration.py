"""What the AdminService does on a replica: the port `api/admin.py` calls, over the reloader and the stored
tenants.

A tenant written here is validated against the running clients and targets exactly as a tenant file is,
stored (sealed) in the shared store, applied to this replica before the call returns, and announced to the
others, which apply it within a second (`stored_tenants.py`). Tenants of the files are the files': writing or
deleting one here is refused (TENANT_MANAGED_BY_FILES), so the API can never override reviewed
configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from broker.api.admin import KeyEntry, TenantEntry
from broker.config import BrokerConfig
from broker.config.loader import parse_tenant
from broker.errors import (
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    Reason,
)
from broker.model import ReloadOutcome
from broker.reload import Reloader
from broker.rotation import KeyRotator
from broker.stored_tenants import StoredTenants


class Administration:
    def __init__(
        self, reloader: Reloader, stored: StoredTenants, *, workers: int, rotator: KeyRotator | None = None
    ) -> None:
        self._reloader = reloader
        self._stored = stored
        self._workers = workers
        self._rotator = rotator

    @property
    def _config(self) -> BrokerConfig:
        return self._reloader.config

    def tenants(self) -> Sequence[TenantEntry]:
        files = self._reloader.file_tenants
        return [TenantEntry(tenant, name in files) for name, tenant in sorted(self._config.tenants.items())]

    def tenant(self, name: str) -> TenantEntry | None:
        tenant = self._config.tenants.get(name)
        return None if tenant is None else TenantEntry(tenant, name in self._reloader.file_tenants)

    async def upsert_tenant(self, name: str, table: Mapping[str, Any]) -> tuple[TenantEntry, bool]:
        if name in self._reloader.file_tenants:
            raise _managed_by_files(name)
        if not self._stored.records.shared and self._workers > 1:
            raise ConfigurationError(
                "store.kind",
                'tenants written through the AdminService need a shared store (kind = "redis") when '
                "workers > 1: each worker process would otherwise hold its own",
            )
        try:
            tenant = parse_tenant(name, table, self._config)
        except ConfigurationError as exc:
            raise _invalid_settings(name, exc) from None
        created, version = await self._stored.records.put(name, table)
        self._stored.remember(name, dict(table), version)
        await self._reloader.reload_or_raise(f"UpsertTenant {name}", reread_files=False)
        return TenantEntry(tenant, from_files=False), created

    async def delete_tenant(self, name: str) -> None:
        if name in self._reloader.file_tenants and name not in self._stored.names():
            raise _managed_by_files(name)
        version = await self._stored.records.delete(name)
        if version is None:
            raise NotFoundError(f"unknown tenant {name!r}", reason=Reason.TENANT_NOT_FOUND, tenant=name)
        self._stored.remember(name, None, version)
        await self._reloader.reload_or_raise(f"DeleteTenant {name}", reread_files=False)

    async def reload(self) -> ReloadOutcome:
        outcome = await self._reloader.reload_or_raise("ReloadConfiguration")
        await self._stored.records.announce_reload()
        return outcome

    async def keys(self) -> Sequence[KeyEntry]:
        entries: list[KeyEntry] = []
        for name, client in sorted(self._config.clients.items()):
            if self._rotator is not None and client.rotation is not None:
                entries += await self._rotator.keys_of(name)
            else:
                entries.append(KeyEntry(client, client.signing_key, current=True))
        return entries


def _managed_by_files(name: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"tenant {name!r} is defined in the configuration files: change it there",
        reason=Reason.TENANT_MANAGED_BY_FILES,
        tenant=name,
    )


def _invalid_settings(name: str, error: ConfigurationError) -> InvalidRequestError:
    """A tenant file's mistakes (`tenants.<name>.orgnr_parent`) by their path in the request
    (`settings.orgnr_parent`)."""
    prefix = f"tenants.{name}"
    violations = [
        (f"settings{path[len(prefix) :]}" if path.startswith(prefix) else path, message)
        for path, message in error.problems
    ]
    return InvalidRequestError(violations[0][0], violations[0][1], violations=violations)
