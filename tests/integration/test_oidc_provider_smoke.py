"""Smoke test of the HelseID-like test OpenID provider (tests/oidc_provider) over plain HTTP.

Speaks the protocol by hand with httpx and joserfc (no broker code): private_key_jwt client
assertions with HelseID's assertion_details, DPoP with a server nonce, JWT access tokens; user
sessions with PAR, signed request objects, the development login (tests.fixtures.login), refresh
per resource, token exchange (RFC 8693) and revocation (RFC 7009).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwk, jwt

from tests.fixtures.login import LoginError, log_in
from tests.fixtures.oidc_provider import RunningProvider, provider_stats, start_oidc_provider

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MULTI_TENANT_SYSTEM = "urn:oid:1.0.6523"
SINGLE_TENANT_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
CLAIMS = "helseid://claims/client/claims/"
TENANCY = "helseid://claims/client/client_tenancy"
JOURNAL_ID = "nhn:sfm:journal-id"

RESOURCE = "nhn:pps"
SCOPE = "nhn:pps/provesvar-read"
SUPPLIER_ORG = "999888777"
SINGLE_TENANT_ORG = "912345678"
PARENT_ORG = "911111111"
CHILD_ORG = "922222222"
REDIRECT_URI = "http://127.0.0.1:9/callback"
PID_SCOPE = "helseid://scopes/identity/pid"
TEST_PID = "13116900216"

# User sessions: one login, a token per resource (A, then B by refresh), exchange to B by an API.
RESOURCE_A = RESOURCE
SCOPE_A = SCOPE
RESOURCE_B = "e-helse:sfm.api"
SCOPE_B = "e-helse:sfm.api/sfm.api2"
API_ORG = "933333333"
IDENTITY_SCOPES = [
    "profile",
    PID_SCOPE,
    "helseid://scopes/identity/security_level",
    "helseid://scopes/identity/assurance_level",
    "helseid://scopes/hpr/hpr_number",
]
USER_SCOPE = " ".join(["openid", "offline_access", *IDENTITY_SCOPES, SCOPE_A, SCOPE_B])
KARI_PID = "13116900216"  # the provider's test user "kari"
PID = "helseid://claims/identity/pid"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@dataclass(frozen=True)
class Client:
    client_id: str
    key: jwk.ECKey


@dataclass(frozen=True)
class Provider:
    running: RunningProvider
    discovery: dict[str, Any]
    multi: Client
    single: Client
    web: Client
    api: Client

    @property
    def issuer(self) -> str:
        return self.running.issuer

    @property
    def token_endpoint(self) -> str:
        return str(self.discovery["token_endpoint"])

    @property
    def par_endpoint(self) -> str:
        return str(self.discovery["pushed_authorization_request_endpoint"])


def _ec_key(kid: str) -> jwk.ECKey:
    return jwk.ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"})


def _client_entry(client: Client, tenancy: str, org: str) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "jwks": {"keys": [client.key.as_dict(private=False)]},
        "tenancy": tenancy,
        "organization_number": org,
        "scopes": [SCOPE, "e-helse:sfm.api/sfm.api2"],
        "resources": {RESOURCE: [SCOPE], "e-helse:sfm.api": ["e-helse:sfm.api/sfm.api2"]},
    }


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    multi = Client(f"multi-{uuid.uuid4()}", _ec_key(uuid.uuid4().hex))
    single = Client(f"single-{uuid.uuid4()}", _ec_key(uuid.uuid4().hex))
    web = Client(f"web-{uuid.uuid4()}", _ec_key(uuid.uuid4().hex))
    api = Client(f"api-{uuid.uuid4()}", _ec_key(uuid.uuid4().hex))
    # The registration a user-facing client needs: redirect_uris, the identity scopes and both APIs'
    # resources; grant_types default to client_credentials, token exchange, authorization_code and
    # refresh_token (spelled out here).
    web_entry = {
        **_client_entry(web, "multi", SUPPLIER_ORG),
        "scopes": ["openid", "offline_access", *IDENTITY_SCOPES, SCOPE_A, SCOPE_B],
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE],
    }
    # An API that exchanges a user's token for one to the next API (it is the actor).
    api_entry = {
        **_client_entry(api, "single", API_ORG),
        "scopes": [SCOPE_B],
        "resources": {RESOURCE_B: [SCOPE_B]},
    }
    single_entry = {
        **_client_entry(single, "single", SINGLE_TENANT_ORG),
        "grant_types": ["client_credentials"],
    }
    workdir: Path = tmp_path_factory.mktemp("oidc_provider")
    running = start_oidc_provider(
        workdir,
        [_client_entry(multi, "multi", SUPPLIER_ORG), single_entry, web_entry, api_entry],
    )
    try:
        discovery = httpx.get(f"{running.issuer}/.well-known/openid-configuration", timeout=5).json()
        yield Provider(running, discovery, multi, single, web, api)
    finally:
        running.stop()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _ec_thumbprint(key: jwk.ECKey) -> str:
    """RFC 7638 SHA-256 thumbprint, computed here rather than by joserfc."""
    public = key.as_dict(private=False)
    members = {name: public[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _b64url(hashlib.sha256(canonical).digest())


def _assertion(client: Client, audience: str, details: list[dict[str, Any]] | None, **header: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": audience,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 30,
    }
    if details is not None:
        claims["assertion_details"] = details
    protected = {"alg": "ES256", "typ": "client-authentication+jwt", "kid": client.key.kid, **header}
    return jwt.encode(protected, claims, client.key)


def _proof(key: jwk.ECKey, htu: str, nonce: str | None = None) -> str:
    claims: dict[str, Any] = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": htu, "iat": int(time.time())}
    if nonce is not None:
        claims["nonce"] = nonce
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key)


def _multi_details(parent: str, child: str | None, journal_id: str | None) -> list[dict[str, Any]]:
    value = f"NO:ORGNR:{parent}:{child}" if child else f"NO:ORGNR:{parent}"
    details: list[dict[str, Any]] = [
        {
            "type": "helseid_authorization",
            "practitioner_role": {
                "organization": {"identifier": {"system": MULTI_TENANT_SYSTEM, "type": "ENH", "value": value}}
            },
        }
    ]
    if journal_id:
        details.append({"type": "nhn:sfm:journal-id", "value": {"journal_id": journal_id}})
    return details


def _single_details(child: str) -> list[dict[str, Any]]:
    identifier = {"system": SINGLE_TENANT_SYSTEM, "type": "ENH", "value": child}
    return [
        {"type": "helseid_authorization", "practitioner_role": {"organization": {"identifier": identifier}}}
    ]


def _post_token(
    provider: Provider,
    client: Client,
    dpop_key: jwk.ECKey,
    form: dict[str, str],
    assertion: str,
    *,
    nonce: str | None,
) -> httpx.Response:
    data = {
        **form,
        "client_id": client.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    headers = {"DPoP": _proof(dpop_key, provider.token_endpoint, nonce)}
    return httpx.post(provider.token_endpoint, data=data, headers=headers, timeout=10)


def _client_credentials(
    provider: Provider,
    client: Client,
    dpop_key: jwk.ECKey,
    form: dict[str, str],
    details: list[dict[str, Any]],
) -> dict[str, Any]:
    """The HelseID round-trip: use_dpop_nonce first, then a fresh assertion and proof with the nonce."""
    form = {"grant_type": "client_credentials", **form}
    first = _post_token(
        provider, client, dpop_key, form, _assertion(client, provider.issuer, details), nonce=None
    )
    assert first.status_code == 400, first.text
    assert first.json()["error"] == "use_dpop_nonce"
    nonce = first.headers.get("DPoP-Nonce")
    assert nonce

    second = _post_token(
        provider, client, dpop_key, form, _assertion(client, provider.issuer, details), nonce=nonce
    )
    assert second.status_code == 200, second.text
    body: dict[str, Any] = second.json()
    return body


def _verify_access_token(provider: Provider, token: str) -> dict[str, Any]:
    jwks = httpx.get(str(provider.discovery["jwks_uri"]), timeout=5).json()
    decoded = jwt.decode(token, jwk.KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert decoded.header["typ"] == "at+jwt"
    claims: dict[str, Any] = dict(decoded.claims)
    assert claims["iss"] == provider.issuer
    assert claims["exp"] > time.time()
    return claims


def test_discovery_is_helseid_like(provider: Provider) -> None:
    disco = provider.discovery
    issuer = provider.issuer
    assert disco["issuer"] == issuer
    assert issuer.startswith("http://127.0.0.1:")
    assert disco["token_endpoint"] == f"{issuer}/connect/token"
    assert disco["pushed_authorization_request_endpoint"] == f"{issuer}/connect/par"
    assert disco["jwks_uri"] == f"{issuer}/.well-known/openid-configuration/jwks"
    assert disco["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert {"client_credentials", "authorization_code", "refresh_token", TOKEN_EXCHANGE} <= set(
        disco["grant_types_supported"]
    )
    assert disco["code_challenge_methods_supported"] == ["S256"]
    assert disco["request_parameter_supported"] is True
    assert {"ES256", "RS256"} <= set(disco["request_object_signing_alg_values_supported"])
    assert disco["revocation_endpoint"] == f"{issuer}/connect/revocation"
    assert {PID, "helseid://claims/hpr/hpr_number", "given_name"} <= set(disco["claims_supported"])
    assert {"ES256", "PS256", "RS256"} <= set(disco["dpop_signing_alg_values_supported"])


def test_multi_tenant_client_credentials_with_dpop_nonce(provider: Provider) -> None:
    client = provider.multi
    dpop_key = _ec_key("dpop")
    journal_id = str(uuid.uuid4())
    before = provider_stats(provider.issuer)

    # No resource parameter: the audience is derived from the scope, as at HelseID.
    body = _client_credentials(
        provider, client, dpop_key, {"scope": SCOPE}, _multi_details(PARENT_ORG, CHILD_ORG, journal_id)
    )

    assert body["token_type"] == "DPoP"
    assert 0 < body["expires_in"] <= 300
    assert body["scope"] == SCOPE
    claims = _verify_access_token(provider, body["access_token"])
    assert claims["aud"] == RESOURCE
    assert claims["scope"] == SCOPE
    assert claims["client_id"] == client.client_id
    assert claims["cnf"] == {"jkt": _ec_thumbprint(dpop_key)}
    assert claims["cnf"]["jkt"] != _ec_thumbprint(client.key)
    assert claims[TENANCY] == "multi-tenant"
    assert claims[CLAIMS + "orgnr_parent"] == PARENT_ORG
    assert claims[CLAIMS + "orgnr_child"] == CHILD_ORG
    assert claims[CLAIMS + "orgnr_supplier"] == SUPPLIER_ORG
    assert claims[JOURNAL_ID] == journal_id

    after = provider_stats(provider.issuer)
    assert after["token_requests"] - before["token_requests"] == 2
    assert after["nonce_challenges"] - before["nonce_challenges"] == 1


def test_multi_tenant_parent_only_and_explicit_resource(provider: Provider) -> None:
    body = _client_credentials(
        provider,
        provider.multi,
        _ec_key("dpop"),
        {"scope": "e-helse:sfm.api/sfm.api2", "resource": "e-helse:sfm.api"},
        _multi_details(PARENT_ORG, None, None),
    )
    claims = _verify_access_token(provider, body["access_token"])
    assert claims["aud"] == "e-helse:sfm.api"
    assert claims[CLAIMS + "orgnr_parent"] == PARENT_ORG
    assert claims[CLAIMS + "orgnr_supplier"] == SUPPLIER_ORG
    assert CLAIMS + "orgnr_child" not in claims
    assert JOURNAL_ID not in claims


def test_single_tenant_client_credentials_with_child_org(provider: Provider) -> None:
    client = provider.single
    dpop_key = _ec_key("dpop")

    body = _client_credentials(
        provider, client, dpop_key, {"scope": SCOPE, "resource": RESOURCE}, _single_details(CHILD_ORG)
    )

    assert body["token_type"] == "DPoP"
    claims = _verify_access_token(provider, body["access_token"])
    assert claims["aud"] == RESOURCE
    assert claims["client_id"] == client.client_id
    assert claims["cnf"] == {"jkt": _ec_thumbprint(dpop_key)}
    assert claims[TENANCY] == "single-tenant"
    assert claims[CLAIMS + "orgnr_parent"] == SINGLE_TENANT_ORG
    assert claims[CLAIMS + "orgnr_child"] == CHILD_ORG
    assert CLAIMS + "orgnr_supplier" not in claims


def _nonce(provider: Provider, client: Client, dpop_key: jwk.ECKey) -> str:
    first = _post_token(
        provider,
        client,
        dpop_key,
        {"grant_type": "client_credentials", "scope": SCOPE},
        _assertion(client, provider.issuer, None),
        nonce=None,
    )
    assert first.json()["error"] == "use_dpop_nonce"
    return first.headers["DPoP-Nonce"]


def test_rejects_assertion_with_other_typ(provider: Provider) -> None:
    client = provider.multi
    dpop_key = _ec_key("dpop")
    nonce = _nonce(provider, client, dpop_key)
    response = _post_token(
        provider,
        client,
        dpop_key,
        {"grant_type": "client_credentials", "scope": SCOPE},
        _assertion(client, provider.issuer, None, typ="JWT"),
        nonce=nonce,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_rejects_replayed_assertion(provider: Provider) -> None:
    client = provider.multi
    dpop_key = _ec_key("dpop")
    nonce = _nonce(provider, client, dpop_key)
    form = {"grant_type": "client_credentials", "scope": SCOPE}
    assertion = _assertion(client, provider.issuer, None)
    assert _post_token(provider, client, dpop_key, form, assertion, nonce=nonce).status_code == 200
    replay = _post_token(provider, client, dpop_key, form, assertion, nonce=nonce)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"


def test_requires_dpop(provider: Provider) -> None:
    client = provider.multi
    data = {
        "grant_type": "client_credentials",
        "scope": SCOPE,
        "client_id": client.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(client, provider.issuer, None),
    }
    response = httpx.post(provider.token_endpoint, data=data, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_rejects_single_tenant_identifier_from_multi_tenant_client(provider: Provider) -> None:
    client = provider.multi
    dpop_key = _ec_key("dpop")
    nonce = _nonce(provider, client, dpop_key)
    response = _post_token(
        provider,
        client,
        dpop_key,
        {"grant_type": "client_credentials", "scope": SCOPE},
        _assertion(client, provider.issuer, _single_details(CHILD_ORG)),
        nonce=nonce,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert MULTI_TENANT_SYSTEM in response.json()["error_description"]


def _token_with_nonce(
    provider: Provider,
    client: Client,
    dpop_key: jwk.ECKey,
    form: dict[str, str],
    details: list[dict[str, Any]] | None = None,
) -> httpx.Response:
    first = _post_token(
        provider, client, dpop_key, form, _assertion(client, provider.issuer, details), nonce=None
    )
    if first.status_code != 400 or first.json().get("error") != "use_dpop_nonce":
        return first
    nonce = first.headers["DPoP-Nonce"]
    return _post_token(
        provider, client, dpop_key, form, _assertion(client, provider.issuer, details), nonce=nonce
    )


def test_par_authorization_code_pkce_and_rotating_refresh(provider: Provider) -> None:
    client = provider.web
    dpop_key = _ec_key("dpop")
    verifier = secrets.token_urlsafe(48)
    challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())

    par = httpx.post(
        str(provider.discovery["pushed_authorization_request_endpoint"]),
        data={
            "client_id": client.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _assertion(client, provider.issuer, None),
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": f"openid offline_access {PID_SCOPE} {SCOPE} e-helse:sfm.api/sfm.api2",
            "resource": [RESOURCE, "e-helse:sfm.api"],
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "state-1",
            "prompt": "consent",
        },
        timeout=10,
    )
    assert par.status_code == 201, par.text
    callback = log_in(_authorization_url(provider, client, par.json()["request_uri"]), username=TEST_PID)
    assert callback.iss == provider.issuer
    assert callback.state == "state-1"
    code = callback.code

    redeemed = _token_with_nonce(
        provider,
        client,
        dpop_key,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "resource": RESOURCE,
        },
    )
    assert redeemed.status_code == 200, redeemed.text
    tokens = redeemed.json()
    assert tokens["token_type"] == "DPoP"
    assert {"id_token", "refresh_token"} <= tokens.keys()
    claims = _verify_access_token(provider, tokens["access_token"])
    assert claims["aud"] == RESOURCE
    assert claims["sub"] == TEST_PID
    assert claims["helseid://claims/identity/pid"] == TEST_PID
    assert claims["cnf"] == {"jkt": _ec_thumbprint(dpop_key)}

    # Organisations go in the client assertion of the refresh grant; the audience is switched too.
    refreshed = _token_with_nonce(
        provider,
        client,
        dpop_key,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "resource": "e-helse:sfm.api",
        },
        _multi_details(PARENT_ORG, CHILD_ORG, None),
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    claims = _verify_access_token(provider, refreshed.json()["access_token"])
    assert claims["aud"] == "e-helse:sfm.api"
    assert claims["scope"] == "e-helse:sfm.api/sfm.api2"
    assert claims[CLAIMS + "orgnr_parent"] == PARENT_ORG
    assert claims[CLAIMS + "orgnr_child"] == CHILD_ORG

    reused = _token_with_nonce(
        provider,
        client,
        dpop_key,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "resource": RESOURCE},
    )
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"


def test_rejects_scope_not_granted_to_the_client(provider: Provider) -> None:
    client = provider.multi
    dpop_key = _ec_key("dpop")
    response = _token_with_nonce(
        provider, client, dpop_key, {"grant_type": "client_credentials", "scope": f"{SCOPE} nhn:other/scope"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


# ---- user sessions: PAR with a request object, login, refresh per resource, exchange, revocation ----


def _authorization_url(provider: Provider, client: Client, request_uri: str) -> str:
    query = urlencode({"client_id": client.client_id, "request_uri": request_uri})
    return f"{provider.discovery['authorization_endpoint']}?{query}"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _request_object(
    provider: Provider,
    client: Client,
    claims: dict[str, Any],
    *,
    lifetime: int = 30,
    key: jwk.ECKey | None = None,
) -> str:
    """A JAR (RFC 9101) request object as HelseID wants it: iss = client_id, aud = issuer, <= 60 s."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": client.client_id,
        "aud": provider.issuer,
        "client_id": client.client_id,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        **claims,
    }
    signer = key or client.key
    return jwt.encode({"alg": "ES256", "typ": "oauth-authz-req+jwt", "kid": signer.kid}, payload, signer)


