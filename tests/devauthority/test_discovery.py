from __future__ import annotations

import httpx

from devauthority import RunningAuthority

APPROVED = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


async def test_discovery_lists_helseid_endpoints_when_fetched(
    http: httpx.AsyncClient, authority: RunningAuthority
) -> None:
    response = await http.get(authority.issuer + "/.well-known/openid-configuration")

    assert response.status_code == 200
    document = response.json()
    issuer = authority.issuer
    assert document["issuer"] == issuer
    assert not issuer.endswith("/")
    assert issuer == f"http://127.0.0.1:{authority.port}"
    assert document["token_endpoint"] == issuer + "/connect/token"
    assert document["jwks_uri"] == issuer + "/.well-known/openid-configuration/jwks"
    assert document["pushed_authorization_request_endpoint"] == issuer + "/connect/par"
    assert document["authorization_endpoint"] == issuer + "/connect/authorize"
    assert document["revocation_endpoint"] == issuer + "/connect/revocation"
    assert document["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert sorted(document["dpop_signing_alg_values_supported"]) == sorted(APPROVED)
    assert document["require_pushed_authorization_requests"] is True
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert set(document["grant_types_supported"]) == {
        "client_credentials",
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    }


async def test_jwks_serves_only_a_public_rs256_key_when_fetched(
    http: httpx.AsyncClient, authority: RunningAuthority
) -> None:
    response = await http.get(authority.issuer + "/.well-known/openid-configuration/jwks")

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()
