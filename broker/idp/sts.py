"""The broker's client of the STS: discovery, then the grant flows, with the DPoP nonce remembered.

HelseID demands a server nonce in every token-endpoint proof. Keeping the last nonce per issuer makes the next
fetch one round trip instead of two (NHN's own library pays two every time).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from broker.idp.discovery import DiscoveryCache
from broker.idp.transport import drive
from broker.model import AccessToken, Client, Target
from broker.protocol import flows


def new_jti() -> str:
    return secrets.token_urlsafe(24)


class StsClient:
    """Implements the engine's TokenSource against any HelseID-like STS."""

    def __init__(self, http: httpx.AsyncClient, clock: Callable[[], datetime]) -> None:
        self._http = http
        self._clock = clock
        self.discovery = DiscoveryCache(http, clock)
        self._nonces: dict[str, str] = {}

    async def fetch_client_credentials(
        self, client: Client, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> AccessToken:
        metadata = await self.discovery.get(client.issuer)
        flow = flows.client_credentials_flow(
            client=client,
            target=target,
            details=details,
            token_endpoint=metadata.token_endpoint,
            issuer=metadata.issuer,
            clock=self._clock,
            new_jti=new_jti,
            nonce=self._nonces.get(client.issuer),
        )
        result = await drive(self._http, flow, issuer=client.issuer)
        if result.nonce:
            self._nonces[client.issuer] = result.nonce
        return result.token

    def remembered_nonce(self, issuer: str) -> str | None:
        return self._nonces.get(issuer)

    async def close(self) -> None:
        await self._http.aclose()