def _push(
    provider: Provider,
    client: Client,
    form: dict[str, Any],
    *,
    request_claims: dict[str, Any] | None = None,
    dpop_key: jwk.ECKey | None = None,
) -> httpx.Response:
    """PAR with a fresh assertion (and request object) per attempt; retries once on use_dpop_nonce."""
    nonce: str | None = None
    for _ in range(2):
        data = {
            **form,
            "client_id": client.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _assertion(client, provider.issuer, None),
        }
        if request_claims is not None:
            data["request"] = _request_object(provider, client, request_claims)
        headers = {"DPoP": _proof(dpop_key, provider.par_endpoint, nonce)} if dpop_key else {}
        response = httpx.post(provider.par_endpoint, data=data, headers=headers, timeout=10)
        if response.status_code == 400 and response.json().get("error") == "use_dpop_nonce":
            nonce = response.headers["DPoP-Nonce"]
            continue
        return response
    return response


def _session_form(challenge: str, state: str, nonce: str) -> dict[str, Any]:
    """The PAR parameters sent next to the request object (HelseID's sample client does the same)."""
    return {
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": USER_SCOPE,
        "resource": [RESOURCE_A, RESOURCE_B],
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
        "nonce": nonce,
    }


def _verify_id_token(provider: Provider, token: str) -> dict[str, Any]:
    jwks = httpx.get(str(provider.discovery["jwks_uri"]), timeout=5).json()
    decoded = jwt.decode(token, jwk.KeySet.import_key_set(jwks), algorithms=["RS256"])
    claims: dict[str, Any] = dict(decoded.claims)
    assert claims["iss"] == provider.issuer
    return claims


