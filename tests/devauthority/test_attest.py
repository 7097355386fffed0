"""The trust-framework attest (nhn:tillitsrammeverk:parameters): where it comes, checks, token, API.

HelseID's profile: in the client assertion of a code or refresh grant it is in that one token; in the PAR
request object it sticks to every token of the login; both at once is access_denied HID-DOUBLE-STRUCTURE.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from joserfc import jwt

from devauthority import RegisteredClient, RunningAuthority

from .conftest import IDENTITY_SCOPES, REDIRECT_URI, TENANT_ORG, registration
from .helpers import (
    AUTHORIZATION_CODE,
    MULTI_TENANT_SYSTEM,
    REFRESH_TOKEN,
    Caller,
    DevClient,
    LoginFlow,
    error_of,
    org_details,
    request_object,
)

DEMO = "nhn:demo-api"
DEMO_SCOPE = "nhn:demo-api/read"
SCOPE = f"{IDENTITY_SCOPES} {DEMO_SCOPE}"
ATTEST_TYPE = "nhn:tillitsrammeverk:parameters"
PRACTITIONER_PID = "13116900216"  # a synthetic national id with valid check digits
LEGAL_ENTITY = "994598759"  # valid mod-11 organisation numbers
POINT_OF_CARE = "983044778"
PATIENT_POINT_OF_CARE = "974589095"


def attest(*, purpose: str = "TREAT", decision: str = "decision-1") -> dict[str, Any]:
    """An attest shaped like the research note's (and NHN's journal-document sample's)."""
    return {
        "type": ATTEST_TYPE,
        "practitioner": {
            "identifier": {"id": PRACTITIONER_PID, "system": "urn:oid:2.16.578.1.12.4.1.4.1"},
            "authorization": {"code": "LE", "system": "urn:oid:2.16.578.1.12.4.1.1.9060"},
            "legal_entity": {"id": LEGAL_ENTITY, "system": "urn:oid:2.16.578.1.12.4.1.4.101"},
            "point_of_care": {"id": POINT_OF_CARE, "system": "urn:oid:2.16.578.1.12.4.1.4.101"},
            "department": {"id": "4208723", "system": "urn:oid:2.16.578.1.12.4.1.4.102"},
        },
        "care_relationship": {
            "healthcare_service": {"code": "01", "system": "urn:oid:2.16.578.1.12.4.1.1.8666"},
            "purpose_of_use": {"code": purpose, "system": "urn:oid:2.16.840.1.113883.1.11.20448"},
            "purpose_of_use_details": {
                "code": "BEHANDLER",
                "system": "urn:AuditEventHL7Norway/CodeSystem/carerelation",
            },
            "decision_ref": {"id": decision, "user_selected": True},
        },
        "patients": [
            {"point_of_care": {"id": PATIENT_POINT_OF_CARE, "system": "urn:oid:2.16.578.1.12.4.1.4.101"}}
        ],
    }


@pytest.fixture
def registered(login_client: DevClient) -> list[RegisteredClient]:
    """The EPJ of conftest, here with a scope of the demo API."""
    return [
        registration(
            login_client,
            tenancy="multi",
            organization_number="912345678",
            delegations=[TENANT_ORG],
            allowed_scopes=[DEMO_SCOPE],
            grant_types=[AUTHORIZATION_CODE, REFRESH_TOKEN],
            redirect_uris=[REDIRECT_URI],
        )
    ]


async def _login(flow: LoginFlow, *, in_request_object: dict[str, Any] | None = None) -> tuple[str, str]:
    """PAR (with the attest in a request object, if given) and authorize: the code and its verifier."""
    params: dict[str, Any] = {}
    if in_request_object is not None:
        claims = {"authorization_details": [in_request_object]}
        params["request"] = request_object(flow.client, aud=flow.caller.issuer, claims=claims)
    code, pushed = await flow.login(scope=SCOPE, **params)
    return code, pushed.verifier


