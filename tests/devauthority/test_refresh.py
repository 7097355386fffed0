"""refresh_token: one audience per resource, rotation, reuse detection, org units, absolute lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from joserfc.jwk import ECKey

from devauthority import RegisteredClient, RunningAuthority, start_dev_authority

from .conftest import (
    KJ,
    KJ_SCOPE,
    LOGIN_SCOPE,
    PPS,
    PPS_SCOPE,
    REDIRECT_URI,
    SUPPLIER_ORG,
    TENANT_CHILD,
    TENANT_ORG,
)
from .helpers import (
    MULTI_TENANT_SYSTEM,
    Caller,
    DevClient,
    LoginFlow,
    MovableClock,
    dpop_proof,
    error_of,
    org_details,
)

PARENT = "helseid://claims/client/claims/orgnr_parent"
CHILD = "helseid://claims/client/claims/orgnr_child"
SUPPLIER = "helseid://claims/client/claims/orgnr_supplier"
PID = "helseid://claims/identity/pid"


async def _logged_in(flow: LoginFlow, **params: str) -> dict[str, str]:
    """Log in with both resources and redeem the code for KJ; returns the token response."""
    code, pushed = await flow.login(scope=LOGIN_SCOPE, resources=(KJ, PPS), **params)
    response = await flow.redeem(code, pushed.verifier, resource=KJ)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def test_refresh_gives_single_audience_tokens_for_each_resource_and_rotates(
    flow: LoginFlow, caller: Caller
) -> None:
    first = await _logged_in(flow)

    to_pps = await flow.refresh(first["refresh_token"], resource=PPS)
    assert to_pps.status_code == 200, to_pps.text
    _, pps_claims = await caller.verified_claims(to_pps.json()["access_token"])
    to_kj = await flow.refresh(to_pps.json()["refresh_token"], resource=KJ)
    assert to_kj.status_code == 200, to_kj.text
    _, kj_claims = await caller.verified_claims(to_kj.json()["access_token"])

    assert pps_claims["aud"] == PPS
    assert PPS_SCOPE in pps_claims["scope"]
    assert KJ_SCOPE not in pps_claims["scope"]
    assert kj_claims["aud"] == KJ
    assert KJ_SCOPE in kj_claims["scope"]
    assert PPS_SCOPE not in kj_claims["scope"]
    assert pps_claims[PID] == kj_claims[PID] == "05898597468"
    assert pps_claims["cnf"] == kj_claims["cnf"]
    tokens = {first["refresh_token"], to_pps.json()["refresh_token"], to_kj.json()["refresh_token"]}
    assert len(tokens) == 3  # a new refresh token every time
    assert to_kj.json()["id_token"]


async def test_used_refresh_token_is_refused_and_its_reuse_kills_the_family(flow: LoginFlow) -> None:
    first = await _logged_in(flow)
    second = await flow.refresh(first["refresh_token"], resource=PPS)
    assert second.status_code == 200, second.text
    third = await flow.refresh(second.json()["refresh_token"], resource=KJ)
    assert third.status_code == 200, third.text

    reuse = await flow.refresh(first["refresh_token"])

    assert error_of(reuse) == "invalid_grant"
    # Reuse means the token leaked: the newest refresh token of the login is revoked too.
    assert error_of(await flow.refresh(third.json()["refresh_token"])) == "invalid_grant"


async def test_refresh_is_refused_with_invalid_grant_when_the_token_is_unknown(flow: LoginFlow) -> None:
    assert error_of(await flow.refresh("not-a-refresh-token")) == "invalid_grant"


async def test_refresh_sets_org_claims_from_the_assertion_details_when_sent(
    flow: LoginFlow, caller: Caller
) -> None:
    first = await _logged_in(flow)
    details = org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}:{TENANT_CHILD}")

    with_org = await flow.refresh(first["refresh_token"], resource=PPS, details=details)
    assert with_org.status_code == 200, with_org.text
    without_org = await flow.refresh(with_org.json()["refresh_token"], resource=PPS)

    _, org_claims = await caller.verified_claims(with_org.json()["access_token"])
    assert (org_claims[PARENT], org_claims[CHILD], org_claims[SUPPLIER]) == (
        TENANT_ORG,
        TENANT_CHILD,
        SUPPLIER_ORG,
    )
    assert org_claims[PID] == "05898597468"
    _, plain_claims = await caller.verified_claims(without_org.json()["access_token"])
    assert PARENT not in plain_claims  # details apply to one token; the login had none


async def test_refresh_is_refused_when_the_org_details_are_invalid(flow: LoginFlow) -> None:
    first = await _logged_in(flow)
    details = org_details(MULTI_TENANT_SYSTEM, "NO:ORGNR:911111111")  # no delegation to this client

    response = await flow.refresh(first["refresh_token"], details=details)

    assert error_of(response) == "invalid_request"
    assert "HID-1001" in response.json()["error_description"]


async def test_refresh_narrows_the_token_when_a_scope_subset_is_asked(
    flow: LoginFlow, caller: Caller
) -> None:
    first = await _logged_in(flow)

    response = await flow.refresh(first["refresh_token"], scope=f"openid {PPS_SCOPE}")

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == f"openid {PPS_SCOPE}"
    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert claims["aud"] == PPS
    assert claims[PID] == "05898597468"  # user claims follow the login, not the narrower scope
    # The family keeps the scopes of the login: the next refresh may ask for all of them again.
    again = await flow.refresh(response.json()["refresh_token"], resource=KJ)
    assert KJ_SCOPE in again.json()["scope"].split()


async def test_refresh_is_refused_with_invalid_scope_when_scope_was_not_granted(flow: LoginFlow) -> None:
    first = await _logged_in(flow)

    response = await flow.refresh(first["refresh_token"], scope="openid e-helse:sfm.api/sfm.api2")

    assert error_of(response) == "invalid_scope"
    # A refused request does not rotate the token.
    assert (await flow.refresh(first["refresh_token"])).status_code == 200


async def test_refresh_is_refused_with_invalid_target_when_resource_was_not_pushed(flow: LoginFlow) -> None:
    code, pushed = await flow.login(scope=f"openid offline_access {KJ_SCOPE}", resources=(KJ,))
    first = (await flow.redeem(code, pushed.verifier)).json()

    assert error_of(await flow.refresh(first["refresh_token"], resource=PPS)) == "invalid_target"


async def test_refresh_is_refused_when_the_login_was_dpop_bound_to_another_key(
    flow: LoginFlow, caller: Caller
) -> None:
    par_proof = dpop_proof(caller.dpop_key, alg=caller.dpop_alg, htu=flow.par_endpoint)
    pushed = await flow.push(scope=LOGIN_SCOPE, resources=(KJ, PPS), proof=par_proof)
    code = (await flow.authorize(pushed.request_uri)).params["code"]
    first = await flow.redeem(code, pushed.verifier)
    assert first.status_code == 200, first.text

    caller.dpop_key = ECKey.generate_key("P-256")
    response = await flow.refresh(first.json()["refresh_token"])

    assert error_of(response) == "invalid_dpop_proof"


# --- lifetime, with a clock the test moves --------------------------------------------------------------


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def timed_authority(
    registered: list[RegisteredClient], clock: MovableClock
) -> AsyncIterator[RunningAuthority]:
    running = await start_dev_authority(
        clients=registered, clock=clock, refresh_token_lifetime=timedelta(seconds=600)
    )
    yield running
    await running.stop()


@pytest.fixture
def timed_flow(
    http: httpx.AsyncClient, timed_authority: RunningAuthority, clock: MovableClock, login_client: DevClient
) -> LoginFlow:
    caller = Caller(http=http, issuer=timed_authority.issuer, clock=clock)
    return LoginFlow(caller=caller, client=login_client, redirect_uri=REDIRECT_URI)


async def test_refresh_token_lifetime_is_absolute_when_refreshed(
    timed_flow: LoginFlow, clock: MovableClock
) -> None:
    first = await _logged_in(timed_flow)
    assert 598 <= int(first["rt_expires_in"]) <= 600
    clock.offset = 200

    refreshed = await timed_flow.refresh(first["refresh_token"])

    assert refreshed.status_code == 200, refreshed.text
    assert 398 <= refreshed.json()["rt_expires_in"] <= 400  # not reset to 600: no sliding expiry


async def test_refresh_is_refused_with_invalid_grant_when_the_family_has_expired(
    timed_flow: LoginFlow, clock: MovableClock
) -> None:
    first = await _logged_in(timed_flow)
    clock.offset = 601

    assert error_of(await timed_flow.refresh(first["refresh_token"])) == "invalid_grant"


async def test_request_uri_is_refused_at_authorize_when_older_than_60_seconds(
    timed_flow: LoginFlow, clock: MovableClock
) -> None:
    pushed = await timed_flow.push(scope=LOGIN_SCOPE)
    clock.offset = 61

    redirect = await timed_flow.authorize(pushed.request_uri)

    assert redirect.status == 400
    assert redirect.location is None


async def test_code_is_refused_when_older_than_its_lifetime(
    timed_flow: LoginFlow, clock: MovableClock
) -> None:
    code, pushed = await timed_flow.login(scope=LOGIN_SCOPE)
    clock.offset = 61

    assert error_of(await timed_flow.redeem(code, pushed.verifier)) == "invalid_grant"