def _refresh(
    provider: Provider,
    client: Client,
    dpop_key: jwk.ECKey,
    refresh_token: str,
    resource: str,
    *,
    details: list[dict[str, Any]] | None = None,
) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": resource}
    return _token_with_nonce(provider, client, dpop_key, form, details)


def _client_auth(provider: Provider, client: Client) -> dict[str, str]:
    return {
        "client_id": client.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(client, provider.issuer, None),
    }


def _introspect(provider: Provider, client: Client, token: str) -> dict[str, Any]:
    response = httpx.post(
        str(provider.discovery["introspection_endpoint"]),
        data={"token": token, **_client_auth(provider, client)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _assert_kari(claims: dict[str, Any]) -> None:
    assert claims["sub"] == "kari"
    assert claims[PID] == KARI_PID
    assert claims["helseid://claims/identity/security_level"] == "4"
    assert claims["helseid://claims/identity/assurance_level"] == "high"
    assert claims["helseid://claims/hpr/hpr_number"]
    assert claims["given_name"] == "Kari"
    assert claims["family_name"] == "Nordmann"
    assert claims["name"] == "Kari Nordmann"


def test_user_session_request_object_login_refresh_exchange_and_revocation(provider: Provider) -> None:
    client = provider.web
    dpop_key = _ec_key("dpop-session")
    verifier, challenge = _pkce()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)

    # PAR: the organisation in a signed request object, everything else next to it; DPoP on PAR.
    par = _push(
        provider,
        client,
        _session_form(challenge, state, nonce),
        request_claims={"authorization_details": _multi_details(PARENT_ORG, CHILD_ORG, None)},
        dpop_key=dpop_key,
    )
    assert par.status_code == 201, par.text
    assert par.json()["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")

    callback = log_in(_authorization_url(provider, client, par.json()["request_uri"]))
    assert callback.state == state
    assert callback.iss == provider.issuer

    # Code redemption for API A: PKCE, DPoP (same key as on PAR), one resource, no org details.
    redeemed = _token_with_nonce(
        provider,
        client,
        dpop_key,
        {
            "grant_type": "authorization_code",
            "code": callback.code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "resource": RESOURCE_A,
        },
    )
    assert redeemed.status_code == 200, redeemed.text
    tokens = redeemed.json()
    assert tokens["token_type"] == "DPoP"
    assert tokens["scope"] == SCOPE_A
    assert 0 < tokens["rt_expires_in"] <= 8 * 3600
    assert "authorization_details" not in tokens
    id_token = _verify_id_token(provider, tokens["id_token"])
    assert id_token["aud"] == client.client_id
    assert id_token["nonce"] == nonce
    _assert_kari(id_token)

    token_a = _verify_access_token(provider, tokens["access_token"])
    assert token_a["aud"] == RESOURCE_A
    assert token_a["scope"] == SCOPE_A
    assert token_a["client_id"] == client.client_id
    assert token_a["cnf"] == {"jkt": _ec_thumbprint(dpop_key)}
    _assert_kari(token_a)
    assert token_a[TENANCY] == "multi-tenant"
    assert token_a[CLAIMS + "orgnr_parent"] == PARENT_ORG
    assert token_a[CLAIMS + "orgnr_child"] == CHILD_ORG
    assert token_a[CLAIMS + "orgnr_supplier"] == SUPPLIER_ORG
    assert "authorization_details" not in token_a

    # Refresh for API B: a new single-audience token, the request object's org kept, a new RT.
    refreshed = _refresh(provider, client, dpop_key, tokens["refresh_token"], RESOURCE_B)
    assert refreshed.status_code == 200, refreshed.text
    refreshed_tokens = refreshed.json()
    assert refreshed_tokens["refresh_token"] != tokens["refresh_token"]
    assert 0 < refreshed_tokens["rt_expires_in"] <= tokens["rt_expires_in"]
    token_b = _verify_access_token(provider, refreshed_tokens["access_token"])
    assert token_b["aud"] == RESOURCE_B
    assert token_b["scope"] == SCOPE_B
    assert token_b["sub"] == "kari"
    assert token_b[PID] == KARI_PID
    assert token_b[CLAIMS + "orgnr_parent"] == PARENT_ORG
    assert token_b[CLAIMS + "orgnr_child"] == CHILD_ORG

    # Another org on the next refresh, in the refresh grant's client assertion.
    other_parent, other_child = "944444444", "955555555"
    switched = _refresh(
        provider,
        client,
        dpop_key,
        refreshed_tokens["refresh_token"],
        RESOURCE_A,
        details=_multi_details(other_parent, other_child, None),
    )
    assert switched.status_code == 200, switched.text
    token_a2 = _verify_access_token(provider, switched.json()["access_token"])
    assert token_a2["aud"] == RESOURCE_A
    assert token_a2[CLAIMS + "orgnr_parent"] == other_parent
    assert token_a2[CLAIMS + "orgnr_child"] == other_child
    assert token_a2[CLAIMS + "orgnr_supplier"] == SUPPLIER_ORG
    current_rt = switched.json()["refresh_token"]

    # Token exchange: API A (the actor) swaps the user's A token for one to API B.
    api_key = _ec_key("dpop-api")
    exchanged = _token_with_nonce(
        provider,
        provider.api,
        api_key,
        {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": tokens["access_token"],
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "scope": SCOPE_B,
            "resource": RESOURCE_B,
        },
    )
    assert exchanged.status_code == 200, exchanged.text
    body = exchanged.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "DPoP"
    assert body["scope"] == SCOPE_B
    assert "refresh_token" not in body
    token_x = _verify_access_token(provider, body["access_token"])
    assert token_x["aud"] == RESOURCE_B
    assert token_x["scope"] == SCOPE_B
    assert token_x["cnf"] == {"jkt": _ec_thumbprint(api_key)}
    assert token_x["client_id"] == provider.api.client_id
    assert token_x["act"] == {
        "iss": provider.issuer,
        "client_id": provider.api.client_id,
        CLAIMS + "orgnr_parent": API_ORG,
    }
    _assert_kari(token_x)
    assert token_x[CLAIMS + "orgnr_parent"] == PARENT_ORG
    assert token_x[CLAIMS + "orgnr_child"] == CHILD_ORG
    assert token_x[CLAIMS + "orgnr_supplier"] == SUPPLIER_ORG

    # Revocation (RFC 7009) of the current refresh token, then it no longer refreshes.
    assert _introspect(provider, client, current_rt)["active"] is True
    revoked = httpx.post(
        str(provider.discovery["revocation_endpoint"]),
        data={"token": current_rt, "token_type_hint": "refresh_token", **_client_auth(provider, client)},
        timeout=10,
    )
    assert revoked.status_code == 200, revoked.text
    assert _introspect(provider, client, current_rt)["active"] is False
    after = _refresh(provider, client, dpop_key, current_rt, RESOURCE_B)
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"
    # Rotation: a refresh token that was already used is refused too.
    reused = _refresh(provider, client, dpop_key, tokens["refresh_token"], RESOURCE_B)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"


def test_request_object_alone_with_dpop_jkt_and_single_tenant_org(provider: Provider) -> None:
    """Strict RFC 9101 style: every parameter inside the request object, dpop_jkt instead of a proof."""
    client = provider.web
    dpop_key = _ec_key("dpop-jkt")
    verifier, challenge = _pkce()
    claims = {
        **_session_form(challenge, "state-jar", "nonce-jar"),
        "scope": f"openid offline_access {PID_SCOPE} {SCOPE_A}",
        "resource": RESOURCE_A,
        "dpop_jkt": _ec_thumbprint(dpop_key),
        "authorization_details": _multi_details(PARENT_ORG, None, str(uuid.uuid4())),
    }
    par = _push(provider, client, {}, request_claims=claims)
    assert par.status_code == 201, par.text
    callback = log_in(
        _authorization_url(provider, client, par.json()["request_uri"]),
        username="ola",
        redirect_uri=REDIRECT_URI,
    )
    assert callback.state == "state-jar"

    form = {
        "grant_type": "authorization_code",
        "code": callback.code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "resource": RESOURCE_A,
    }
    redeemed = _token_with_nonce(provider, client, dpop_key, form)
    assert redeemed.status_code == 200, redeemed.text
    claims_a = _verify_access_token(provider, redeemed.json()["access_token"])
    assert claims_a["sub"] == "ola"
    assert claims_a[PID] != KARI_PID
    assert claims_a[CLAIMS + "orgnr_parent"] == PARENT_ORG
    assert CLAIMS + "orgnr_child" not in claims_a
    assert JOURNAL_ID in claims_a
    assert "name" not in claims_a  # profile was not asked for


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("details_outside", "invalid_request"),
        ("wrong_key", "invalid_request_object"),
        ("too_long", "invalid_request_object"),
        ("both_detail_names", "invalid_request_object"),
        ("replayed", "invalid_request_object"),
    ],
)
def test_par_refuses_bad_request_objects(provider: Provider, case: str, error: str) -> None:
    client = provider.web
    _, challenge = _pkce()
    form: dict[str, Any] = _session_form(challenge, "s", "n")
    details = _multi_details(PARENT_ORG, None, None)
    if case == "details_outside":
        form["authorization_details"] = json.dumps(details)
        request = _request_object(provider, client, {})
    elif case == "wrong_key":
        request = _request_object(
            provider, client, {"authorization_details": details}, key=_ec_key(str(client.key.kid))
        )
    elif case == "too_long":
        request = _request_object(provider, client, {"authorization_details": details}, lifetime=120)
    elif case == "both_detail_names":
        request = _request_object(
            provider, client, {"authorization_details": details, "assertion_details": details}
        )
    else:
        request = _request_object(provider, client, {"authorization_details": details})
        first = _push(provider, client, {**form, "request": request})
        assert first.status_code == 201, first.text
    response = _push(provider, client, {**form, "request": request})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error


