"""Smoke test of the HelseID-like test OpenID provider (tests/oidc_provider) over plain HTTP.

Speaks the protocol by hand with httpx and joserfc (no broker code): private_key_jwt client
assertions with HelseID's assertion_details, DPoP with a server nonce, JWT access tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwk, jwt

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

    @property
    def issuer(self) -> str:
        return self.running.issuer

    @property
    def token_endpoint(self) -> str:
        return str(self.discovery["token_endpoint"])


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
    web_entry = {
        **_client_entry(web, "multi", SUPPLIER_ORG),
        "scopes": ["openid", "offline_access", PID_SCOPE, SCOPE, "e-helse:sfm.api/sfm.api2"],
        "redirect_uris": [REDIRECT_URI],
    }
    workdir: Path = tmp_path_factory.mktemp("oidc_provider")
    running = start_oidc_provider(
        workdir,
        [
            _client_entry(multi, "multi", SUPPLIER_ORG),
            _client_entry(single, "single", SINGLE_TENANT_ORG),
            web_entry,
        ],
    )
    try:
        discovery = httpx.get(f"{running.issuer}/.well-known/openid-configuration", timeout=5).json()
        yield Provider(running, discovery, multi, single, web)
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
    assert {"client_credentials", "authorization_code", "refresh_token"} <= set(
        disco["grant_types_supported"]
    )
    assert disco["code_challenge_methods_supported"] == ["S256"]
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


def _log_in_through_dev_interactions(provider: Provider, request_uri: str, client_id: str) -> str:
    """Drive the provider's development login and consent pages; return the authorization code."""
    with httpx.Client(base_url=provider.issuer, follow_redirects=False, timeout=10) as browser:
        response = browser.get(
            str(provider.discovery["authorization_endpoint"]),
            params={"client_id": client_id, "request_uri": request_uri},
        )
        for _ in range(10):
            location = response.headers.get("location")
            if location and location.startswith(REDIRECT_URI):
                params = httpx.URL(location).params
                assert params["iss"] == provider.issuer
                assert params["state"] == "state-1"
                return params["code"]
            if location:
                response = browser.get(location)
                continue
            action = re.search(r'action="([^"]+)"', response.text)
            assert action, response.text
            if 'name="login"' in response.text:
                response = browser.post(action.group(1), data={"prompt": "login", "login": TEST_PID})
            else:
                response = browser.post(action.group(1), data={"prompt": "consent"})
    raise AssertionError("no redirect back to the client")


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
    code = _log_in_through_dev_interactions(provider, par.json()["request_uri"], client.client_id)

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