async def _claims(caller: Caller, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    _, claims = await caller.verified_claims(response.json()["access_token"])
    return claims


def _refused(response: httpx.Response, error: str) -> str:
    assert error_of(response) == error
    description: str = response.json()["error_description"]
    return description


async def test_attest_in_a_refresh_grant_assertion_is_in_that_token_only(
    flow: LoginFlow, caller: Caller
) -> None:
    code, verifier = await _login(flow)
    first = await flow.redeem(code, verifier)
    assert "authorization_details" not in await _claims(caller, first)

    # Beside org details in the same array, as an EPJ sends them.
    details = [org_details(MULTI_TENANT_SYSTEM, f"NO:ORGNR:{TENANT_ORG}"), attest(purpose="COC")]
    with_attest = await flow.refresh(first.json()["refresh_token"], details=details)
    claims = await _claims(caller, with_attest)
    assert claims["authorization_details"] == [attest(purpose="COC")]
    assert claims["helseid://claims/client/claims/orgnr_parent"] == TENANT_ORG

    without = await flow.refresh(with_attest.json()["refresh_token"])
    assert "authorization_details" not in await _claims(caller, without)


async def test_attest_in_a_code_grant_assertion_is_in_the_access_token_not_the_id_token(
    flow: LoginFlow, caller: Caller
) -> None:
    code, verifier = await _login(flow)

    tokens = await flow.redeem(code, verifier, details=[attest()])

    assert (await _claims(caller, tokens))["authorization_details"] == [attest()]
    payload = tokens.json()["id_token"].split(".")[1]
    id_claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert "sid" in id_claims
    assert "authorization_details" not in id_claims
    refreshed = await flow.refresh(tokens.json()["refresh_token"])
    assert "authorization_details" not in await _claims(caller, refreshed)


async def test_attest_in_the_par_request_object_is_in_every_token_of_the_login(
    flow: LoginFlow, caller: Caller
) -> None:
    code, verifier = await _login(flow, in_request_object=attest(purpose="ETREAT"))

    tokens = await flow.redeem(code, verifier)
    assert (await _claims(caller, tokens))["authorization_details"] == [attest(purpose="ETREAT")]
    refreshed = await flow.refresh(tokens.json()["refresh_token"])
    assert (await _claims(caller, refreshed))["authorization_details"] == [attest(purpose="ETREAT")]
    again = await flow.refresh(refreshed.json()["refresh_token"], scope=f"openid {DEMO_SCOPE}")
    assert (await _claims(caller, again))["authorization_details"] == [attest(purpose="ETREAT")]


async def test_attest_in_both_request_object_and_refresh_assertion_is_refused_as_double_structure(
    flow: LoginFlow, caller: Caller
) -> None:
    code, verifier = await _login(flow, in_request_object=attest())
    tokens = await flow.redeem(code, verifier)

    double = await flow.refresh(tokens.json()["refresh_token"], details=[attest(decision="another")])

    assert "HID-DOUBLE-STRUCTURE" in _refused(double, "access_denied")
    # The refusal does not use the refresh token up.
    assert (await flow.refresh(tokens.json()["refresh_token"])).status_code == 200


async def test_attest_in_both_request_object_and_code_assertion_is_refused_and_the_code_stays_usable(
    flow: LoginFlow, caller: Caller
) -> None:
    code, verifier = await _login(flow, in_request_object=attest())

    double = await flow.redeem(code, verifier, details=attest())

    assert "HID-DOUBLE-STRUCTURE" in _refused(double, "access_denied")
    assert (await flow.redeem(code, verifier)).status_code == 200


def _without(path: str) -> dict[str, Any]:
    value = attest()
    *parents, last = path.split(".")
    node = value
    for name in parents:
        node = node[name]
    del node[last]
    return value


def _with(path: str, new: Any) -> dict[str, Any]:
    value = attest()
    *parents, last = path.split(".")
    node: Any = value
    for name in parents:
        node = node[int(name)] if isinstance(node, list) else node[name]
    node[last] = new
    return value


ORG = "must be an organisation number"
INVALID = [
    (_without("practitioner"), "practitioner is required"),
    (_without("practitioner.legal_entity"), "practitioner.legal_entity is required"),
    (_without("care_relationship.decision_ref"), "care_relationship.decision_ref is required"),
    (
        _without("care_relationship.decision_ref.user_selected"),
        "care_relationship.decision_ref.user_selected",
    ),
    (_without("care_relationship.purpose_of_use.code"), "care_relationship.purpose_of_use.code is required"),
    (
        _with("care_relationship.purpose_of_use.code", "RESEARCH"),
        "care_relationship.purpose_of_use.code must be TREAT, ETREAT or COC",
    ),
    (
        _with("care_relationship.healthcare_service.system", "urn:oid:2.16.578.1.12.4.1.1.8451"),
        "care_relationship.healthcare_service.system must be urn:oid:2.16.578.1.12.4.1.1.8666",
    ),
    (
        _with("practitioner.authorization.system", "urn:oid:2.16.578.1.12.4.1.4.1"),
        "practitioner.authorization.system must be urn:oid:2.16.578.1.12.4.1.1.9060",
    ),
    (
        _with("practitioner.legal_entity.id", "994598758"),
        f"practitioner.legal_entity.id {ORG}",
    ),
    (
        _with("practitioner.point_of_care.id", "98304477"),
        f"practitioner.point_of_care.id {ORG}",
    ),
    (
        _with("patients.0.point_of_care.id", "974589096"),
        f"patients[0].point_of_care.id {ORG}",
    ),
    (_with("patients", {}), "patients must be an array"),
    (_with("practitioner.department", "4208723"), "practitioner.department must be an object"),
]


@pytest.mark.parametrize(("bad", "named"), INVALID, ids=[n for _, n in INVALID])
async def test_invalid_attest_in_a_refresh_assertion_is_refused_naming_the_member(
    flow: LoginFlow, bad: dict[str, Any], named: str
) -> None:
    code, verifier = await _login(flow)
    tokens = await flow.redeem(code, verifier)

    refused = await flow.refresh(tokens.json()["refresh_token"], details=[copy.deepcopy(bad)])

    assert _refused(refused, "invalid_request").startswith(f"{ATTEST_TYPE}: {named}")


async def test_invalid_national_id_is_refused_without_echoing_it(flow: LoginFlow) -> None:
    code, verifier = await _login(flow)
    wrong_check_digit = PRACTITIONER_PID[:-1] + str((int(PRACTITIONER_PID[-1]) + 1) % 10)

    refused = await flow.redeem(
        code, verifier, details=[_with("practitioner.identifier.id", wrong_check_digit)]
    )

    description = _refused(refused, "invalid_request")
    assert "practitioner.identifier.id must be a national id" in description
    assert wrong_check_digit not in description
    assert wrong_check_digit not in refused.text
    # A malformed attest leaves the code alone.
    assert (await flow.redeem(code, verifier)).status_code == 200


async def test_invalid_attest_in_the_par_request_object_is_refused_naming_the_member(flow: LoginFlow) -> None:
    bad = _with("care_relationship.purpose_of_use.code", "TREATMENT")
    signed = request_object(flow.client, aud=flow.caller.issuer, claims={"authorization_details": [bad]})

    pushed = await flow.push(scope=SCOPE, request=signed)

    assert "care_relationship.purpose_of_use.code must be TREAT, ETREAT or COC" in _refused(
        pushed.response, "invalid_request"
    )


async def test_two_attests_in_one_assertion_are_refused(flow: LoginFlow) -> None:
    code, verifier = await _login(flow)

    refused = await flow.redeem(code, verifier, details=[attest(), attest(decision="two")])

    assert "only one" in _refused(refused, "invalid_request")


# --- the demo API's attest path -----------------------------------------------------------------------


async def _call_demo(caller: Caller, access_token: str, path: str) -> httpx.Response:
    """GET a demo API path with a DPoP proof (ath, the API's nonce after its challenge)."""
    url = caller.issuer + path
    ath = base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest()).rstrip(b"=").decode()
    nonce: str | None = None
    for _ in range(2):
        claims: dict[str, Any] = {"jti": uuid.uuid4().hex, "htm": "GET", "htu": url, "iat": int(time.time())}
        claims["ath"] = ath
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": caller.dpop_alg, "jwk": caller.dpop_key.as_dict(private=False)}
        proof = jwt.encode(header, claims, caller.dpop_key, algorithms=[caller.dpop_alg])
        response = await caller.http.get(
            url, headers={"Authorization": f"DPoP {access_token}", "DPoP": proof}
        )
        if (
            response.status_code != 401
            or 'error="use_dpop_nonce"' not in response.headers["WWW-Authenticate"]
        ):
            return response
        nonce = response.headers["DPoP-Nonce"]
    return response


