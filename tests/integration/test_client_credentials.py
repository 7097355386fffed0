"""End to end: gRPC caller -> broker -> real STS process over HTTP, for both STS implementations."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet

from broker.v1 import token_broker_service_pb2 as pb
from tests.fixtures.broker_server import (
    JOURNAL_ID,
    broker_config,
    broker_stub,
    get_token,
    running_broker,
    sfm_clients,
)
from tests.fixtures.redis_server import free_port
from tests.fixtures.sts import RunningSts, TestClient

STS = tuple[RunningSts, tuple[TestClient, TestClient]]
ORGNR = "helseid://claims/client/claims/orgnr_"
TENANCY = "helseid://claims/client/client_tenancy"


def verified_claims(issuer: str, token: str) -> dict[str, Any]:
    discovery = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()
    key_set = KeySet.import_key_set(httpx.get(discovery["jwks_uri"], timeout=5).json())
    return dict(jwt.decode(token, key_set, algorithms=["RS256", "PS256", "ES256"]).claims)


async def test_multi_tenant_tenant_gets_dpop_token_with_org_and_journal_claims(sts: STS) -> None:
    running, clients = sts
    async with running_broker(broker_config(running.issuer, clients)) as address:
        token = await get_token(address, "oslo")
    assert token.token_type == pb.TOKEN_TYPE_DPOP
    claims = verified_claims(running.issuer, token.token)
    assert claims["cnf"]["jkt"] == clients[0].signing_key.thumbprint == token.dpop_jkt
    assert claims[ORGNR + "parent"] == "912345678"
    assert claims[ORGNR + "child"] == "998877665"
    assert claims[ORGNR + "supplier"] == "999888777"
    assert claims[TENANCY] == "multi-tenant"
    assert claims["nhn:sfm:journal-id"] == JOURNAL_ID
    assert claims["aud"] in ("e-helse:sfm.api", ["e-helse:sfm.api"])
    assert claims["client_id"] == clients[0].client_id
    assert list(token.audiences) == ["e-helse:sfm.api"]
    assert token.expire_time.seconds > 0


async def test_single_tenant_tenant_gets_token_with_its_child_org(sts: STS) -> None:
    running, clients = sts
    async with running_broker(broker_config(running.issuer, clients)) as address:
        token = await get_token(address, "bergen")
    claims = verified_claims(running.issuer, token.token)
    assert claims["cnf"]["jkt"] == clients[1].signing_key.thumbprint
    assert claims[ORGNR + "child"] == "444555666"
    assert claims[TENANCY] == "single-tenant"
    assert "nhn:sfm:journal-id" not in claims


async def test_authorize_request_proof_verifies_against_the_token(sts: STS) -> None:
    running, clients = sts
    url = "https://sfm.test.nhn.no/api/patients/42?view=full#top"
    async with (
        running_broker(broker_config(running.issuer, clients)) as address,
        broker_stub(address) as stub,
    ):
        response = await stub.AuthorizeRequest(
            pb.AuthorizeRequestRequest(
                tenant="oslo", target="sfm", http_method="post", url=url, dpop_nonce="rs-n1"
            ),
            timeout=30,
        )
    scheme, token = response.authorization.split(" ", 1)
    assert scheme == "DPoP"
    claims = verified_claims(running.issuer, token)
    header = jws.extract_compact(response.dpop.encode()).protected
    proof_key = ECKey.import_key(header["jwk"])
    proof = jws.deserialize_compact(response.dpop, proof_key, algorithms=["ES256"])
    payload = jwt.decode(response.dpop, proof_key, algorithms=["ES256"]).claims
    assert proof.protected["typ"] == "dpop+jwt"
    assert proof_key.thumbprint() == claims["cnf"]["jkt"]
    expected_ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    assert payload["ath"] == expected_ath
    assert payload["htm"] == "POST"
    assert payload["htu"] == "https://sfm.test.nhn.no/api/patients/42"
    assert payload["nonce"] == "rs-n1"
    assert "d" not in header["jwk"]


async def test_second_fetch_takes_one_round_trip_when_the_nonce_is_remembered(sts: STS) -> None:
    running, clients = sts
    async with running_broker(broker_config(running.issuer, clients)) as address:
        await get_token(address, "oslo")
        before = running.stats()
        await get_token(address, "trondheim")
        after = running.stats()
    assert after["token_requests"] - before["token_requests"] == 1
    assert after["nonce_challenges"] == before["nonce_challenges"]


async def test_200_concurrent_callers_for_a_cold_token_cause_one_token_request(sts: STS) -> None:
    running, clients = sts
    async with running_broker(broker_config(running.issuer, clients)) as address:
        await get_token(address, "trondheim")  # learn the issuer's nonce, so one fetch is one request
        before = running.stats()
        async with broker_stub(address) as stub:
            calls = [
                stub.GetToken(pb.GetTokenRequest(tenant="oslo", target="sfm"), timeout=30) for _ in range(200)
            ]
            responses = await asyncio.gather(*calls)
        after = running.stats()
    assert after["token_requests"] - before["token_requests"] == 1
    tokens = {response.access_token.token for response in responses}
    assert len(tokens) == 1
    claims = verified_claims(running.issuer, tokens.pop())
    assert claims[ORGNR + "parent"] == "912345678"
    print(
        f"\n{running.kind}: 200 concurrent callers -> {after['token_requests'] - before['token_requests']} "
        "token request(s), 1 distinct token"
    )


def error_info(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[Any]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    others: list[Any] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        else:
            others.append(detail)
    return info, others


async def test_unregistered_key_gives_failed_precondition_with_the_oauth_error(sts: STS) -> None:
    running, clients = sts
    impostor = TestClient(clients[0].client_id, "multi", "999888777", clients[0].scopes, "e-helse:sfm.api")
    config = broker_config(running.issuer, (impostor, clients[1]))
    async with running_broker(config) as address:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await get_token(address, "oslo")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, _ = error_info(caught.value)
    assert info.reason == "STS_REJECTED"
    assert info.metadata["oauthError"] == "invalid_client"
    assert info.domain == "broker.helseid"


async def test_unreachable_sts_gives_unavailable_with_retry_info() -> None:
    config = broker_config(f"http://127.0.0.1:{free_port()}", sfm_clients())
    async with running_broker(config) as address:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await get_token(address, "oslo")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info, others = error_info(caught.value)
    assert info.reason == "STS_UNAVAILABLE"
    assert any(detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for detail in others)


@pytest.mark.parametrize(
    ("tenant", "target", "code", "reason"),
    [
        ("nobody", "sfm", grpc.StatusCode.NOT_FOUND, "TENANT_NOT_FOUND"),
        ("oslo", "nothing", grpc.StatusCode.NOT_FOUND, "TARGET_NOT_FOUND"),
        ("", "sfm", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ],
)
async def test_bad_names_give_clear_errors_without_calling_the_sts(
    sts: STS, tenant: str, target: str, code: grpc.StatusCode, reason: str
) -> None:
    running, clients = sts
    before = running.stats()
    async with running_broker(broker_config(running.issuer, clients)) as address:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await get_token(address, tenant, target)
    assert caught.value.code() == code
    assert error_info(caught.value)[0].reason == reason
    assert running.stats()["token_requests"] == before["token_requests"]


async def test_proof_for_a_url_the_target_does_not_allow_is_refused(sts: STS) -> None:
    running, clients = sts
    async with (
        running_broker(broker_config(running.issuer, clients)) as address,
        broker_stub(address) as stub,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.AuthorizeRequest(
                pb.AuthorizeRequestRequest(
                    tenant="oslo", target="sfm", http_method="GET", url="https://evil.test/"
                ),
                timeout=30,
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value)[0].reason == "URL_NOT_ALLOWED"
