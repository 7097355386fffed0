"""Resolves a caller's (tenant, target) into everything a token depends on, once per configuration.

The cache key covers everything that changes the token: tenant, client (id and issuer), signing `kid`, DPoP
key thumbprint, target (resource, scopes, token type) and the canonical `assertion_details`. Anchors that
keyed on less served one tenant's token to another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.errors import NotFoundError, PermissionDeniedError, Reason
from broker.model import Client, Target, Tenant
from broker.protocol import helseid

KEY_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class Route:
    """One servable (tenant, target) pair and the key its tokens are cached under."""

    tenant: Tenant
    target: Target
    client: Client
    details: tuple[dict[str, Any], ...] = field(repr=False)
    cache_key: str


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One configuration's routes; never changed, only replaced whole."""

    targets: Mapping[str, Target]
    tenants: Mapping[str, Tenant]
    routes: Mapping[tuple[str, str], Route]
    by_key: Mapping[str, Route]


def _snapshot(
    clients: Mapping[str, Client], targets: Mapping[str, Target], tenants: Mapping[str, Tenant]
) -> _Snapshot:
    routes: dict[tuple[str, str], Route] = {}
    for tenant in tenants.values():
        for target_name in tenant.targets:
            routes[(tenant.name, target_name)] = build_route(
                tenant, targets[target_name], clients[tenant.client]
            )
    by_key = {route.cache_key: route for route in routes.values()}
    return _Snapshot(dict(targets), dict(tenants), routes, by_key)


class RouteTable:
    """All routes of a configuration; `resolve` is a dict lookup on the hot path.

    The engine, the login service, session tokens and the exchanger share one table; `replace` swaps in a
    reloaded configuration's routes with one assignment, so every holder sees the whole new table at once
    and no call sees half of each."""

    def __init__(
        self, clients: Mapping[str, Client], targets: Mapping[str, Target], tenants: Mapping[str, Tenant]
    ) -> None:
        self._table = _snapshot(clients, targets, tenants)

    def replace(
        self, clients: Mapping[str, Client], targets: Mapping[str, Target], tenants: Mapping[str, Tenant]
    ) -> RouteChanges:
        """Serves these routes from now on; says which cache keys came and went."""
        old = self._table
        self._table = new = _snapshot(clients, targets, tenants)
        return RouteChanges(
            added=[route for key, route in new.by_key.items() if key not in old.by_key],
            removed=[route for key, route in old.by_key.items() if key not in new.by_key],
        )

    def resolve(self, tenant: str, target: str) -> Route:
        table = self._table  # one read: a replace during this call cannot mix two tables
        route = table.routes.get((tenant, target))
        if route is not None:
            return route
        if tenant not in table.tenants:
            raise NotFoundError(f"no tenant named {tenant!r}", reason=Reason.TENANT_NOT_FOUND, tenant=tenant)
        if target not in table.targets:
            raise NotFoundError(f"no target named {target!r}", reason=Reason.TARGET_NOT_FOUND, target=target)
        raise PermissionDeniedError(
            f"tenant {tenant!r} may not use target {target!r}",
            reason=Reason.TARGET_NOT_ALLOWED,
            tenant=tenant,
            target=target,
        )

    def routes(self) -> list[Route]:
        return list(self._table.routes.values())

    def by_key(self, cache_key: str) -> Route | None:
        return self._table.by_key.get(cache_key)

    def warm(self) -> list[Route]:
        """The routes the configuration asks to keep fetched and fresh without waiting for a caller."""
        return [route for route in self._table.routes.values() if is_warm(route)]


@dataclass(frozen=True, slots=True)
class RouteChanges:
    """What a `replace` changed: routes whose cache key is new, and those whose key no longer exists (a
    changed tenant or target changes its key, so it appears in both)."""

    added: list[Route]
    removed: list[Route]


def is_warm(route: Route) -> bool:
    return route.target.name in route.tenant.warm_targets


def build_route(tenant: Tenant, target: Target, client: Client) -> Route:
    details = helseid.build_assertion_details(
        client.tenancy,
        orgnr_parent=tenant.orgnr_parent,
        orgnr_child=tenant.orgnr_child,
        sfm_journal_id=tenant.sfm_journal_id,
    )
    return Route(tenant, target, client, details, cache_key(tenant, target, client, details))


def cache_key(tenant: Tenant, target: Target, client: Client, details: tuple[dict[str, Any], ...]) -> str:
    material = {
        "tenant": tenant.name,
        "issuer": client.issuer,
        "client_id": client.client_id,
        "kid": client.signing_key.kid,
        "jkt": client.dpop_key.thumbprint,
        "resource": target.resource,
        "scopes": sorted(target.scopes),
        "token_type": target.token_type.value,
        "details": helseid.canonical_details_hash(details),
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{KEY_VERSION}:{tenant.name}:{target.name}:{digest[:32]}"
