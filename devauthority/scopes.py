"""Which scopes a token request gets, and the audience (``aud``) that follows from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .details import RequestedDetails
from .errors import INVALID_SCOPE, INVALID_TARGET, OAuthError
from .registry import REFRESH_TOKEN, RegisteredClient, audience_of_scope
from .users import SCOPE_OFFLINE_ACCESS, SCOPE_OPENID, STANDARD_IDENTITY_SCOPES, is_identity_scope


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
    # Scopes that describe a user. A machine token has no user, so HelseID answers them with invalid_scope.
    for name in requested:
        if is_identity_scope(name):
            raise OAuthError(INVALID_SCOPE, f"identity scope {name!r} cannot be used without a user")
    not_allowed = [s for s in requested if s not in client.allowed_scopes]
    if not_allowed:
        raise OAuthError(INVALID_SCOPE, f"client {client.client_id!r} may not use scopes {not_allowed}")

    resource = _single_resource(client, resources)
    if resource is not None:
        foreign = [s for s in requested if audience_of_scope(s) not in (None, resource)]
        if foreign:
            raise OAuthError(INVALID_SCOPE, f"scopes {foreign} do not belong to resource {resource!r}")

    granted, rejected = split_unsigned(client, requested, details)
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


def split_unsigned(
    client: RegisteredClient, scopes: Sequence[str], details: RequestedDetails
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(granted, rejected): HelseID drops the scopes whose terms the tenant has not signed and reports
    them in ``rejected_scope``."""
    unsigned: Sequence[str] = ()
    if client.tenancy == "multi" and details.orgnr_parent is not None:
        unsigned = client.not_signed.get(details.orgnr_parent, ())
    return tuple(s for s in scopes if s not in unsigned), tuple(s for s in scopes if s in unsigned)


def login_scopes(client: RegisteredClient, scope: str | None) -> tuple[str, ...]:
    """The scopes of a user login (PAR), checked against the client, or ``invalid_scope``.

    ``openid`` is required. The standard identity scopes are open to every client allowed the
    authorization_code grant, other identity scopes only when listed in ``allowed_scopes``;
    ``offline_access`` also needs the refresh_token grant. API scopes must be in ``allowed_scopes``.
    """
    requested = tuple(dict.fromkeys((scope or "").split()))
    if SCOPE_OPENID not in requested:
        raise OAuthError(INVALID_SCOPE, "a user login needs the openid scope")
    refused = [s for s in requested if s not in client.allowed_scopes and s not in STANDARD_IDENTITY_SCOPES]
    if refused:
        raise OAuthError(INVALID_SCOPE, f"client {client.client_id!r} may not use scopes {refused}")
    if SCOPE_OFFLINE_ACCESS in requested and REFRESH_TOKEN not in client.grant_types:
        raise OAuthError(
            INVALID_SCOPE, f"{SCOPE_OFFLINE_ACCESS} needs the {REFRESH_TOKEN} grant in the registration"
        )
    return requested


def scopes_for_resource(scopes: Sequence[str], resource: str | None) -> tuple[str, ...]:
    """The scopes a token for ``resource`` carries: its API's scopes plus those of no API (identity...)."""
    if resource is None:
        return tuple(scopes)
    return tuple(s for s in scopes if audience_of_scope(s) in (None, resource))


def audience_of(resources: Sequence[str]) -> str | tuple[str, ...] | None:
    """``aud`` for a list of resources: one string, a list (HelseID's multi-aud token), or none."""
    if not resources:
        return None
    return resources[0] if len(resources) == 1 else tuple(resources)
