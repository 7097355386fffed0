"""Helpers for the protocol tests: a fixed instant, HTTP responses, and JWT checks done with joserfc."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from joserfc import jwk, jws, jwt

from broker.model import SigningKey
from broker.protocol import keys
from broker.protocol.http import HTTPResponse

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NOW_S = int(NOW.timestamp())


def verify(token: str, key: SigningKey) -> jwt.Token:
    """Verify `token` against the public half of `key`, allowing only the key's algorithm."""
    return jwt.decode(token, jwk.import_key(keys.public_jwk(key)), registry=registry_for(key.alg))


def verify_with_header_jwk(token: str, alg: str) -> jwt.Token:
    """Verify a DPoP proof the way a server does: with the key from its own `jwk` header."""
    header = jws.extract_compact(token.encode(), registry=registry_for(alg)).headers()
    return jwt.decode(token, jwk.import_key(header["jwk"]), registry=registry_for(alg))


def registry_for(alg: str) -> jws.JWSRegistry:
    registry = jws.JWSRegistry(algorithms=[alg])
    # Deliberately above joserfc's 512-byte default: a DPoP header with an RSA 3072 `jwk` is ~700 bytes.
    registry.max_header_length = 2048
    return registry


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWS-compact JWT, without checking the signature."""
    signed = jws.extract_compact(token.encode(), registry=registry_for("ES256"))
    return signed.headers(), json.loads(signed.payload)


def response(status: int, body: object = None, headers: dict[str, str] | None = None) -> HTTPResponse:
    data = b"" if body is None else json.dumps(body).encode()
    return HTTPResponse(status=status, headers=headers or {}, body=data)


def access_token_jwt(claims: dict[str, Any]) -> str:
    """A JWT access token as an STS would issue it, signed with a key the client never sees."""
    sts_key = keys.generate_signing_key("ES256")
    return keys.sign_jwt(sts_key, {"alg": "ES256", "typ": "at+jwt", "kid": sts_key.kid}, claims)
