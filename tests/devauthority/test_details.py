from __future__ import annotations

import uuid

from .conftest import (
    KJ_SCOPE,
    PPS_SCOPE,
    SFM_ID,
    SFM_SCOPE,
    SINGLE_CHILD,
    SINGLE_ORG,
    SUPPLIER_ORG,
    TENANT_CHILD,
    TENANT_ORG,
)
from .helpers import (
    MULTI_TENANT_SYSTEM,
    SINGLE_TENANT_SYSTEM,
    Caller,
    DevClient,
    client_assertion,
    error_of,
    journal_details,
    org_details,
)

PARENT = "helseid://claims/client/claims/orgnr_parent"
CHILD = "helseid://claims/client/claims/orgnr_child"
SUPPLIER = "helseid://claims/client/claims/orgnr_supplier"
TENANCY = "helseid://claims/client/client_tenancy"
JOURNAL = "nhn:sfm:journal-id"
SFM_ID_CLAIM = "e-helse:sfm.api/client/claims/sfm-id"


async def test_multi_tenant_token_carries_org_and_journal_claims_when_details_are_sent(
    caller: Caller, multi_client: DevClient
) -> None:
    journal_id = str(uuid.uuid4())
    details = [
        org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}:{TENANT_CHILD}"),
        journal_details(journal_id),
    ]

    response = await caller.request_token(multi_client, scope=SFM_SCOPE, details=details)

    assert response.status_code == 200, response.text
    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert claims[PARENT] == TENANT_ORG
    assert claims[CHILD] == TENANT_CHILD
    assert claims[SUPPLIER] == SUPPLIER_ORG
    assert claims[TENANCY] == "multi-tenant"
    assert claims[JOURNAL] == journal_id
    assert claims["aud"] == "e-helse:sfm.api"
    assert SFM_ID_CLAIM not in claims


async def test_single_tenant_token_carries_own_parent_child_and_sfm_id_when_child_is_whitelisted(
    caller: Caller, single_client: DevClient
) -> None:
    details = org_details(SINGLE_TENANT_SYSTEM, SINGLE_CHILD)

    response = await caller.request_token(single_client, scope=SFM_SCOPE, details=details)

    assert response.status_code == 200, response.text
    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert claims[PARENT] == SINGLE_ORG
    assert claims[CHILD] == SINGLE_CHILD
    assert SUPPLIER not in claims
    assert claims[TENANCY] == "single-tenant"
    assert claims[SFM_ID_CLAIM] == SFM_ID


async def test_single_tenant_token_has_parent_but_no_sfm_id_when_no_details_and_no_sfm_scope(
    caller: Caller, single_client: DevClient
) -> None:
    response = await caller.request_token(single_client, scope=PPS_SCOPE)

    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert claims[PARENT] == SINGLE_ORG
    assert CHILD not in claims
    assert SFM_ID_CLAIM not in claims


async def test_multi_tenant_token_has_no_org_claims_when_no_details_are_sent(
    caller: Caller, multi_client: DevClient
) -> None:
    response = await caller.request_token(multi_client, scope=KJ_SCOPE)

    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert not {PARENT, CHILD, SUPPLIER} & claims.keys()
    assert claims[TENANCY] == "multi-tenant"


async def test_parent_without_child_is_accepted_when_value_has_a_trailing_colon(
    caller: Caller, multi_client: DevClient
) -> None:
    # A single object (not an array), as authorization_details, with the .NET library's trailing colon.
    assertion_claims = {"authorization_details": org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}:")}
    await caller.request_token(multi_client, scope=PPS_SCOPE)
    assertion = client_assertion(multi_client, aud=caller.issuer, claims=assertion_claims)

    response = await caller.post_token(
        caller.form(multi_client, scope=PPS_SCOPE, assertion=assertion), proof=caller.proof()
    )

    assert response.status_code == 200, response.text
    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert claims[PARENT] == TENANT_ORG
    assert CHILD not in claims


async def test_request_is_refused_with_invalid_request_when_both_details_claims_are_sent(
    caller: Caller, multi_client: DevClient
) -> None:
    detail = org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}")
    await caller.request_token(multi_client, scope=PPS_SCOPE)
    assertion = client_assertion(
        multi_client, aud=caller.issuer, claims={"assertion_details": detail, "authorization_details": detail}
    )

    response = await caller.post_token(
        caller.form(multi_client, scope=PPS_SCOPE, assertion=assertion), proof=caller.proof()
    )

    assert error_of(response) == "invalid_request"


async def test_request_is_refused_with_invalid_request_when_an_org_number_has_8_digits(
    caller: Caller, multi_client: DevClient
) -> None:
    details = org_details(MULTI_TENANT_SYSTEM, "NO:ORGNR:98765432")

    response = await caller.request_token(multi_client, scope=PPS_SCOPE, details=details)

    assert error_of(response) == "invalid_request"
    assert "HID-1004" in response.json()["error_description"]


async def test_request_is_refused_when_the_child_is_not_whitelisted(
    caller: Caller, single_client: DevClient
) -> None:
    details = org_details(SINGLE_TENANT_SYSTEM, "999888777")

    response = await caller.request_token(single_client, scope=PPS_SCOPE, details=details)

    assert error_of(response) == "invalid_request"
    assert "HID-1002" in response.json()["error_description"]


async def test_request_is_refused_when_the_system_does_not_fit_the_tenancy(
    caller: Caller, single_client: DevClient, multi_client: DevClient
) -> None:
    single = await caller.request_token(
        single_client, scope=PPS_SCOPE, details=org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{SINGLE_ORG}")
    )
    multi = await caller.request_token(
        multi_client, scope=PPS_SCOPE, details=org_details(SINGLE_TENANT_SYSTEM, TENANT_ORG)
    )

    assert error_of(single) == "invalid_request"
    assert error_of(multi) == "invalid_request"


async def test_request_is_refused_when_the_old_wrong_enh_oid_is_used(
    caller: Caller, single_client: DevClient
) -> None:
    details = org_details("urn:oid:2.16.578.1.12.4.1.2.101", SINGLE_CHILD)

    response = await caller.request_token(single_client, scope=PPS_SCOPE, details=details)

    assert error_of(response) == "invalid_request"
    assert SINGLE_TENANT_SYSTEM in response.json()["error_description"]


async def test_request_is_refused_when_the_parent_has_not_delegated_to_the_client(
    caller: Caller, multi_client: DevClient
) -> None:
    details = org_details(MULTI_TENANT_SYSTEM, "NO:ORGNR:911111111")

    response = await caller.request_token(multi_client, scope=PPS_SCOPE, details=details)

    assert error_of(response) == "invalid_request"


async def test_request_is_refused_when_the_journal_id_is_not_a_uuid(
    caller: Caller, multi_client: DevClient
) -> None:
    details = [org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}"), journal_details("journal-17")]

    response = await caller.request_token(multi_client, scope=SFM_SCOPE, details=details)

    assert error_of(response) == "invalid_request"
