"""A tiny, independent HelseID client for testing the dev authority: assertions, proofs, nonce retry.

Written here with joserfc and httpx on purpose; the broker's own protocol code is not used, so the two
implementations check each other instead of sharing a bug.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MULTI_TENANT_SYSTEM = "urn:oid:1.0.6523"
SINGLE_TENANT_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"

SigningKey = ECKey | RSAKey


@dataclass
class DevClient:
    client_id: str
    key: SigningKey
    alg: str


def org_details(system: str, value: str) -> dict[str, Any]:
    return {
        "type": "helseid_authorization",
        "practitioner_role": {
            "organization": {"identifier": {"system": system, "type": "ENH", "value": value}}
        },
    }


def journal_details(journal_id: str) -> dict[str, Any]:
    return {"type": "nhn:sfm:journal-id", "value": {"journal_id": journal_id}}


def client_assertion(
    client: DevClient,
    *,
    aud: str,
    lifetime: int = 10,
    iat_offset: int = 0,
    jti: str | None = None,
    typ: str = "client-authentication+jwt",
    kid: str | None = None,
    claims: dict[str, Any] | None = None,
    now: float | None = None,
) -> str:
    now = int(time.time() if now is None else now) + iat_offset
    payload = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": aud,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": jti or uuid.uuid4().hex,
        **(claims or {}),
    }
    header = {"alg": client.alg, "typ": typ, "kid": kid or client.key.kid}
    return jwt.encode(header, payload, client.key, algorithms=[client.alg])


def dpop_proof(
    key: SigningKey,
    *,
    alg: str,
    htu: str,
    nonce: str | None = None,
    htm: str = "POST",
    jti: str | None = None,
    public_jwk: dict[str, Any] | None = None,
    now: float | None = None,
) -> str:
    iat = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"jti": jti or uuid.uuid4().hex, "htm": htm, "htu": htu, "iat": iat}
    if nonce is not None:
        claims["nonce"] = nonce
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": public_jwk or key.as_dict(private=False)}
    return jwt.encode(header, claims, key, algorithms=[alg])


def rfc7638_thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638 by hand (required members, sorted, no whitespace), not joserfc's, to check the server."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[public_jwk["kty"]]
    canonical = json.dumps({m: public_jwk[m] for m in required}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class MovableClock:
    """Wall-clock time plus an offset a test can move, shared by an authority and a ``Caller``."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Caller:
    """Talks to one dev authority over HTTP and keeps the last DPoP nonce, as a good client should."""

    http: httpx.AsyncClient
    issuer: str
    nonce: str | None = None
    dpop_key: SigningKey = field(default_factory=lambda: ECKey.generate_key("P-256"))
    dpop_alg: str = "ES256"
    clock: Callable[[], float] = time.time  # dates assertions and proofs; tests that move time move it

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/connect/token"

    async def post_token(self, form: dict[str, Any], *, proof: str | None = None) -> httpx.Response:
        headers = {"DPoP": proof} if proof is not None else {}
        return await self.http.post(self.token_endpoint, data=form, headers=headers)

    def form(
        self,
        client: DevClient,
        *,
        scope: str | None,
        assertion: str | None = None,
        details: Any = None,
        **extra: Any,
    ) -> dict[str, Any]:
        claims = {"assertion_details": details} if details is not None else None
        form: dict[str, Any] = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion
            or client_assertion(client, aud=self.issuer, claims=claims, now=self.clock()),
            **extra,
        }
        if scope is not None:
            form["scope"] = scope
        return form

    async def request_token(
        self,
        client: DevClient,
        *,
        scope: str | None,
        details: Any = None,
        dpop: bool = True,
        **extra: Any,
    ) -> httpx.Response:
        """A token request with the nonce round trip: on ``use_dpop_nonce``, retry once, freshly signed."""
        for _ in range(2):
            proof = self.proof() if dpop else None
            response = await self.post_token(
                self.form(client, scope=scope, details=details, **extra), proof=proof
            )
            if "DPoP-Nonce" in response.headers:
                self.nonce = response.headers["DPoP-Nonce"]
            if response.status_code != 400 or response.json().get("error") != "use_dpop_nonce":
                return response
        return response

    def proof(self, **overrides: Any) -> str:
        arguments: dict[str, Any] = {
            "alg": self.dpop_alg,
            "htu": self.token_endpoint,
            "nonce": self.nonce,
            "now": self.clock(),
        }
        arguments.update(overrides)
        return dpop_proof(self.dpop_key, **arguments)

    async def verified_claims(self, access_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Header and claims of an access token, verified against the authority's published JWKS."""
        discovery = (await self.http.get(self.issuer + "/.well-known/openid-configuration")).json()
        jwks = (await self.http.get(discovery["jwks_uri"])).json()
        token = jwt.decode(access_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
        return token.header, token.claims


def error_of(response: httpx.Response) -> str:
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["Cache-Control"] == "no-store"
    error: str = response.json()["error"]
    return error


# --- user login (PAR, authorize, code, refresh, exchange, revocation) ---------------------------------

AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), computed by hand per RFC 7636."""
    verifier = base64.urlsafe_b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).rstrip(b"=").decode()
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def request_object(
    client: DevClient,
    *,
    aud: str,
    claims: dict[str, Any],
    lifetime: int = 30,
    key: SigningKey | None = None,
    typ: str = "oauth-authz-req+jwt",
) -> str:
    """A signed JAR request object (RFC 9101) as HelseID wants it: iss = client_id, aud = issuer."""
    now = int(time.time())
    payload = {
        "iss": client.client_id,
        "aud": aud,
        "client_id": client.client_id,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    header = {"alg": client.alg, "typ": typ, "kid": client.key.kid}
    return jwt.encode(header, payload, key or client.key, algorithms=[client.alg])


@dataclass
class Pushed:
    """What a test needs from one pushed request: the answer, and the PKCE verifier it used."""

    response: httpx.Response
    verifier: str

    @property
    def request_uri(self) -> str:
        uri: str = self.response.json()["request_uri"]
        return uri


@dataclass
class Redirect:
    status: int
    location: str | None
    params: dict[str, str]


@dataclass
class LoginFlow:
    """Drives the user login of one client against one authority, with a ``Caller`` for the token calls."""

    caller: Caller
    client: DevClient
    redirect_uri: str

    @property
    def par_endpoint(self) -> str:
        return self.caller.issuer + "/connect/par"

    def assertion(self, *, aud: str | None = None, claims: dict[str, Any] | None = None) -> str:
        return client_assertion(
            self.client, aud=aud or self.caller.issuer, claims=claims, now=self.caller.clock()
        )

    async def push(
        self,
        *,
        scope: str,
        resources: tuple[str, ...] = (),
        proof: str | None = None,
        assertion: str | None = None,
        drop: tuple[str, ...] = (),
        **params: Any,
    ) -> Pushed:
        verifier, challenge = pkce_pair()
        form: dict[str, Any] = {
            "client_id": self.client.client_id,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion or self.assertion(),
            "response_type": "code",
            "redirect_uri": self.redirect_uri,
            "scope": scope,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": uuid.uuid4().hex,
            "nonce": uuid.uuid4().hex,
            **params,
        }
        for name in drop:
            form.pop(name, None)
        if resources:
            form["resource"] = list(resources)
        headers = {"DPoP": proof} if proof is not None else {}
        response = await self.caller.http.post(self.par_endpoint, data=form, headers=headers)
        return Pushed(response, verifier)

    async def authorize(self, request_uri: str, *, client_id: str | None = None) -> Redirect:
        response = await self.caller.http.get(
            self.caller.issuer + "/connect/authorize",
            params={"client_id": client_id or self.client.client_id, "request_uri": request_uri},
            follow_redirects=False,
        )
        location = response.headers.get("Location")
        params = dict(parse_qsl(urlsplit(location).query)) if location else {}
        return Redirect(response.status_code, location, params)

    async def login(
        self, *, scope: str, resources: tuple[str, ...] = (), **params: Any
    ) -> tuple[str, Pushed]:
        """PAR + authorize; returns the code and the pushed request (for its verifier)."""
        pushed = await self.push(scope=scope, resources=resources, **params)
        assert pushed.response.status_code == 201, pushed.response.text
        redirect = await self.authorize(pushed.request_uri)
        assert redirect.status == 302, redirect
        return redirect.params["code"], pushed

    async def redeem(
        self,
        code: str,
        verifier: str,
        *,
        resource: str | None = None,
        details: Any = None,
        **extra: Any,
    ) -> httpx.Response:
        form: dict[str, Any] = {
            "grant_type": AUTHORIZATION_CODE,
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
            **extra,
        }
        if resource is not None:
            form["resource"] = resource
        return await self.caller.request_token(self.client, scope=None, details=details, **form)

    async def refresh(
        self, refresh_token: str, *, resource: str | None = None, details: Any = None, **extra: Any
    ) -> httpx.Response:
        scope = extra.pop("scope", None)
        form: dict[str, Any] = {"grant_type": REFRESH_TOKEN, "refresh_token": refresh_token, **extra}
        if resource is not None:
            form["resource"] = resource
        return await self.caller.request_token(self.client, scope=scope, details=details, **form)

    async def revoke(self, token: str, **extra: str) -> httpx.Response:
        form = {
            "client_id": self.client.client_id,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": self.assertion(),
            "token": token,
            **extra,
        }
        return await self.caller.http.post(self.caller.issuer + "/connect/revocation", data=form)


async def exchange(caller: Caller, actor: DevClient, subject_token: str, **extra: Any) -> httpx.Response:
    """An RFC 8693 token exchange by ``actor`` (nonce round trip included)."""
    scope = extra.pop("scope", None)
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
    }
    return await caller.request_token(actor, scope=scope, **{**form, **extra})
