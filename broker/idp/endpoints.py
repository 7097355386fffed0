"""The STS endpoints of a user login besides the token endpoint: PAR, revocation, and the JWKS that signs
ID tokens. Each call gets a fresh client assertion; HelseID accepts one only once. Every request passes the
issuer's circuit breaker (the discovery cache's gate, shared with the token requests); a JWKS fetch is
shared by every caller that needs it and is not cancelled by one caller's deadline."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from broker.errors import IdpUnavailableError, ProtocolError
from broker.idp.discovery import DiscoveryCache
from broker.idp.gate import StsGate
from broker.idp.singleflight import SingleFlight
from broker.idp.sts import new_jti
from broker.idp.transport import send
from broker.model import Client
from broker.protocol import rfc7009, rfc7523, rfc9101, rfc9126
from broker.protocol.http import HTTPRequest


class UserEndpoints:
    def __init__(
        self,
        http: httpx.AsyncClient,
        discovery: DiscoveryCache,
        clock: Callable[[], datetime],
        *,
        jwks_ttl: timedelta = timedelta(hours=1),
        gate: StsGate | None = None,
    ) -> None:
        self._http = http
        self._discovery = discovery
        self._gate = gate or discovery.gate
        self._clock = clock
        self._jwks_ttl = jwks_ttl
        self._jwks: dict[str, tuple[KeySet, datetime]] = {}
        self._jwks_fetches: SingleFlight[KeySet] = SingleFlight()

    async def push_authorization(
        self,
        client: Client,
        parameters: Mapping[str, str | tuple[str, ...]],
        details: Sequence[Mapping[str, Any]],
    ) -> tuple[str, datetime]:
        """PAR (RFC 9126): the URL to send the browser to, and when it stops working.

        With org details, every parameter travels in a signed request object (RFC 9101), where HelseID
        wants a multi-tenant client's organisation at login; otherwise as plain form fields. The URL stops
        working at the PAR answer's `expires_in`, or when its request object expires if that is earlier.
        """
        metadata = await self._discovery.get(client.issuer)
        if metadata.pushed_authorization_request_endpoint is None or metadata.authorization_endpoint is None:
            raise ProtocolError("the STS offers no pushed authorization requests", issuer=client.issuer)
        now = self._clock()
        form: Mapping[str, str | tuple[str, ...]] = parameters
        object_expires_at: datetime | None = None
        if details:
            request_object = rfc9101.build_request_object(
                client_id=client.client_id,
                audience=metadata.issuer,
                key=client.signing_key,
                now=now,
                jti=new_jti(),
                parameters=parameters,
                details=details,
            )
            form = {"request": request_object}
            object_expires_at = rfc9101.expires_at(now)
        request = rfc9126.build_par_request(
            metadata.pushed_authorization_request_endpoint,
            client_id=client.client_id,
            assertion=self._assertion(client, metadata.issuer, now),
            parameters=form,
        )

        async def push() -> rfc9126.PushedRequest:
            response = await send(self._http, request, issuer=client.issuer)
            return rfc9126.parse_par_response(response, now=now, issuer=client.issuer)

        pushed = await self._gate.call(client.issuer, "broker.sts.par", push)
        url = rfc9126.authorization_url(
            metadata.authorization_endpoint, client_id=client.client_id, request_uri=pushed.request_uri
        )
        if object_expires_at is not None and object_expires_at < pushed.expires_at:
            return url, object_expires_at
        return url, pushed.expires_at

    async def revoke_refresh_token(self, client: Client, refresh_token: str) -> bool:
        """RFC 7009 revocation; False when the STS offers no revocation endpoint."""
        metadata = await self._discovery.get(client.issuer)
        if metadata.revocation_endpoint is None:
            return False
        now = self._clock()
        request = rfc7009.build_revocation_request(
            metadata.revocation_endpoint,
            client_id=client.client_id,
            assertion=self._assertion(client, metadata.issuer, now),
            token=refresh_token,
            token_type_hint="refresh_token",  # noqa: S106 - a hint name, not a secret
        )

        async def revoke() -> None:
            response = await send(self._http, request, issuer=client.issuer)
            rfc7009.check_revocation_response(response, now=now, issuer=client.issuer)

        await self._gate.call(client.issuer, "broker.sts.revocation", revoke)
        return True

    async def id_token_keys(self, issuer: str, *, refresh: bool = False) -> KeySet:
        """The issuer's signing keys (JWKS), cached; `refresh` re-reads them after a key rotation."""
        cached = self._jwks.get(issuer)
        if cached is not None and not refresh and self._clock() < cached[1]:
            return cached[0]
        return await self._jwks_fetches.run(issuer, lambda: self._fetch_jwks(issuer))

    async def close(self) -> None:
        await self._jwks_fetches.close()

    async def _fetch_jwks(self, issuer: str) -> KeySet:
        metadata = await self._discovery.get(issuer)
        if metadata.jwks_uri is None:
            raise ProtocolError("the STS publishes no jwks_uri", issuer=issuer)
        request = HTTPRequest("GET", metadata.jwks_uri, {"Accept": "application/json"}, {})

        async def fetch() -> KeySet:
            response = await send(self._http, request, issuer=issuer)
            if response.status >= 500:
                raise IdpUnavailableError(f"the JWKS answered HTTP {response.status}", issuer=issuer)
            try:
                return KeySet.import_key_set(json.loads(response.body))
            except (ValueError, JoseError) as exc:
                raise ProtocolError("the STS's JWKS cannot be read", issuer=issuer) from exc

        keys = await self._gate.call(issuer, "broker.sts.jwks", fetch)
        self._jwks[issuer] = (keys, self._clock() + self._jwks_ttl)
        return keys

    def _assertion(self, client: Client, audience: str, now: datetime) -> str:
        return rfc7523.build_client_assertion(
            client_id=client.client_id, audience=audience, key=client.signing_key, now=now, jti=new_jti()
        )
