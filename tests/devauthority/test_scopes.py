from __future__ import annotations

from .conftest import KJ_SCOPE, PPS_SCOPE, SFM_SCOPE, TENANT_ORG, UNSIGNED_TENANT
from .helpers import MULTI_TENANT_SYSTEM, Caller, DevClient, error_of, org_details


async def test_request_is_refused_with_invalid_scope_when_the_client_may_not_use_the_scope(
    caller: Caller, single_client: DevClient
) -> None:
    response = await caller.request_token(single_client, scope=KJ_SCOPE)

    assert error_of(response) == "invalid_scope"


async def test_request_is_refused_with_invalid_scope_when_scope_is_missing(
    caller: Caller, single_client: DevClient
) -> None:
    assert error_of(await caller.request_token(single_client, scope=None)) == "invalid_scope"


async def test_request_is_refused_with_invalid_scope_when_an_identity_scope_is_asked(
    caller: Caller, single_client: DevClient
) -> None:
    assert error_of(await caller.request_token(single_client, scope=f"openid {PPS_SCOPE}")) == "invalid_scope"


async def test_unsigned_scope_is_dropped_into_rejected_scope_when_the_tenant_has_not_signed(
    caller: Caller, multi_client: DevClient
) -> None:
    details = org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{UNSIGNED_TENANT}")

    response = await caller.request_token(multi_client, scope=f"{PPS_SCOPE} {KJ_SCOPE}", details=details)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == KJ_SCOPE
    assert body["rejected_scope"] == PPS_SCOPE
    _, claims = await caller.verified_claims(body["access_token"])
    assert claims["scope"] == [KJ_SCOPE]
    assert claims["aud"] == "nhn:kjernejournal"


async def test_request_is_refused_with_invalid_scope_when_every_scope_is_unsigned(
    caller: Caller, multi_client: DevClient
) -> None:
    details = org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{UNSIGNED_TENANT}")

    assert (
        error_of(await caller.request_token(multi_client, scope=PPS_SCOPE, details=details))
        == "invalid_scope"
    )


async def test_audience_is_the_resource_when_a_resource_is_requested(
    caller: Caller, multi_client: DevClient
) -> None:
    details = org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}")

    response = await caller.request_token(multi_client, scope=PPS_SCOPE, details=details, resource="nhn:pps")

    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert claims["aud"] == "nhn:pps"


async def test_audience_lists_every_api_when_scopes_span_several_apis(
    caller: Caller, multi_client: DevClient
) -> None:
    response = await caller.request_token(multi_client, scope=f"{PPS_SCOPE} {KJ_SCOPE}")

    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert claims["aud"] == ["nhn:pps", "nhn:kjernejournal"]


async def test_request_is_refused_with_invalid_target_when_the_resource_is_not_the_clients(
    caller: Caller, single_client: DevClient
) -> None:
    response = await caller.request_token(single_client, scope=PPS_SCOPE, resource="nhn:kjernejournal")

    assert error_of(response) == "invalid_target"


async def test_request_is_refused_with_invalid_scope_when_a_scope_belongs_to_another_resource(
    caller: Caller, multi_client: DevClient
) -> None:
    response = await caller.request_token(multi_client, scope=f"{PPS_SCOPE} {SFM_SCOPE}", resource="nhn:pps")

    assert error_of(response) == "invalid_scope"
