"""Ready-to-send `Authorization` and `DPoP` header values for one HTTP request (RFC 9449 §7).

Proofs are minted only for URLs the target allows, so a caller cannot turn the broker into a signing oracle
for arbitrary hosts.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from broker.errors import InvalidRequestError, PermissionDeniedError, Reason
from broker.model import AccessToken, CareContext, TokenType
from broker.protocol import rfc3986, rfc9449
from broker.protocol.api_headers import Header, api_headers
from broker.protocol.care import check_care_context
from broker.tokens.engine import TokenEngine
from broker.tokens.routes import Route

# RFC 9110 §9.1: a method is a token; the ones APIs use are letters, and proofs carry them upper-case.
_METHOD = re.compile(r"[A-Za-z]{1,16}")
_REFUSED_METHODS = frozenset({"CONNECT", "TRACE"})


@dataclass(frozen=True, slots=True)
class RequestAuthorization:
    authorization: str
    dpop: str | None
    token: AccessToken
    headers: tuple[Header, ...] = ()  # what the target's API wants beside them (its api_profile)


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
        care: CareContext | None = None,
    ) -> RequestAuthorization:
        route = self._engine.routes.resolve(tenant, target)
        htu = check_request(route, http_method, url)
        extra = care_headers(route, care)  # a context the API cannot take costs no token fetch
        token = await self._engine.token_for(route, min_remaining, rpc="AuthorizeRequest")
        return headers_for(
            route,
            token,
            http_method=http_method,
            htu=htu,
            nonce=dpop_nonce,
            now=self._engine.clock(),
            extra=extra,
        )


def care_headers(route: Route, care: CareContext | None) -> tuple[Header, ...]:
    """The headers of the target's API from a checked care context; InvalidRequestError names every field
    that breaks its rule or that the API requires and the context lacks."""
    if care is not None:
        check_care_context(care)
    return api_headers(route.target.api_profile, route.target.scopes, care)


def check_request(route: Route, http_method: str, url: str) -> str:
    """The proof's `htu` (the RFC 3986 normal form of `url`) for a request the route's target allows.

    InvalidRequestError names `http_method` or `url` when either is malformed or in a refused form;
    PermissionDeniedError (URL_NOT_ALLOWED) when the normalised URL is under none of the target's prefixes.
    """
    check_method(http_method)
    htu = rfc3986.normalize_http_url(url, field="url")
    if not _is_under_a_prefix(htu, route.target.allowed_urls):
        # The URL is not echoed: its path can name a patient.
        raise PermissionDeniedError(
            f"target {route.target.name!r} does not allow requests to this URL",
            reason=Reason.URL_NOT_ALLOWED,
            target=route.target.name,
        )
    return htu


def check_method(http_method: str) -> str:
    """The method upper-cased, as a proof's `htm` carries it; InvalidRequestError("http_method") unless it is
    1..16 ASCII letters, and for CONNECT and TRACE, which no API request needs a proof for."""
    if not _METHOD.fullmatch(http_method):
        raise InvalidRequestError("http_method", "must be an HTTP method of 1 to 16 letters, such as GET")
    method = http_method.upper()
    if method in _REFUSED_METHODS:
        # CONNECT opens a tunnel and TRACE echoes the request (headers and all) back to the sender.
        raise InvalidRequestError("http_method", f"{method} requests get no proof")
    return method


def headers_for(
    route: Route,
    token: AccessToken,
    *,
    http_method: str,
    htu: str,
    nonce: str | None,
    now: datetime,
    extra: tuple[Header, ...] = (),
) -> RequestAuthorization:
    """`Authorization` (and for DPoP tokens a `DPoP` proof with `ath`, signed by the client's DPoP key),
    with the API's `extra` headers."""
    if token.token_type is TokenType.BEARER:
        return RequestAuthorization(f"Bearer {token.value}", None, token, extra)
    proof = rfc9449.build_dpop_proof(
        route.client.dpop_key,
        htm=http_method.upper(),
        htu=htu,
        now=now,
        jti=secrets.token_urlsafe(16),
        nonce=nonce or None,
        access_token=token.value,
        htu_is_normal=True,  # `htu` comes from check_request's normalisation
    )
    return RequestAuthorization(f"DPoP {token.value}", proof, token, extra)


def is_allowed_url(url: str, allowed_prefixes: tuple[str, ...]) -> bool:
    """True when `url` normalises (RFC 3986) and lies under one of the prefixes, which must be normalised
    already (the configuration does that at load)."""
    try:
        htu = rfc3986.normalize_http_url(url)
    except InvalidRequestError:
        return False
    return _is_under_a_prefix(htu, allowed_prefixes)


def _is_under_a_prefix(htu: str, allowed_prefixes: tuple[str, ...]) -> bool:
    """Compared as strings on normalised forms, at a segment boundary: `/api` and `/api/` both allow `/api`
    and `/api/x`, never `/apix`. The origin cannot bleed into the path: a normal form's authority ends at
    the first "/", so equal text up to there means equal scheme, host and port."""
    for prefix in allowed_prefixes:
        base = prefix.removesuffix("/")
        if htu == base or htu.startswith(base + "/"):
            return True
    return False
