"""OpenID Connect discovery (OpenID Connect Discovery 1.0 §4, RFC 8414), cached per issuer.

NHN's own libraries keep the document 24 h; so do we. Concurrent first requests share one fetch, which goes
through the issuer's circuit breaker like every request to the STS and is not cancelled when a waiter's
deadline runs out. Once the document is older than its TTL, callers go on with it while one fetch renews it
in the background: endpoints rarely move, and a hung STS must not cost every caller a wait here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from broker.errors import IdpUnavailableError, ProtocolError
from broker.idp.gate import StsGate
from broker.idp.singleflight import SingleFlight
from broker.idp.transport import send
from broker.protocol.http import HTTPRequest

WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    token_endpoint: str
    jwks_uri: str | None = None
    pushed_authorization_request_endpoint: str | None = None
    authorization_endpoint: str | None = None
    revocation_endpoint: str | None = None


def parse_metadata(body: bytes, *, expected_issuer: str) -> ProviderMetadata:
    """Parses a discovery document; the issuer in it must be the one asked for (OIDC Discovery §4.3)."""
    try:
        document: Any = json.loads(body)
    except ValueError as exc:
        raise ProtocolError("the discovery document is not JSON", issuer=expected_issuer) from exc
    if not isinstance(document, dict):
        raise ProtocolError("the discovery document is not a JSON object", issuer=expected_issuer)
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != expected_issuer.rstrip("/"):
        raise ProtocolError("the discovery document names another issuer", issuer=expected_issuer)
    token_endpoint = document.get("token_endpoint")
    if not isinstance(token_endpoint, str) or not token_endpoint:
        raise ProtocolError("the discovery document has no token_endpoint", issuer=expected_issuer)

    def optional(name: str) -> str | None:
        value = document.get(name)
        return value if isinstance(value, str) and value else None

    return ProviderMetadata(
        issuer=issuer,
        token_endpoint=token_endpoint,
        jwks_uri=optional("jwks_uri"),
        pushed_authorization_request_endpoint=optional("pushed_authorization_request_endpoint"),
        authorization_endpoint=optional("authorization_endpoint"),
        revocation_endpoint=optional("revocation_endpoint"),
    )


class DiscoveryCache:
    """Returns the metadata of an issuer, fetching it at most once per `ttl`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        clock: Callable[[], datetime],
        *,
        gate: StsGate,
        ttl: timedelta = timedelta(hours=24),
    ) -> None:
        self.gate = gate  # shared with the other clients of the same STS (token requests, PAR, JWKS)
        self._http = http
        self._clock = clock
        self._ttl = ttl
        self._cached: dict[str, tuple[ProviderMetadata, datetime]] = {}
        self._fetches: SingleFlight[ProviderMetadata] = SingleFlight()

    async def get(self, issuer: str) -> ProviderMetadata:
        cached = self._cached.get(issuer)
        if cached is None:
            return await self._fetches.run(issuer, lambda: self._fetch_and_keep(issuer))
        metadata, renew_at = cached
        if self._clock() >= renew_at:
            self._fetches.start(issuer, lambda: self._fetch_and_keep(issuer))
        return metadata

    async def close(self) -> None:
        await self._fetches.close()

    async def _fetch_and_keep(self, issuer: str) -> ProviderMetadata:
        metadata = await self.gate.call(issuer, "broker.sts.discovery", lambda: self._fetch(issuer))
        self._cached[issuer] = (metadata, self._clock() + self._ttl)
        return metadata

    async def _fetch(self, issuer: str) -> ProviderMetadata:
        request = HTTPRequest("GET", issuer.rstrip("/") + WELL_KNOWN, {"Accept": "application/json"}, {})
        response = await send(self._http, request, issuer=issuer)
        if response.status >= 500:
            raise IdpUnavailableError(f"discovery answered HTTP {response.status}", issuer=issuer)
        if response.status != 200:
            raise ProtocolError(f"discovery answered HTTP {response.status}", issuer=issuer)
        return parse_metadata(response.body, expected_issuer=issuer)
