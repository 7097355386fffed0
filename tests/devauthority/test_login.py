"""PAR → authorize → code + PKCE + DPoP, over real HTTP, checked with an independent client."""

from __future__ import annotations

from joserfc.jwk import ECKey

from devauthority import RunningAuthority

from .conftest import (
    IDENTITY_SCOPES,
    KJ,
    KJ_SCOPE,
    LOGIN_SCOPE,
    OLA,
    PPS,
    PPS_SCOPE,
    REDIRECT_URI,
    SINGLE_ORG,
    TENANT_ORG,
    registration,
)
from .helpers import (
    MULTI_TENANT_SYSTEM,
    Caller,
    DevClient,
    LoginFlow,
    dpop_proof,
    error_of,
    org_details,
    pkce_pair,
    rfc7638_thumbprint,
)

PID = "helseid://claims/identity/pid"
SECURITY_LEVEL = "helseid://claims/identity/security_level"
ASSURANCE_LEVEL = "helseid://claims/identity/assurance_level"
HPR_NUMBER = "helseid://claims/hpr/hpr_number"


async def test_full_login_gives_verified_id_token_and_single_audience_dpop_token_when_resource_is_given(
    flow: LoginFlow, caller: Caller, authority: RunningAuthority, login_client: DevClient
) -> None:
    pushed = await flow.push(scope=LOGIN_SCOPE, resources=(KJ, PPS), state="st-1", nonce="n-0S6_WzA2Mj")
    assert pushed.response.status_code == 201, pushed.response.text
    assert pushed.response.headers["Cache-Control"] == "no-store"
    assert pushed.response.json()["expires_in"] == 60
    assert pushed.request_uri.startswith("urn:ietf:params:oauth:request_uri:")

    redirect = await flow.authorize(pushed.request_uri)

    assert redirect.status == 302
    assert redirect.location is not None
    assert redirect.location.startswith(REDIRECT_URI + "?")
    assert redirect.params["state"] == "st-1"
    assert redirect.params["iss"] == authority.issuer  # RFC 9207
    assert caller.nonce is None  # no nonce yet: the redemption below must go through the challenge

    response = await flow.redeem(redirect.params["code"], pushed.verifier, resource=KJ)

    assert response.status_code == 200, response.text
    assert authority.stats()["nonce_challenges"] == 1
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert body["expires_in"] == 5
    assert set(body["scope"].split()) == set(IDENTITY_SCOPES.split()) | {KJ_SCOPE}
    assert 8 * 3600 - 5 <= body["rt_expires_in"] <= 8 * 3600
    assert body["refresh_token"]

    id_header, id_claims = await caller.verified_claims(body["id_token"])
    assert id_header["alg"] == "RS256"
    assert id_claims["iss"] == authority.issuer
    assert id_claims["aud"] == login_client.client_id
    assert id_claims["nonce"] == "n-0S6_WzA2Mj"
    assert id_claims["exp"] > id_claims["iat"]
    assert id_claims[PID] == "05898597468"
    assert id_claims[HPR_NUMBER] == "565501872"
    assert id_claims[SECURITY_LEVEL] == "4"
    assert id_claims[ASSURANCE_LEVEL] == "high"
    assert (id_claims["name"], id_claims["given_name"], id_claims["family_name"]) == (
        "Kari Nordmann",
        "Kari",
        "Nordmann",
    )
    assert id_claims["sid"]
    assert id_claims["sub"]
    assert id_claims["sub"] != id_claims[PID]  # a pseudonym, not the fnr

    at_header, at_claims = await caller.verified_claims(body["access_token"])
    assert at_header["typ"] == "at+jwt"
    assert at_claims["aud"] == KJ
    assert at_claims["cnf"] == {"jkt": rfc7638_thumbprint(caller.dpop_key.as_dict(private=False))}
    assert at_claims["client_id"] == login_client.client_id
    assert KJ_SCOPE in at_claims["scope"]
    assert PPS_SCOPE not in at_claims["scope"]
    assert at_claims[PID] == "05898597468"
    assert at_claims[HPR_NUMBER] == "565501872"
    assert at_claims["sub"] == id_claims["sub"]
    assert at_claims["sid"] == id_claims["sid"]


async def test_token_has_every_par_resource_as_audience_when_redeemed_without_resource(
    flow: LoginFlow, caller: Caller
) -> None:
    code, pushed = await flow.login(scope=LOGIN_SCOPE, resources=(KJ, PPS))

    response = await flow.redeem(code, pushed.verifier)

    assert response.status_code == 200, response.text
    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert claims["aud"] == [KJ, PPS]  # HelseID's multi-aud token: fine for userinfo, not for APIs
    assert {KJ_SCOPE, PPS_SCOPE} <= set(claims["scope"])


async def test_resources_default_to_the_apis_of_the_scopes_when_par_names_none(
    flow: LoginFlow, caller: Caller
) -> None:
    code, pushed = await flow.login(scope=f"openid {PPS_SCOPE}")

    response = await flow.redeem(code, pushed.verifier)

    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body  # no offline_access, no refresh token
    assert "rt_expires_in" not in body
    _, claims = await caller.verified_claims(body["access_token"])
    assert claims["aud"] == PPS
    assert PID not in claims  # claims follow scopes: no pid scope, no pid


async def test_login_hint_logs_in_the_named_test_user(flow: LoginFlow, caller: Caller) -> None:
    code, pushed = await flow.login(scope=LOGIN_SCOPE, login_hint="ola")

    body = (await flow.redeem(code, pushed.verifier, resource=KJ)).json()

    _, id_claims = await caller.verified_claims(body["id_token"])
    assert id_claims[PID] == OLA.pid
    assert id_claims["name"] == "Ola Test Nordmann"
    assert id_claims["middle_name"] == "Test"
    assert id_claims[SECURITY_LEVEL] == "3"
    assert id_claims[ASSURANCE_LEVEL] == "substantial"


