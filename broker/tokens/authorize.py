"""Ready-to-send `Authorization` and `DPoP` header values for one HTTP request (RFC 9449 §7).

Proofs are minted only for URLs the target allows, so a caller cannot turn the broker into a signing oracle
for arbitrary hosts.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from broker.errors import InvalidRequestError, PermissionDeniedError, Reason
from broker.model import AccessToken, TokenType
from broker.protocol import rfc9449
from broker.tokens.engine import TokenEngine
from broker.tokens.routes import Route

# RFC 9110 §9.1: a method is a token; proofs carry it upper-case.
_METHOD = re.compile(r"^[A-Za-z]{1,16}$")


@dataclass(frozen=True, slots=True)
class RequestAuthorization:
    authorization: str
    dpop: str | None
    token: AccessToken


class RequestAuthorizer:
    """Combines a cached token with a fresh DPoP proof bound to it (`ath`)."""

    def __init__(self, engine: TokenEngine) -> None:
        self._engine = engine

    async def authorize(
        self,
        tenant: str,
        target: str,
        *,
        http_method: str,
        url: str,
        dpop_nonce: str | None = None,
        min_remaining: timedelta = timedelta(0),
    ) -> RequestAuthorization:
        route = self._engine.routes.resolve(tenant, target)
        htu = check_request(route, http_method, url)
        token = await self._engine.token_for(route, min_remaining, rpc="AuthorizeRequest")
        return headers_for(
            route, token, http_method=http_method, htu=htu, nonce=dpop_nonce, now=self._engine.clock()
        )


def check_request(route: Route, http_method: str, url: str) -> str:
    """The proof's `htu` for a request the route's target allows; the errors name what is wrong."""
    if not _METHOD.match(http_method):
        raise InvalidRequestError("http_method", "must be an HTTP method such as GET or POST")
    htu = rfc9449.normalize_htu(url)
    if not is_allowed_url(htu, route.target.allowed_urls):
        raise PermissionDeniedError(
            f"target {route.target.name!r} does not allow requests to this URL",
            reason=Reason.URL_NOT_ALLOWED,
            url=htu,
        )
    return htu


def headers_for(
    route: Route, token: AccessToken, *, http_method: str, htu: str, nonce: str | None, now: datetime
) -> RequestAuthorization:
    """`Authorization` (and for DPoP tokens a `DPoP` proof with `ath`, signed by the client's DPoP key)."""
    if token.token_type is TokenType.BEARER:
        return RequestAuthorization(f"Bearer {token.value}", None, token)
    proof = rfc9449.build_dpop_proof(
        route.client.dpop_key,
        htm=http_method.upper(),
        htu=htu,
        now=now,
        jti=secrets.token_urlsafe(16),
        nonce=nonce or None,
        access_token=token.value,
    )
    return RequestAuthorization(f"DPoP {token.value}", proof, token)


def is_allowed_url(htu: str, allowed_prefixes: tuple[str, ...]) -> bool:
    """True when the URL has the origin of an allowed prefix and its path starts with the prefix's path."""
    parts = urlsplit(htu)
    for prefix in allowed_prefixes:
        allowed = urlsplit(rfc9449.normalize_htu(prefix))
        if (parts.scheme, parts.netloc) != (allowed.scheme, allowed.netloc):
            continue
        base = allowed.path or "/"
        if parts.path == base.rstrip("/") or parts.path.startswith(
            base if base.endswith("/") else base + "/"
        ):
            return True
    return False