def test_token_exchange_refusals(provider: Provider) -> None:
    subject = _client_credentials(
        provider, provider.multi, _ec_key("dpop"), {"scope": SCOPE_A}, _multi_details(PARENT_ORG, None, None)
    )["access_token"]
    base = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "scope": SCOPE_B,
        "resource": RESOURCE_B,
    }
    api, key = provider.api, _ec_key("dpop-api")

    ok = _token_with_nonce(provider, api, key, base)
    assert ok.status_code == 200, ok.text
    claims = _verify_access_token(provider, ok.json()["access_token"])
    assert claims["sub"] == api.client_id  # a machine subject: no user claims
    assert PID not in claims
    assert claims[CLAIMS + "orgnr_parent"] == PARENT_ORG

    cases: list[tuple[Client, dict[str, str], str]] = [
        (api, {**base, "subject_token_type": "urn:ietf:params:oauth:token-type:id_token"}, "invalid_request"),
        (api, {**base, "subject_token": subject[:-4] + "AAAA"}, "invalid_grant"),
        (api, {**base, "resource": RESOURCE_A, "scope": SCOPE_A}, "invalid_target"),
        (api, {**base, "scope": "nhn:other/scope"}, "invalid_scope"),
        (provider.single, base, "invalid_request"),  # token exchange not in its grant_types
    ]
    for client, form, error in cases:
        response = _token_with_nonce(provider, client, key, form)
        assert response.status_code == 400, (form, response.text)
        assert response.json()["error"] == error, (form, response.text)

    # No DPoP proof at all.
    data = {
        **base,
        "client_id": api.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(api, provider.issuer, None),
    }
    response = httpx.post(provider.token_endpoint, data=data, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_log_in_reports_an_unusable_request_uri(provider: Provider) -> None:
    with pytest.raises(LoginError):
        log_in(
            _authorization_url(provider, provider.web, "urn:ietf:params:oauth:request_uri:nope"), timeout=5
        )


class _InstantAuthority(BaseHTTPRequestHandler):
    """Stands in for the broker's dev authority: /connect/authorize answers 302 to the callback."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        issuer = f"http://{self.headers['Host']}"
        if "deny" in query:
            params = {"error": "access_denied", "error_description": "no", "state": "s"}
        else:
            params = {"code": "instant-code", "state": query["state"][0], "iss": issuer}
        self.send_response(302)
        self.send_header("Location", f"http://127.0.0.1:1/callback?{urlencode(params)}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def instant_authority() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _InstantAuthority)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_log_in_with_a_non_interactive_authority(instant_authority: str) -> None:
    callback = log_in(f"{instant_authority}/connect/authorize?client_id=c&request_uri=r&state=xyz")
    assert callback.code == "instant-code"
    assert callback.state == "xyz"
    assert callback.iss == instant_authority

    with pytest.raises(LoginError) as denied:
        log_in(f"{instant_authority}/connect/authorize?deny=1")
    assert denied.value.error == "access_denied"