async def test_demo_api_attest_path_refuses_a_token_without_attest_with_403(
    flow: LoginFlow, caller: Caller
) -> None:
    code, verifier = await _login(flow)
    token = (await flow.redeem(code, verifier)).json()["access_token"]

    refused = await _call_demo(caller, token, "/demo-api/attest/records")
    plain = await _call_demo(caller, token, "/demo-api/records")

    assert refused.status_code == 403, refused.text
    assert refused.headers["WWW-Authenticate"].startswith('DPoP error="insufficient_authorization_details"')
    assert refused.json()["error"] == "insufficient_authorization_details"
    assert plain.status_code == 200, plain.text
    assert "attest" not in plain.json()


async def test_demo_api_attest_path_answers_the_purpose_and_decision_of_the_attest(
    flow: LoginFlow, caller: Caller
) -> None:
    code, verifier = await _login(flow)
    token = (await flow.redeem(code, verifier, details=[attest(purpose="ETREAT")])).json()["access_token"]

    answer = await _call_demo(caller, token, "/demo-api/attest/records")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["attest"] == {"purpose_of_use": "ETREAT", "decision_ref": "decision-1"}
    assert body["path"] == "/demo-api/attest/records"
    assert PRACTITIONER_PID not in answer.text
    assert PATIENT_POINT_OF_CARE not in answer.text


# --- counters -------------------------------------------------------------------------------------------


async def test_stats_count_attests_by_where_they_came_double_and_invalid(
    flow: LoginFlow, caller: Caller, authority: RunningAuthority
) -> None:
    code, verifier = await _login(flow, in_request_object=attest())  # in_request_objects 1
    await flow.redeem(code, verifier, details=[attest()])  # double 1 (code left alone)
    tokens = await flow.redeem(code, verifier)
    await flow.refresh(tokens.json()["refresh_token"], details=[_without("practitioner")])  # invalid 1
    code, verifier = await _login(flow)
    await flow.redeem(code, verifier, details=[attest()])  # in_assertions 1

    stats = (await caller.http.get(caller.issuer + "/dev/stats")).json()

    assert stats["attests"] == {"in_assertions": 1, "in_request_objects": 1, "double": 1, "invalid": 1}
    assert authority.stats()["attests"] == stats["attests"]
    reset = (await caller.http.post(caller.issuer + "/dev/reset-stats")).json()
    assert reset["attests"] == {"in_assertions": 0, "in_request_objects": 0, "double": 0, "invalid": 0}
