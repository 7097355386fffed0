"""The trust framework's attest in user tokens, over real processes: a broker (with an audit trail) in
front of the dev authority, one logged-in session, three patients.

Each care context gives a token whose `authorization_details` holds exactly its attest (verified with the
STS's keys); the same patient again is served from the cache; 50 concurrent calls for a new patient make one
refresh; a login that carried a session-wide attest gives it to every token and refuses a per-request one;
the headers of each profile come back; the audit records the patient as a keyed hash with purpose and
decision, never the national id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from broker.audit import AuditSettings
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.api.test_care_context import read_trail
from tests.fixtures.broker_server import running_broker
from tests.fixtures.login import log_in
from tests.fixtures.sessions import PPS, REDIRECT_URI, WebClient, login_config, sts_for_logins
from tests.fixtures.sts import RunningSts
from tests.integration.test_sessions import claims, reason
from tests.unit.protocol.test_care import some_ids

STS = tuple[RunningSts, WebClient]
PATIENTS = some_ids(4, d_number=False)


def context(patient: str, decision: str, purpose: str = "TREAT") -> pb.CareContext:
    return pb.CareContext(
        patient_id=patient,
        practitioner=pb.Practitioner(
            hpr_number="565505933", authorization="LE", legal_entity="994598759", point_of_care="974760673"
        ),
        care_relationship=pb.CareRelationship(
            healthcare_service="01",
            purpose_of_use=purpose,
            purpose_of_use_details="BEHANDLER",
            decision_ref=decision,
            user_selected=True,
        ),
        access_basis="SAMTYKKE",
        event_id=f"event-{decision}",
    )


@pytest.fixture(scope="module")
def sts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[STS]:
    client = WebClient()
    with sts_for_logins("devauthority", tmp_path_factory.mktemp("attest-sts"), client) as running:
        yield running, client


async def login(stub: pb_grpc.TokenBrokerServiceStub, care: pb.CareContext | None = None) -> str:
    request = pb.StartLoginRequest(tenant="oslo", targets=["sfm", "pps"])
    if care is not None:
        request.care_context.CopyFrom(care)
    started = await stub.StartLogin(request, timeout=30)
    callback = await asyncio.to_thread(log_in, started.authorization_url, redirect_uri=REDIRECT_URI)
    assert callback.iss is not None
    done = await stub.CompleteLogin(
        pb.CompleteLoginRequest(state=callback.state, code=callback.code, issuer=callback.iss), timeout=30
    )
    return done.session.session_id


async def token_for(
    stub: pb_grpc.TokenBrokerServiceStub, session: str, care: pb.CareContext | None, target: str = "sfm"
) -> str:
    request = pb.GetSessionTokenRequest(session_id=session, target=target)
    if care is not None:
        request.care_context.CopyFrom(care)
    return (await stub.GetSessionToken(request, timeout=30)).access_token.token


def attests(issuer: str, token: str) -> list[dict[str, Any]]:
    found = claims(issuer, token).get("authorization_details", [])
    return [item for item in found if item.get("type") == "nhn:tillitsrammeverk:parameters"]


def refreshes(sts: RunningSts) -> int:
    return int(sts.stats()["refreshes"])


async def test_one_session_three_patients_three_attests_cached_and_refreshed_once(
    sts: STS, tmp_path: Path
) -> None:
    running, client = sts
    config = login_config(running.issuer, client)
    config = dataclasses.replace(config, audit=AuditSettings(directory=tmp_path, hash_key=os.urandom(32)))
    config = dataclasses.replace(
        config, targets={**config.targets, "pps": dataclasses.replace(PPS, api_profile="pps")}
    )
    async with running_broker(config) as address, grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TokenBrokerServiceStub(channel)
        session = await login(stub)
        plain = await token_for(stub, session, None)
        assert attests(running.issuer, plain) == []

        tokens = {}
        for index, patient in enumerate(PATIENTS[:3]):
            tokens[patient] = await token_for(stub, session, context(patient, f"decision-{index}"))
        assert len(set(tokens.values())) == 3
        for index, patient in enumerate(PATIENTS[:3]):
            (attest,) = attests(running.issuer, tokens[patient])
            relationship = attest["care_relationship"]
            assert relationship["decision_ref"] == {"id": f"decision-{index}", "user_selected": True}
            assert relationship["purpose_of_use"]["code"] == "TREAT"
            assert attest["practitioner"]["legal_entity"]["id"] == "994598759"
            assert patient not in str(attest)  # the national id is in the API's headers, not the attest

        # The same patient, purpose and decision again: the cached token, no refresh.
        before = refreshes(running)
        again = await token_for(stub, session, context(PATIENTS[0], "decision-0"))
        assert again == tokens[PATIENTS[0]]
        assert refreshes(running) == before
        # Another purpose for the same patient is another attest: its own token.
        other = await token_for(stub, session, context(PATIENTS[0], "decision-0", purpose="COC"))
        assert other != tokens[PATIENTS[0]]

        # 50 concurrent calls for a new patient: one refresh, one token for all.
        before = refreshes(running)
        fourth = context(PATIENTS[3], "decision-3")
        answers = await asyncio.gather(*(token_for(stub, session, fourth) for _ in range(50)))
        assert len(set(answers)) == 1
        assert refreshes(running) - before == 1

        # The session variant of AuthorizeRequest: the attest in the token and PPS's headers beside it.
        authorized = await stub.AuthorizeSessionRequest(
            pb.AuthorizeSessionRequestRequest(
                session_id=session,
                target="pps",
                http_method="GET",
                url="https://pps.test.nhn.no/api/results",
                care_context=context(PATIENTS[1], "decision-1"),
            ),
            timeout=30,
        )
        headers = {header.name: header.value for header in authorized.headers}
        assert headers["person-id"] == PATIENTS[1]
        assert headers["access-basis"] == "SAMTYKKE"
        (attest,) = attests(running.issuer, authorized.authorization.split(" ", 1)[1])
        assert attest["care_relationship"]["decision_ref"]["id"] == "decision-1"

        # A context the attest cannot be made from costs nothing at the STS.
        before = refreshes(running)
        lacking = pb.CareContext(patient_id=PATIENTS[2])
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await token_for(stub, session, lacking)
        assert reason(refused.value) == "INVALID_ARGUMENT"
        assert "is required for the trust-framework attest" in (refused.value.details() or "")
        assert refreshes(running) == before

    trail = read_trail(tmp_path)
    served = [
        line for line in trail.splitlines() if '"event":"session.token"' in line and '"patient"' in line
    ]
    print(f"audit: {len(served)} session.token events with a patient hash, purpose and decision")
    assert served
    assert all('"purpose":"' in line and '"decision":"decision-' in line for line in served)
    for patient in PATIENTS:
        assert patient not in trail


async def test_a_login_with_an_attest_gives_it_to_every_token_and_refuses_a_second(sts: STS) -> None:
    running, client = sts
    async with (
        running_broker(login_config(running.issuer, client)) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = pb_grpc.TokenBrokerServiceStub(channel)
        session = await login(stub, context(PATIENTS[0], "whole-session"))
        first = await token_for(stub, session, None)  # the login's own token
        refreshed = await token_for(stub, session, None, target="pps")  # a refresh's token
        for token in (first, refreshed):
            (attest,) = attests(running.issuer, token)
            assert attest["care_relationship"]["decision_ref"]["id"] == "whole-session"
        with pytest.raises(grpc.aio.AioRpcError) as double:
            await token_for(stub, session, context(PATIENTS[1], "another"), target="pps")
        assert reason(double.value) == "INVALID_ARGUMENT"
        assert "HID-DOUBLE-STRUCTURE" in (double.value.details() or "")
