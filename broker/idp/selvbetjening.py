"""The client of HelseID's Selvbetjening key API: list a client's registered keys, register a new one.

`GET /v1/client-secret` lists `{expiration, kid, jwkThumbprint, origin, publicJwk}`; `POST /v1/client-secret`
with the new public JWK as the JSON body answers `{"expiration": ...}` (research/nhn-apis.md §3; the shapes of
NHN's own libraries). The access token needs the scope `nhn:selvbetjening/client` and is fetched with the
client's current key, DPoP-bound like every other; each call carries a fresh proof for its URL, and a
`use_dpop_nonce` challenge is answered once. Failures are IdpRejectedError (the API refused: status and
problem title, never a key) or IdpUnavailableError (unreachable, 5xx).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import httpx

from broker.errors import IdpRejectedError, IdpUnavailableError
from broker.model import AccessToken, Client, Target, TokenType
from broker.protocol import rfc9449
from broker.protocol.http import HTTPResponse

SCOPE: Final = "nhn:selvbetjening/client"
RESOURCE: Final = "nhn:selvbetjening"
TARGET: Final = Target(name="selvbetjening", scopes=(SCOPE,), resource=RESOURCE, token_type=TokenType.DPOP)


@dataclass(frozen=True, slots=True)
class RegisteredKey:
    """A key HelseID holds for a client."""

    kid: str
    thumbprint: str
    origin: str  # "Api" (registered through this API) or "Gui" (in the Selvbetjening portal)
    expires_at: datetime | None  # None: it never expires


class SelvbetjeningClient:
    def __init__(self, http: httpx.AsyncClient, clock: Callable[[], datetime]) -> None:
        self._http = http
        self._clock = clock

    async def list_keys(self, url: str, client: Client, token: AccessToken) -> list[RegisteredKey]:
        answer = await self._call("GET", url, client, token, None)
        listed = answer.json()
        if not isinstance(listed, list):
            raise _invalid("the key list is not a JSON array", url)
        return [_registered(item, url) for item in listed if isinstance(item, dict)]

    async def register(
        self, url: str, client: Client, token: AccessToken, public_jwk: Mapping[str, Any]
    ) -> datetime:
        """Registers the public key; when HelseID will expire it."""
        answer = await self._call("POST", url, client, token, dict(public_jwk))
        body = answer.json()
        expiration = body.get("expiration") if isinstance(body, dict) else None
        if not isinstance(expiration, str):
            raise _invalid("no expiration in the answer", url)
        return _instant(expiration, url)

    async def _call(
        self, method: str, url: str, client: Client, token: AccessToken, body: dict[str, Any] | None
    ) -> httpx.Response:
        nonce: str | None = None
        for _ in range(2):  # a nonce challenge is answered once
            headers = self._headers(method, url, client, token, nonce)
            try:
                answer = await self._http.request(
                    method, url, headers=headers, content=None if body is None else json.dumps(body)
                )
            except httpx.HTTPError as exc:
                raise IdpUnavailableError(
                    f"Selvbetjening unreachable: {type(exc).__name__}", issuer=url
                ) from exc
            challenge = rfc9449.nonce_challenge(_response(answer))
            if challenge is None or nonce is not None:
                break
            nonce = challenge
        if answer.status_code >= 500:
            raise IdpUnavailableError(f"Selvbetjening answered {answer.status_code}", issuer=url)
        if answer.status_code >= 400:
            raise IdpRejectedError(
                _problem(answer),
                f"Selvbetjening refused the call ({answer.status_code})",
                status=answer.status_code,
                issuer=url,
            )
        return answer

    def _headers(
        self, method: str, url: str, client: Client, token: AccessToken, nonce: str | None
    ) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token.token_type is TokenType.BEARER:
            headers["Authorization"] = f"Bearer {token.value}"
            return headers
        headers["Authorization"] = f"DPoP {token.value}"
        headers["DPoP"] = rfc9449.build_dpop_proof(
            client.dpop_key,
            htm=method,
            htu=url,
            now=self._clock(),
            jti=secrets.token_urlsafe(16),
            nonce=nonce,
            access_token=token.value,
        )
        return headers


def _registered(item: Mapping[str, Any], url: str) -> RegisteredKey:
    expiration = item.get("expiration")
    return RegisteredKey(
        kid=str(item.get("kid") or ""),
        thumbprint=str(item.get("jwkThumbprint") or ""),
        origin=str(item.get("origin") or ""),
        expires_at=None if not isinstance(expiration, str) else _instant(expiration, url),
    )


def _instant(text: str, url: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid("an expiration is not an RFC 3339 time", url) from None


def _invalid(description: str, url: str) -> IdpRejectedError:
    return IdpRejectedError("invalid_response", description, status=200, issuer=url)


def _problem(answer: httpx.Response) -> str:
    """The RFC 7807 title (or OAuth error) of a refusal, for the error's reason text."""
    try:
        body = answer.json()
    except ValueError:
        return "refused"
    if isinstance(body, dict):
        for name in ("error", "title"):
            value = body.get(name)
            if isinstance(value, str) and value:
                return value[:80]
    return "refused"


def _response(answer: httpx.Response) -> HTTPResponse:
    return HTTPResponse(answer.status_code, dict(answer.headers.items()), answer.content)