async def test_redemption_is_refused_with_invalid_grant_when_code_verifier_is_wrong(
    flow: LoginFlow,
) -> None:
    code, pushed = await flow.login(scope=LOGIN_SCOPE)
    other_verifier, _ = pkce_pair()

    wrong = await flow.redeem(code, other_verifier)

    assert error_of(wrong) == "invalid_grant"
    # As in IdentityServer, a failed redemption uses the code up: the user must log in again.
    assert error_of(await flow.redeem(code, pushed.verifier)) == "invalid_grant"


async def test_replayed_code_is_refused_and_revokes_what_it_issued(flow: LoginFlow) -> None:
    code, pushed = await flow.login(scope=LOGIN_SCOPE, resources=(KJ, PPS))
    first = await flow.redeem(code, pushed.verifier)
    assert first.status_code == 200, first.text

    replay = await flow.redeem(code, pushed.verifier)

    assert error_of(replay) == "invalid_grant"
    # RFC 6749 §4.1.2: the refresh token issued from the code is dead now too.
    assert error_of(await flow.refresh(first.json()["refresh_token"])) == "invalid_grant"


async def test_redemption_is_refused_with_invalid_grant_when_redirect_uri_differs(flow: LoginFlow) -> None:
    code, pushed = await flow.login(scope=LOGIN_SCOPE)

    response = await flow.redeem(code, pushed.verifier, redirect_uri="no.example.epj:/callback")

    assert error_of(response) == "invalid_grant"


async def test_redemption_is_refused_with_invalid_target_when_resource_was_not_pushed(
    flow: LoginFlow,
) -> None:
    code, pushed = await flow.login(scope=f"openid {KJ_SCOPE}", resources=(KJ,))

    assert error_of(await flow.redeem(code, pushed.verifier, resource=PPS)) == "invalid_target"


async def test_redemption_is_refused_with_hid_1009_when_the_assertion_carries_org_details(
    flow: LoginFlow,
) -> None:
    code, pushed = await flow.login(scope=LOGIN_SCOPE)

    response = await flow.redeem(
        code, pushed.verifier, details=org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}")
    )

    assert error_of(response) == "invalid_request"
    assert "HID-1009" in response.json()["error_description"]
    # The request was malformed, so the code was not touched and still works without the details.
    assert (await flow.redeem(code, pushed.verifier)).status_code == 200


async def test_code_is_refused_with_invalid_grant_when_another_client_redeems_it(
    flow: LoginFlow, caller: Caller, authority: RunningAuthority
) -> None:
    other = DevClient("other-epj", ECKey.generate_key("P-256", parameters={"kid": "o1"}), "ES256")
    authority.register(
        registration(
            other,
            tenancy="single",
            organization_number=SINGLE_ORG,
            grant_types=["authorization_code"],
            redirect_uris=[REDIRECT_URI],
        )
    )
    code, pushed = await flow.login(scope=LOGIN_SCOPE)
    thief = LoginFlow(caller=caller, client=other, redirect_uri=REDIRECT_URI)

    assert error_of(await thief.redeem(code, pushed.verifier)) == "invalid_grant"
    assert (await flow.redeem(code, pushed.verifier)).status_code == 200  # not used up by the thief


async def test_authorize_answers_400_without_redirect_when_request_uri_is_unknown(flow: LoginFlow) -> None:
    redirect = await flow.authorize("urn:ietf:params:oauth:request_uri:nonsense")

    assert redirect.status == 400
    assert redirect.location is None


async def test_request_uri_is_single_use_when_authorize_is_repeated(flow: LoginFlow) -> None:
    pushed = await flow.push(scope=LOGIN_SCOPE)
    assert (await flow.authorize(pushed.request_uri)).status == 302

    again = await flow.authorize(pushed.request_uri)

    assert again.status == 400
    assert again.location is None


async def test_authorize_answers_400_when_client_id_is_not_the_pushing_client(flow: LoginFlow) -> None:
    pushed = await flow.push(scope=LOGIN_SCOPE)

    wrong = await flow.authorize(pushed.request_uri, client_id="someone-else")

    assert wrong.status == 400
    assert wrong.location is None
    assert (await flow.authorize(pushed.request_uri)).status == 302  # not used up by the wrong client


async def test_code_is_bound_to_the_par_proof_key_when_par_carries_a_dpop_proof(
    flow: LoginFlow, caller: Caller
) -> None:
    par_proof = dpop_proof(caller.dpop_key, alg=caller.dpop_alg, htu=flow.par_endpoint)  # no nonce at PAR
    pushed = await flow.push(scope=LOGIN_SCOPE, proof=par_proof)
    assert pushed.response.status_code == 201, pushed.response.text
    code = (await flow.authorize(pushed.request_uri)).params["code"]

    response = await flow.redeem(code, pushed.verifier)

    assert response.status_code == 200, response.text
    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert claims["cnf"]["jkt"] == rfc7638_thumbprint(caller.dpop_key.as_dict(private=False))


async def test_redemption_is_refused_when_the_proof_key_is_not_the_dpop_jkt_of_par(
    flow: LoginFlow, caller: Caller
) -> None:
    other = ECKey.generate_key("P-256")
    code, pushed = await flow.login(
        scope=LOGIN_SCOPE, dpop_jkt=rfc7638_thumbprint(other.as_dict(private=False))
    )

    assert error_of(await flow.redeem(code, pushed.verifier)) == "invalid_dpop_proof"
