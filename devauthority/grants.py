"""Grant types of the token endpoint, one function each.

A grant receives a request whose client is already authenticated and whose DPoP proof (if any) is
already verified, and returns the JSON body of the token response. The machine grant lives here; the
grants that follow a user login are in login_grants.py. ``Authority`` maps grant types to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .details import read_details
from .registry import CLIENT_CREDENTIALS, RegisteredClient
from .scopes import decide_scopes
from .tokens import TokenContents, TokenIssuer

__all__ = ["CLIENT_CREDENTIALS", "Grant", "GrantRequest", "client_credentials"]


@dataclass(frozen=True)
class GrantRequest:
    params: Mapping[str, str]  # the form, each parameter once
    resources: tuple[str, ...]  # `resource` is the one parameter that may repeat (RFC 8707)
    client: RegisteredClient
    assertion_claims: Mapping[str, Any]
    jkt: str | None  # thumbprint of the DPoP key the token is bound to; None for a Bearer token


class Grant(Protocol):
    def __call__(self, request: GrantRequest, tokens: TokenIssuer) -> dict[str, Any]: ...


def client_credentials(request: GrantRequest, tokens: TokenIssuer) -> dict[str, Any]:
    """Machine-to-machine: orgs and journal id come from the assertion's details claim."""
    details = read_details(request.assertion_claims, request.client)
    decision = decide_scopes(
        request.client,
        scope=request.params.get("scope"),
        resources=request.resources,
        details=details,
    )
    issued = tokens.issue(
        TokenContents(
            client=request.client,
            scopes=decision.granted,
            audience=decision.audience,
            details=details,
            jkt=request.jkt,
        )
    )
    body: dict[str, Any] = {
        "access_token": issued.access_token,
        "token_type": issued.token_type,
        "expires_in": issued.expires_in,
        "scope": " ".join(decision.granted),
    }
    if decision.rejected:
        body["rejected_scope"] = " ".join(decision.rejected)
    return body
