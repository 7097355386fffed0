"""A care context on AuthorizeRequest, through a broker in front of the dev authority: the API's headers
come back, a context the API cannot take is refused naming every field before any token is fetched, and the
audit trail records the patient as a keyed hash only."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from broker.audit import AuditSettings
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import SFM, broker_config, running_broker, sfm_clients
from tests.fixtures.sts import RunningSts, TestClient, running_sts
from tests.integration.test_client_credentials import error_info
from tests.unit.protocol.test_care import some_ids

PATIENT = some_ids(1, d_number=True)[0]
URL = "https://sfm.test.nhn.no/api/labs"
CONTEXT = pb.CareContext(
    patient_id=PATIENT,
    practitioner=pb.Practitioner(hpr_number="565505933", authorization="LE", legal_entity="994598759"),
    care_relationship=pb.CareRelationship(purpose_of_use="TREAT", decision_ref="d-1", user_selected=True),
    access_basis="AKUTT",
    event_id="0f6b1c1e-2a9d-4f7e-8c55-1d2e3f4a5b6c",
)


@pytest.fixture(scope="module")
def sts(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningSts, tuple[TestClient, TestClient]]]:
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path_factory.mktemp("sts"), clients) as running:
        yield running, clients


def read_trail(directory: Path) -> str:
    return "".join(path.read_text() for path in directory.glob("audit-*.jsonl"))


def request(tenant: str, context: pb.CareContext | None) -> pb.AuthorizeRequestRequest:
    made = pb.AuthorizeRequestRequest(tenant=tenant, target="sfm", http_method="GET", url=URL)
    if context is not None:
        made.care_context.CopyFrom(context)
    return made


async def test_the_apis_headers_come_back_and_a_lacking_context_costs_no_token(
    sts: tuple[RunningSts, tuple[TestClient, TestClient]], tmp_path: Path
) -> None:
    running, clients = sts
    config = broker_config(
        running.issuer, clients, audit=AuditSettings(directory=tmp_path, hash_key=os.urandom(32))
    )
    config = dataclasses.replace(config, targets={"sfm": dataclasses.replace(SFM, api_profile="pps")})
    async with running_broker(config) as address, grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TokenBrokerServiceStub(channel)
        answer = await stub.AuthorizeRequest(request("oslo", CONTEXT), timeout=20)
        assert [(header.name, header.value) for header in answer.headers] == [
            ("person-id", PATIENT),
            ("access-basis", "AKUTT"),
            ("requester-hpr-role", "LE"),
            ("correlation-id", CONTEXT.event_id),
        ]
        assert answer.authorization.startswith("DPoP ")

        before = running.stats()["token_requests"]
        lacking = pb.CareContext(patient_id=PATIENT[:-1] + str((int(PATIENT[-1]) + 1) % 10))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.AuthorizeRequest(request("trondheim", lacking), timeout=20)
        with pytest.raises(grpc.aio.AioRpcError) as without:
            await stub.AuthorizeRequest(request("trondheim", None), timeout=20)
        assert running.stats()["token_requests"] == before  # trondheim's token was never fetched
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, details = error_info(refused.value)
    violations = error_details_pb2.BadRequest()
    assert details[0].Unpack(violations)
    assert [item.field for item in violations.field_violations] == ["care_context.patient_id"]
    assert PATIENT[:-1] not in (refused.value.details() or "")
    assert error_info(without.value)[0].reason == "INVALID_ARGUMENT"
    assert "care_context.access_basis: is required by the pps API" in (without.value.details() or "")

    trail = read_trail(tmp_path)
    proofs = [line for line in trail.splitlines() if '"event":"proof"' in line]
    assert len(proofs) == 1
    assert '"patient":"' in proofs[0]
    assert PATIENT not in trail
