"""The broker's client of the STS: discovery, the grant flows, a circuit breaker, and DPoP nonce memory.

HelseID demands a server nonce in every token-endpoint proof. Keeping the last nonce per issuer (in process
memory, and shared through the store so every replica has it) makes a fetch one round trip instead of two;
NHN's own library pays two every time.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import httpx

from broker.errors import StoreUnavailableError
from broker.idp.breaker import CircuitBreaker
from broker.idp.discovery import DiscoveryCache
from broker.idp.gate import StsGate
from broker.idp.transport import HttpxTransport, Transport, drive
from broker.model import AccessToken, Client, Target, TokenSet
from broker.protocol import flows
from broker.protocol.http import HTTPRequest, HTTPResponse
from broker.telemetry import Metrics

_log = logging.getLogger(__name__)
R = TypeVar("R", flows.FlowResult, flows.TokenSetResult)


class SharedNonces(Protocol):
    """Nonces shared between replicas; raises StoreUnavailableError when it cannot answer."""

    async def get_nonce(self, issuer: str) -> str | None: ...

    async def put_nonce(self, issuer: str, nonce: str) -> None: ...


def new_jti() -> str:
    return secrets.token_urlsafe(24)


class StsClient:
    """Implements the engine's TokenSource against any HelseID-like STS."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        clock: Callable[[], datetime],
        *,
        shared_nonces: SharedNonces | None = None,
        metrics: Metrics | None = None,
        breaker_factory: Callable[[str], CircuitBreaker] | None = None,
        max_concurrent_requests: int = 32,
        token_transport: Transport | None = None,
    ) -> None:
        self.http = http
        # Token requests (every renewal) may take a leaner transport than the shared httpx client.
        self._token_transport: Transport = token_transport or HttpxTransport(http)
        self._clock = clock
        self._shared = shared_nonces
        self._metrics = metrics or Metrics()
        # One gate per STS client: discovery, token requests, and (through the discovery cache) PAR,
        # revocation and JWKS share each issuer's breaker and the cap on requests in flight.
        self.gate = StsGate(
            metrics=self._metrics,
            breaker_factory=breaker_factory,
            max_concurrent_requests=max_concurrent_requests,
        )
        self.discovery = DiscoveryCache(http, clock, gate=self.gate)
        self._nonces: dict[str, str] = {}

    def breaker(self, issuer: str) -> CircuitBreaker:
        return self.gate.breaker(issuer)

    async def fetch_client_credentials(
        self, client: Client, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> AccessToken:
        metadata = await self.discovery.get(client.issuer)

        def flow(nonce: str | None) -> flows.TokenFlow:
            return flows.client_credentials_flow(
                client=client,
                target=target,
                details=details,
                token_endpoint=metadata.token_endpoint,
                issuer=metadata.issuer,
                clock=self._clock,
                new_jti=new_jti,
                nonce=nonce,
            )

        result = await self._guarded(client.issuer, "broker.sts.token_request", flow)
        return result.token

    async def redeem_code(
        self,
        client: Client,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        resource: str | None,
        dpop: bool,
    ) -> TokenSet:
        metadata = await self.discovery.get(client.issuer)

        def flow(nonce: str | None) -> flows.TokenSetFlow:
            return flows.authorization_code_flow(
                client=client,
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=code_verifier,
                resource=resource,
                dpop=dpop,
                token_endpoint=metadata.token_endpoint,
                issuer=metadata.issuer,
                clock=self._clock,
                new_jti=new_jti,
                nonce=nonce,
            )

        return (await self._guarded(client.issuer, "broker.sts.code_redemption", flow)).tokens

    async def refresh(
        self, client: Client, *, refresh_token: str, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> TokenSet:
        metadata = await self.discovery.get(client.issuer)

        def flow(nonce: str | None) -> flows.TokenSetFlow:
            return flows.refresh_token_flow(
                client=client,
                refresh_token=refresh_token,
                target=target,
                details=details,
                token_endpoint=metadata.token_endpoint,
                issuer=metadata.issuer,
                clock=self._clock,
                new_jti=new_jti,
                nonce=nonce,
            )

        return (await self._guarded(client.issuer, "broker.sts.refresh", flow)).tokens

    async def exchange(
        self, client: Client, *, subject_token: str, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> AccessToken:
        metadata = await self.discovery.get(client.issuer)

        def flow(nonce: str | None) -> flows.TokenFlow:
            return flows.token_exchange_flow(
                client=client,
                subject_token=subject_token,
                target=target,
                details=details,
                token_endpoint=metadata.token_endpoint,
                issuer=metadata.issuer,
                clock=self._clock,
                new_jti=new_jti,
                nonce=nonce,
            )

        return (await self._guarded(client.issuer, "broker.sts.token_exchange", flow)).token

    async def _guarded(
        self,
        issuer: str,
        span: str,
        make_flow: Callable[[str | None], Generator[HTTPRequest, HTTPResponse, R]],
    ) -> R:
        """Runs one token-endpoint flow behind the issuer's circuit breaker, with nonce memory and metrics."""
        return await self.gate.call(issuer, span, lambda: self._run(issuer, make_flow), token_request=True)

    async def _run(
        self, issuer: str, make_flow: Callable[[str | None], Generator[HTTPRequest, HTTPResponse, R]]
    ) -> R:
        nonce = await self._nonce(issuer)
        sent = 0

        def count(_: object) -> None:
            nonlocal sent
            sent += 1

        result = await drive(self._token_transport, make_flow(nonce), issuer=issuer, on_request=count)
        if sent > 1:
            self._metrics.nonce_retry()
        if result.nonce and result.nonce != nonce:
            await self._remember(issuer, result.nonce)
        return result

    async def _nonce(self, issuer: str) -> str | None:
        nonce = self._nonces.get(issuer)
        if nonce is None and self._shared is not None:
            try:
                nonce = await self._shared.get_nonce(issuer)
            except StoreUnavailableError:
                return None
            if nonce is not None:
                self._nonces[issuer] = nonce
        return nonce

    async def _remember(self, issuer: str, nonce: str) -> None:
        self._nonces[issuer] = nonce
        if self._shared is not None:
            # The engine logs store outages; a nonce that is not shared costs another replica one round trip.
            with contextlib.suppress(StoreUnavailableError):
                await self._shared.put_nonce(issuer, nonce)

    async def close(self) -> None:
        await self.discovery.close()
        await self.http.aclose()
        await self._token_transport.aclose()
