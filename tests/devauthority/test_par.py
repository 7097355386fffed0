"""Pushed authorization requests (RFC 9126) and their signed request objects (RFC 9101)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey

from devauthority import RunningAuthority

from .conftest import (
    KJ,
    KJ_SCOPE,
    LOGIN_SCOPE,
    PPS,
    PPS_SCOPE,
    REDIRECT_URI,
    SFM_SCOPE,
    SINGLE_ORG,
    SUPPLIER_ORG,
    TENANT_CHILD,
    TENANT_ORG,
    registration,
)
from .helpers import (
    JWT_BEARER,
    MULTI_TENANT_SYSTEM,
    Caller,
    DevClient,
    LoginFlow,
    client_assertion,
    error_of,
    org_details,
    pkce_pair,
    request_object,
)

PARENT = "helseid://claims/client/claims/orgnr_parent"
CHILD = "helseid://claims/client/claims/orgnr_child"
SUPPLIER = "helseid://claims/client/claims/orgnr_supplier"
PID = "helseid://claims/identity/pid"


@pytest.mark.parametrize(
    ("params", "drop", "error"),
    [
        ({"redirect_uri": "http://127.0.0.1:8089/elsewhere"}, (), "invalid_request"),
        ({}, ("redirect_uri",), "invalid_request"),
        ({"scope": f"profile {KJ_SCOPE}"}, (), "invalid_scope"),  # no openid
        ({"scope": f"openid {SFM_SCOPE}"}, (), "invalid_scope"),  # not the client's
        ({"scope": "openid helseid://scopes/identity/made_up"}, (), "invalid_scope"),
        ({}, ("code_challenge",), "invalid_request"),
        ({"code_challenge_method": "plain"}, (), "invalid_request"),
        ({"code_challenge": "too-short"}, (), "invalid_request"),
        ({"response_type": "token"}, (), "unsupported_response_type"),
        ({}, ("response_type",), "invalid_request"),
        ({"login_hint": "nobody-registered"}, (), "invalid_request"),
        ({"request_uri": "urn:ietf:params:oauth:request_uri:x"}, (), "invalid_request"),
        ({"dpop_jkt": "not a thumbprint"}, (), "invalid_request"),
        ({"authorization_details": "[]"}, (), "invalid_request"),  # orgs go in a request object
    ],
)
async def test_par_is_refused_when_a_parameter_is_wrong(
    flow: LoginFlow, params: dict[str, Any], drop: tuple[str, ...], error: str
) -> None:
    pushed = await flow.push(scope=params.pop("scope", LOGIN_SCOPE), drop=drop, **params)

    assert error_of(pushed.response) == error


async def test_par_is_refused_with_invalid_target_when_a_resource_is_not_the_clients(
    flow: LoginFlow,
) -> None:
    pushed = await flow.push(scope=LOGIN_SCOPE, resources=(KJ, PPS, "e-helse:sfm.api"))

    assert error_of(pushed.response) == "invalid_target"


async def test_par_is_refused_with_invalid_scope_when_api_scopes_lack_their_resource(flow: LoginFlow) -> None:
    pushed = await flow.push(scope=LOGIN_SCOPE, resources=(KJ,))  # PPS scope, but no PPS resource

    assert error_of(pushed.response) == "invalid_scope"


async def test_par_is_refused_with_unauthorized_client_when_the_client_may_not_log_users_in(
    caller: Caller, multi_client: DevClient
) -> None:
    other = LoginFlow(caller=caller, client=multi_client, redirect_uri=REDIRECT_URI)

    assert error_of((await other.push(scope=f"openid {PPS_SCOPE}")).response) == "unauthorized_client"


async def test_par_is_refused_with_invalid_scope_when_offline_access_lacks_the_refresh_grant(
    caller: Caller, authority: RunningAuthority
) -> None:
    no_refresh = DevClient("no-refresh", ECKey.generate_key("P-256", parameters={"kid": "nr"}), "ES256")
    authority.register(
        registration(
            no_refresh,
            tenancy="single",
            organization_number=SINGLE_ORG,
            grant_types=["authorization_code"],
            redirect_uris=[REDIRECT_URI],
        )
    )
    other = LoginFlow(caller=caller, client=no_refresh, redirect_uri=REDIRECT_URI)

    assert error_of((await other.push(scope="openid offline_access")).response) == "invalid_scope"
    assert (await other.push(scope="openid profile")).response.status_code == 201


async def test_par_accepts_the_par_endpoint_as_assertion_audience(flow: LoginFlow) -> None:
    pushed = await flow.push(scope=LOGIN_SCOPE, assertion=flow.assertion(aud=flow.par_endpoint))

    assert pushed.response.status_code == 201, pushed.response.text


async def test_par_assertion_is_single_use_across_endpoints(flow: LoginFlow, caller: Caller) -> None:
    assertion = flow.assertion()
    assert (await flow.push(scope=LOGIN_SCOPE, assertion=assertion)).response.status_code == 201

    again = await flow.push(scope=LOGIN_SCOPE, assertion=assertion)
    await caller.request_token(flow.client, scope=PPS_SCOPE)  # learn a nonce
    at_token = await caller.post_token(
        caller.form(flow.client, scope=PPS_SCOPE, assertion=assertion), proof=caller.proof()
    )

    assert error_of(again.response) == "invalid_client"
    assert error_of(at_token) == "invalid_client"


async def test_par_is_refused_when_the_client_assertion_carries_org_details(flow: LoginFlow) -> None:
    details = {"assertion_details": org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}")}

    pushed = await flow.push(scope=LOGIN_SCOPE, assertion=flow.assertion(claims=details))

    assert error_of(pushed.response) == "invalid_request"
    assert "request object" in pushed.response.json()["error_description"]


async def test_par_is_refused_with_invalid_request_when_sent_as_get(flow: LoginFlow, caller: Caller) -> None:
    assert error_of(await caller.http.get(flow.par_endpoint)) == "invalid_request"


# --- request objects ------------------------------------------------------------------------------------


def _login_claims(challenge: str, **extra: Any) -> dict[str, Any]:
    """Every authorization parameter, inside the request object (what the broker sends)."""
    return {
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": LOGIN_SCOPE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "from-the-object",
        "nonce": "nonce-in-object",
        "resource": [KJ, PPS],
        **extra,
    }


async def _push_object(flow: LoginFlow, signed: str) -> httpx.Response:
    form = {
        "client_id": flow.client.client_id,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": flow.assertion(),
        "request": signed,
    }
    return await flow.caller.http.post(flow.par_endpoint, data=form)


async def test_request_object_org_lands_on_the_user_token_when_par_carries_it(
    flow: LoginFlow, caller: Caller
) -> None:
    verifier, challenge = pkce_pair()
    details = [org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}:{TENANT_CHILD}")]
    signed = request_object(
        flow.client, aud=caller.issuer, claims=_login_claims(challenge, authorization_details=details)
    )

    pushed = await _push_object(flow, signed)
    assert pushed.status_code == 201, pushed.text
    redirect = await flow.authorize(pushed.json()["request_uri"])
    assert redirect.params["state"] == "from-the-object"
    tokens = await flow.redeem(redirect.params["code"], verifier, resource=PPS)

    assert tokens.status_code == 200, tokens.text
    _, claims = await caller.verified_claims(tokens.json()["access_token"])
    assert (claims[PARENT], claims[CHILD], claims[SUPPLIER]) == (TENANT_ORG, TENANT_CHILD, SUPPLIER_ORG)
    assert claims[PID] == "05898597468"
    assert claims["aud"] == PPS
    _, id_claims = await caller.verified_claims(tokens.json()["id_token"])
    assert id_claims["nonce"] == "nonce-in-object"
    # The login's org also holds for refreshed tokens that do not name one.
    refreshed = await flow.refresh(tokens.json()["refresh_token"], resource=KJ)
    _, refreshed_claims = await caller.verified_claims(refreshed.json()["access_token"])
    assert refreshed_claims[CHILD] == TENANT_CHILD


async def test_request_object_parameters_override_the_form(flow: LoginFlow, caller: Caller) -> None:
    signed = request_object(flow.client, aud=caller.issuer, claims={"state": "object-wins"})

    pushed = await flow.push(scope=LOGIN_SCOPE, state="form-loses", request=signed)
    assert pushed.response.status_code == 201, pushed.response.text

    redirect = await flow.authorize(pushed.request_uri)
    assert redirect.params["state"] == "object-wins"


@pytest.mark.parametrize(
    "variant",
    ["foreign_key", "too_long", "token_aud", "assertion_details", "wrong_iss", "expired"],
)
async def test_request_object_is_refused_with_invalid_request_object_when_it_breaks_a_rule(
    flow: LoginFlow, caller: Caller, variant: str
) -> None:
    _, challenge = pkce_pair()
    claims = _login_claims(challenge)
    arguments: dict[str, Any] = {"aud": caller.issuer}
    if variant == "foreign_key":
        arguments["key"] = ECKey.generate_key("P-256", parameters={"kid": str(flow.client.key.kid)})
    elif variant == "too_long":
        arguments["lifetime"] = 61
    elif variant == "token_aud":
        arguments["aud"] = caller.token_endpoint
    elif variant == "assertion_details":
        claims["assertion_details"] = org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}")
    elif variant == "wrong_iss":
        claims["iss"] = "someone-else"
    elif variant == "expired":
        claims.update({"iat": 1_000_000, "nbf": 1_000_000, "exp": 1_000_030})
    signed = request_object(flow.client, claims=claims, **arguments)

    pushed = await _push_object(flow, signed)

    assert error_of(pushed) == "invalid_request_object"


async def test_request_object_org_is_refused_when_the_parent_has_not_delegated(
    flow: LoginFlow, caller: Caller
) -> None:
    _, challenge = pkce_pair()
    details = org_details(MULTI_TENANT_SYSTEM, "NO:ORGNR:911111111")
    signed = request_object(
        flow.client, aud=caller.issuer, claims=_login_claims(challenge, authorization_details=details)
    )

    pushed = await _push_object(flow, signed)

    assert error_of(pushed) == "invalid_request"
    assert "HID-1001" in pushed.json()["error_description"]


async def test_stats_count_the_steps_of_a_login(
    flow: LoginFlow, caller: Caller, authority: RunningAuthority
) -> None:
    code, pushed = await flow.login(scope=LOGIN_SCOPE, resources=(KJ, PPS))
    tokens = (await flow.redeem(code, pushed.verifier, resource=KJ)).json()
    await flow.refresh(tokens["refresh_token"], resource=PPS)
    await flow.push(scope="profile")  # invalid_scope
    await flow.authorize("urn:ietf:params:oauth:request_uri:unknown")
    await flow.revoke(tokens["refresh_token"])

    stats = authority.stats()

    assert stats["par_requests"] == 2
    assert stats["logins"] == 1
    assert stats["refreshes"] == 1
    assert stats["exchanges"] == 0
    assert stats["revocations"] == 1
    assert stats["tokens_issued"] == 2
    assert stats["token_requests_by_grant"] == {"authorization_code": 2, "refresh_token": 1}
    assert stats["errors_by_code"] == {"use_dpop_nonce": 1, "invalid_scope": 1, "invalid_request_uri": 1}


async def test_assertion_for_par_is_refused_at_par_when_aud_is_another_endpoint(flow: LoginFlow) -> None:
    assertion = client_assertion(flow.client, aud=flow.caller.issuer + "/connect/revocation")

    assert error_of((await flow.push(scope=LOGIN_SCOPE, assertion=assertion)).response) == "invalid_client"
