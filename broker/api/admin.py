"""The handlers of broker.v1.AdminService: tenants, reloads and public keys, for callers granted `admin`.

What they change lives above the API (the reloader and the stored tenants, `broker/administration.py`);
this module sees it through the `Administration` port and only converts between messages and the model.
A tenant's settings are turned into the table a tenant file holds and validated exactly as one; the
answer names every bad field by its path in the request (`settings.orgnr_parent`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from broker.api import rpc
from broker.errors import NotFoundError, Reason
from broker.model import Client, ReloadOutcome, SigningKey, Tenant
from broker.protocol import keys
from broker.v1 import admin_service_pb2 as pb

DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class TenantEntry:
    tenant: Tenant
    from_files: bool  # else: from the shared store


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One active key of a client: the one it signs with, or a replaced one still kept."""

    client: Client
    key: SigningKey
    current: bool
    expires_at: datetime | None = None  # HelseID's, from Selvbetjening
    origin: str = ""  # Selvbetjening's: "Api" or "Gui"
    retire_at: datetime | None = None


class Administration(Protocol):
    """What the AdminService changes and reads on this replica."""

    def tenants(self) -> Sequence[TenantEntry]:
        """Every tenant served, by name."""
        ...

    def tenant(self, name: str) -> TenantEntry | None: ...

    async def upsert_tenant(self, name: str, table: Mapping[str, Any]) -> tuple[TenantEntry, bool]:
        """Validates and stores a tenant, serving it here before it returns; (entry, whether it is new).
        InvalidRequestError names every bad field by its path in the table."""
        ...

    async def delete_tenant(self, name: str) -> None: ...

    async def reload(self) -> ReloadOutcome:
        """Reloads the files here and asks the other replicas to; ConfigurationError when invalid."""
        ...

    async def keys(self) -> Sequence[KeyEntry]:
        """Every active key of every client, by client name, the current key first."""
        ...


class AdminServicer:
    def __init__(self, administration: Administration) -> None:
        self._administration = administration

    def handlers(self) -> dict[str, rpc.Handler]:
        return {
            "ListTenants": rpc.Unary(self.list_tenants, event="admin.tenants.listed", admin=True),
            "GetTenant": rpc.Unary(self.get_tenant, event="admin.tenant.read", admin=True),
            "UpsertTenant": rpc.Unary(self.upsert_tenant, event="admin.tenant.upserted", admin=True),
            "DeleteTenant": rpc.Unary(self.delete_tenant, event="admin.tenant.deleted", admin=True),
            "ReloadConfiguration": rpc.Unary(self.reload, event="admin.reloaded", admin=True),
            "GetPublicJwks": rpc.Unary(self.public_jwks, event="admin.keys.read", admin=True),
        }

    async def list_tenants(self, call: rpc.Call[pb.ListTenantsRequest]) -> pb.ListTenantsResponse:
        request = call.request
        granted = None if call.caller is None else call.caller.tenants  # None: every tenant
        entries = [
            entry
            for entry in self._administration.tenants()
            if entry.tenant.name > request.page_token and (granted is None or entry.tenant.name in granted)
        ]
        size = request.page_size or DEFAULT_PAGE_SIZE
        page = entries[:size]
        more = len(entries) > size
        return pb.ListTenantsResponse(
            tenants=[_tenant(entry) for entry in page], next_page_token=page[-1].tenant.name if more else ""
        )

    async def get_tenant(self, call: rpc.Call[pb.GetTenantRequest]) -> pb.GetTenantResponse:
        entry = self._administration.tenant(call.request.tenant)
        if entry is None:
            raise _unknown(call.request.tenant)
        return pb.GetTenantResponse(tenant=_tenant(entry))

    async def upsert_tenant(self, call: rpc.Call[pb.UpsertTenantRequest]) -> pb.UpsertTenantResponse:
        request = call.request
        entry, created = await self._administration.upsert_tenant(request.tenant, _table(request.settings))
        return pb.UpsertTenantResponse(tenant=_tenant(entry), created=created)

    async def delete_tenant(self, call: rpc.Call[pb.DeleteTenantRequest]) -> pb.DeleteTenantResponse:
        await self._administration.delete_tenant(call.request.tenant)
        return pb.DeleteTenantResponse()

    async def reload(self, call: rpc.Call[pb.ReloadConfigurationRequest]) -> pb.ReloadConfigurationResponse:
        outcome = await self._administration.reload()
        return pb.ReloadConfigurationResponse(
            tenants=len(self._administration.tenants()),
            added_tenants=outcome.added_tenants,
            removed_tenants=outcome.removed_tenants,
            routes_added=outcome.routes_added,
            routes_removed=outcome.routes_removed,
            tokens_dropped=outcome.tokens_dropped,
            warming=outcome.warming,
            needs_restart=outcome.needs_restart,
        )

    async def public_jwks(self, call: rpc.Call[pb.GetPublicJwksRequest]) -> pb.GetPublicJwksResponse:
        return pb.GetPublicJwksResponse(keys=[_key(entry) for entry in await self._administration.keys()])


def _key(entry: KeyEntry) -> pb.ClientPublicKey:
    key = entry.key
    answer = pb.ClientPublicKey(
        client=entry.client.name,
        client_id=entry.client.client_id,
        jwk_json=json.dumps(keys.public_jwk(key), separators=(",", ":")),
        kid=key.kid,
        alg=key.alg,
        thumbprint=key.thumbprint,
        location=key.where,
        current=entry.current,
        origin=entry.origin,
    )
    if entry.expires_at is not None:
        answer.expire_time.FromDatetime(entry.expires_at)
    if entry.retire_at is not None:
        answer.retire_time.FromDatetime(entry.retire_at)
    return answer


def _unknown(name: str) -> NotFoundError:
    return NotFoundError(f"unknown tenant {name!r}", reason=Reason.TENANT_NOT_FOUND, tenant=name)


def _table(settings: pb.TenantSettings) -> dict[str, Any]:
    """The table a tenant file would hold: only the fields that are set, so defaults stay the file's."""
    table: dict[str, Any] = {"client": settings.client, "targets": list(settings.targets)}
    if settings.warm:
        table["warm"] = list(settings.warm)
    for name in ("orgnr_parent", "orgnr_child", "sfm_journal_id"):
        if value := getattr(settings, name):
            table[name] = value
    return table


def _tenant(entry: TenantEntry) -> pb.Tenant:
    tenant = entry.tenant
    return pb.Tenant(
        name=tenant.name,
        settings=pb.TenantSettings(
            client=tenant.client,
            targets=tenant.targets,
            warm=tenant.warm_targets,
            orgnr_parent=tenant.orgnr_parent or "",
            orgnr_child=tenant.orgnr_child or "",
            sfm_journal_id=tenant.sfm_journal_id or "",
        ),
        source=pb.TENANT_SOURCE_FILES if entry.from_files else pb.TENANT_SOURCE_STORE,
    )
