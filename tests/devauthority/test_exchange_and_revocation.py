"""Token exchange (RFC 8693) with the authenticated client as actor, and revocation (RFC 7009)."""

from __future__ import annotations

from joserfc.jwk import ECKey

from devauthority import RunningAuthority

from .conftest import KJ, LOGIN_SCOPE, PPS, PPS_SCOPE, SFM, SFM_SCOPE, SINGLE_ORG
from .helpers import Caller, DevClient, LoginFlow, error_of, exchange, rfc7638_thumbprint

PID = "helseid://claims/identity/pid"
HPR_NUMBER = "helseid://claims/hpr/hpr_number"


async def _user_token(flow: LoginFlow, resource: str = KJ) -> dict[str, str]:
    code, pushed = await flow.login(scope=LOGIN_SCOPE, resources=(KJ, PPS))
    response = await flow.redeem(code, pushed.verifier, resource=resource)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def test_exchange_issues_a_token_for_the_target_with_the_user_and_an_act_claim(
    flow: LoginFlow, caller: Caller, actor_caller: Caller, api_client: DevClient
) -> None:
    user = await _user_token(flow, resource=PPS)
    _, subject = await caller.verified_claims(user["access_token"])

    response = await exchange(actor_caller, api_client, user["access_token"], scope=SFM_SCOPE, resource=SFM)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "DPoP"
    assert body["scope"] == SFM_SCOPE
    assert "refresh_token" not in body
    _, claims = await caller.verified_claims(body["access_token"])
    assert claims["aud"] == SFM
    assert claims["scope"] == [SFM_SCOPE]
    assert claims["sub"] == subject["sub"]
    assert claims[PID] == subject[PID]
    assert claims[HPR_NUMBER] == subject[HPR_NUMBER]
    assert claims["client_id"] == flow.client.client_id  # the client the user logged in to
    assert claims["act"] == {
        "client_id": api_client.client_id,
        "iss": caller.issuer,
        "helseid://claims/client/claims/orgnr_parent": SINGLE_ORG,
    }
    # Bound to the actor's proof key, not the subject's.
    assert claims["cnf"]["jkt"] == rfc7638_thumbprint(actor_caller.dpop_key.as_dict(private=False))
    assert claims["cnf"] != subject["cnf"]
    assert (await caller.http.get(caller.issuer + "/dev/stats")).json()["exchanges"] == 1


async def test_exchange_takes_the_actors_scopes_of_the_resource_when_only_resource_is_sent(
    flow: LoginFlow, caller: Caller, actor_caller: Caller, api_client: DevClient
) -> None:
    user = await _user_token(flow)

    response = await exchange(actor_caller, api_client, user["access_token"], resource=SFM)

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == SFM_SCOPE


async def test_exchange_is_refused_with_invalid_grant_when_the_subject_token_is_not_ours(
    actor_caller: Caller, api_client: DevClient
) -> None:
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."

    response = await exchange(actor_caller, api_client, forged, scope=SFM_SCOPE)

    assert error_of(response) == "invalid_grant"


async def test_exchange_is_refused_with_unauthorized_client_when_the_client_lacks_the_grant(
    flow: LoginFlow, actor_caller: Caller, multi_client: DevClient
) -> None:
    user = await _user_token(flow)

    response = await exchange(actor_caller, multi_client, user["access_token"], scope=PPS_SCOPE)

    assert error_of(response) == "unauthorized_client"


async def test_exchange_is_refused_with_invalid_scope_when_the_actor_may_not_use_the_scope(
    flow: LoginFlow, actor_caller: Caller, api_client: DevClient
) -> None:
    user = await _user_token(flow)

    response = await exchange(actor_caller, api_client, user["access_token"], scope=PPS_SCOPE)

    assert error_of(response) == "invalid_scope"


async def test_exchange_is_refused_with_invalid_request_when_the_subject_token_type_is_wrong(
    flow: LoginFlow, actor_caller: Caller, api_client: DevClient
) -> None:
    user = await _user_token(flow)

    response = await exchange(
        actor_caller,
        api_client,
        user["id_token"],
        scope=SFM_SCOPE,
        subject_token_type="urn:ietf:params:oauth:token-type:id_token",
    )

    assert error_of(response) == "invalid_request"


async def test_revoked_refresh_token_is_refused_and_revocation_always_answers_200(
    flow: LoginFlow, authority: RunningAuthority
) -> None:
    user = await _user_token(flow)

    revoked = await flow.revoke(user["refresh_token"], token_type_hint="refresh_token")
    unknown = await flow.revoke("never-issued")

    assert revoked.status_code == 200
    assert unknown.status_code == 200
    assert revoked.content == b""
    assert error_of(await flow.refresh(user["refresh_token"])) == "invalid_grant"
    assert authority.stats()["revocations"] == 2


async def test_revoking_a_refresh_token_kills_the_newer_tokens_of_its_family_too(flow: LoginFlow) -> None:
    user = await _user_token(flow)
    rotated = (await flow.refresh(user["refresh_token"], resource=PPS)).json()

    # Revoking the old (already used) refresh token still ends the whole login.
    assert (await flow.revoke(user["refresh_token"])).status_code == 200

    assert error_of(await flow.refresh(rotated["refresh_token"])) == "invalid_grant"


async def test_revoked_access_token_is_refused_as_an_exchange_subject(
    flow: LoginFlow, actor_caller: Caller, api_client: DevClient
) -> None:
    user = await _user_token(flow)

    assert (await flow.revoke(user["access_token"], token_type_hint="access_token")).status_code == 200

    response = await exchange(actor_caller, api_client, user["access_token"], scope=SFM_SCOPE)
    assert error_of(response) == "invalid_grant"


async def test_revocation_by_another_client_revokes_nothing(
    flow: LoginFlow, caller: Caller, api_client: DevClient
) -> None:
    user = await _user_token(flow)
    other = LoginFlow(caller=caller, client=api_client, redirect_uri=flow.redirect_uri)

    assert (await other.revoke(user["refresh_token"])).status_code == 200

    assert (await flow.refresh(user["refresh_token"])).status_code == 200


async def test_revocation_is_refused_with_invalid_client_when_the_assertion_is_bad(
    flow: LoginFlow, caller: Caller, login_client: DevClient
) -> None:
    impostor_key = ECKey.generate_key("P-256", parameters={"kid": str(login_client.key.kid)})
    impostor = DevClient(login_client.client_id, impostor_key, "ES256")
    other = LoginFlow(caller=caller, client=impostor, redirect_uri=flow.redirect_uri)

    assert error_of(await other.revoke("whatever")) == "invalid_client"
