"""Which scopes a token request gets, and the audience (``aud``) that follows from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .details import RequestedDetails
from .errors import INVALID_SCOPE, INVALID_TARGET, OAuthError
from .registry import RegisteredClient, audience_of_scope

# Scopes that describe a user. A machine token has no user, so HelseID answers them with invalid_scope.
_IDENTITY_SCOPES = frozenset({"openid", "profile", "offline_access"})
_IDENTITY_PREFIXES = ("helseid://scopes/identity/", "helseid://scopes/hpr/")


@dataclass(frozen=True)
class ScopeDecision:
    granted: tuple[str, ...]
    rejected: tuple[str, ...]  # dropped because the tenant has not signed the terms; see rejected_scope
    audience: str | tuple[str, ...] | None


def decide_scopes(
    client: RegisteredClient,
    *,
    scope: str | None,
    resources: Sequence[str],
    details: RequestedDetails,
) -> ScopeDecision:
    """Check the requested scopes and ``resource`` (RFC 8707) against the client's registration."""
    requested = tuple(dict.fromkeys((scope or "").split()))
    # HelseID's client_credentials needs explicit scopes; we don't fall back to "all allowed scopes"
    # because that would hide a broker target configured without any.
    if not requested:
        raise OAuthError(INVALID_SCOPE, "scope is required")
    for name in requested:
        if name in _IDENTITY_SCOPES or name.startswith(_IDENTITY_PREFIXES):
            raise OAuthError(INVALID_SCOPE, f"identity scope {name!r} cannot be used without a user")
    not_allowed = [s for s in requested if s not in client.allowed_scopes]
    if not_allowed:
        raise OAuthError(INVALID_SCOPE, f"client {client.client_id!r} may not use scopes {not_allowed}")

    resource = _single_resource(client, resources)
    if resource is not None:
        foreign = [s for s in requested if audience_of_scope(s) not in (None, resource)]
        if foreign:
            raise OAuthError(INVALID_SCOPE, f"scopes {foreign} do not belong to resource {resource!r}")

    # HelseID drops the scopes whose terms the tenant has not signed and reports them in rejected_scope.
    unsigned: Sequence[str] = ()
    if client.tenancy == "multi" and details.orgnr_parent is not None:
        unsigned = client.not_signed.get(details.orgnr_parent, ())
    granted = tuple(s for s in requested if s not in unsigned)
    rejected = tuple(s for s in requested if s in unsigned)
    if not granted:
        raise OAuthError(
            INVALID_SCOPE,
            f"organization {details.orgnr_parent} has not signed the terms of any requested scope",
        )
    return ScopeDecision(granted=granted, rejected=rejected, audience=resource or _audience(granted))


def _single_resource(client: RegisteredClient, resources: Sequence[str]) -> str | None:
    if not resources:
        return None
    # National APIs want single-audience tokens, and a broker asks for one audience per token.
    if len(resources) > 1:
        raise OAuthError(INVALID_TARGET, "ask for one resource per token request")
    resource = resources[0]
    if resource not in client.resources:
        raise OAuthError(INVALID_TARGET, f"client {client.client_id!r} may not use resource {resource!r}")
    return resource


def _audience(scopes: Sequence[str]) -> str | tuple[str, ...] | None:
    audiences = tuple(dict.fromkeys(a for a in map(audience_of_scope, scopes) if a is not None))
    if not audiences:
        return None
    return audiences[0] if len(audiences) == 1 else audiences
