"""Issue 7, point 10: callers known by their workload identity, against a real broker and a real STS.

Client certificates come from a CA the test makes (SPIFFE URI SANs, DNS SANs); service-account tokens are
signed by an issuer key the test generates, its JWKS served over HTTP (discovery) or from a file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from joserfc.jwk import RSAKey

import broker.api.identity
from broker.config import BrokerConfig, ServerSettings
from broker.model import Caller, ServiceAccountIssuer
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import broker_config, running_broker, sfm_clients
from tests.fixtures.sts import RunningSts, TestClient, running_sts
from tests.fixtures.workload_identity import AUDIENCE, ClusterIssuer, Credentials, TestCa, serving_issuer

SPIFFE_ID = "spiffe://cluster.test/ns/payments/sa/billing"
SECRET = "oslo-batch-" + "s" * 40
STS = tuple[RunningSts, tuple[TestClient, TestClient]]


@pytest.fixture(scope="module")
def sts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[STS]:
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path_factory.mktemp("sts"), clients) as running:
        yield running, clients


def callers() -> dict[str, Caller]:
    """Four callers, one way each; `billing` may use oslo only, `reports` bergen only."""
    oslo, bergen = frozenset({"oslo"}), frozenset({"bergen"})
    secret = hashlib.sha256(SECRET.encode()).digest()
    return {
        "billing": Caller("billing", None, oslo, None, spiffe_id=SPIFFE_ID),
        "reports": Caller("reports", None, bergen, None, dns_name="reports.cluster.test"),
        "batch": Caller("batch", secret, oslo, None),
        "ledger": Caller("ledger", None, oslo, None, service_account="payments:ledger"),
    }


def config(
    running: RunningSts,
    clients: tuple[TestClient, TestClient],
    *,
    ca: TestCa | None = None,
    issuer: ServiceAccountIssuer | None = None,
) -> BrokerConfig:
    tls: dict[str, Any] = {}
    if ca is not None:
        server = ca.server()
        tls = {"tls_certificate": server.certificate, "tls_private_key": server.key, "tls_client_ca": ca.pem}
    settings = ServerSettings(**tls, service_account_tokens=issuer)
    return broker_config(running.issuer, clients, server=settings, callers=callers())


@dataclass(frozen=True, slots=True)
class Answer:
    code: grpc.StatusCode
    reason: str = ""
    details: str = ""


async def get_tokens(
    address: str,
    tenant: str,
    *,
    ca: TestCa | None = None,
    client: Credentials | None = None,
    bearer: str | None = None,
    calls: int = 1,
) -> list[Answer]:
    """`calls` concurrent GetToken calls on one channel (TLS when `ca` is given), each answer's code."""
    metadata = (("authorization", f"Bearer {bearer}"),) if bearer else ()
    if ca is None:
        channel = grpc.aio.insecure_channel(address)
    else:
        key, chain = (client.key, client.certificate) if client else (None, None)
        channel = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca.pem, key, chain))
    async with channel:
        stub = pb_grpc.TokenBrokerServiceStub(channel)
        request = pb.GetTokenRequest(tenant=tenant, target="sfm")
        results = await asyncio.gather(
            *(stub.GetToken(request, metadata=metadata, timeout=20) for _ in range(calls)),
            return_exceptions=True,
        )
    return [_answer(result) for result in results]


async def get_token(address: str, tenant: str, **identity: Any) -> Answer:
    return (await get_tokens(address, tenant, **identity))[0]


def _answer(result: object) -> Answer:
    if isinstance(result, pb.GetTokenResponse):
        assert result.access_token.token
        return Answer(grpc.StatusCode.OK)
    assert isinstance(result, grpc.aio.AioRpcError), result
    reason = ""
    status = rpc_status.from_call(result)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = str(info.reason)
    return Answer(result.code(), reason, result.details() or "")


OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def test_certificates_name_callers_without_a_secret_when_mtls_is_on(
    sts: STS, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, clients = sts
    ca = TestCa()
    parses: list[bytes] = []
    parse = broker.api.identity.certificate_identity

    def counted(pem: bytes) -> broker.api.identity.CertificateIdentity:
        parses.append(pem)
        return parse(pem)

    monkeypatch.setattr(broker.api.identity, "certificate_identity", counted)
    billing = ca.client(uris=(SPIFFE_ID,))
    reports = ca.client(dns_names=("Reports.cluster.test",))
    stranger = ca.client(uris=("spiffe://cluster.test/ns/other/sa/other",), dns_names=("other.cluster.test",))
    two_uris = ca.client(uris=(SPIFFE_ID, "spiffe://cluster.test/ns/other/sa/other"))
    async with running_broker(config(running, clients, ca=ca)) as address:
        many = await get_tokens(address, "oslo", ca=ca, client=billing, calls=200)
        answers = {
            "spiffe id, own tenant": await get_token(address, "oslo", ca=ca, client=billing),
            "spiffe id, other tenant": await get_token(address, "bergen", ca=ca, client=billing),
            "dns name, own tenant": await get_token(address, "bergen", ca=ca, client=reports),
            "unknown certificate alone": await get_token(address, "oslo", ca=ca, client=stranger),
            "unknown certificate + secret": await get_token(
                address, "oslo", ca=ca, client=stranger, bearer=SECRET
            ),
            "svid with two URIs": await get_token(address, "oslo", ca=ca, client=two_uris),
            "billing certificate + batch secret": await get_token(
                address, "oslo", ca=ca, client=billing, bearer=SECRET
            ),
            "billing certificate + wrong secret": await get_token(
                address, "oslo", ca=ca, client=billing, bearer="guess-" + "g" * 40
            ),
        }
    codes = {name: answer.code for name, answer in answers.items()}
    print(f"certificate identities: {len(many)} calls of one certificate, {len(parses)} certificate parses")
    for name, answer in answers.items():
        print(f"  {name}: {answer.code.name} {answer.reason}")
    assert {answer.code for answer in many} == {OK}
    assert codes == {
        "spiffe id, own tenant": OK,
        "spiffe id, other tenant": DENIED,
        "dns name, own tenant": OK,
        "unknown certificate alone": UNAUTHENTICATED,
        "unknown certificate + secret": OK,
        "svid with two URIs": UNAUTHENTICATED,
        "billing certificate + batch secret": UNAUTHENTICATED,
        "billing certificate + wrong secret": UNAUTHENTICATED,
    }
    mismatch = answers["billing certificate + batch secret"]
    assert mismatch.reason == "CALLER_UNAUTHENTICATED"
    assert "'billing'" in mismatch.details
    assert "'batch'" in mismatch.details
    assert "same caller" in mismatch.details
    assert SECRET not in mismatch.details
    # One parse per distinct certificate, however many calls present it.
    assert len(parses) == len(set(parses)) == 4


async def test_service_account_tokens_name_callers_and_discovery_is_fetched_once(sts: STS) -> None:
    running, clients = sts
    issuer = ClusterIssuer()
    async with serving_issuer(issuer) as served:
        settings = ServiceAccountIssuer(issuer.issuer, AUDIENCE, refetch_interval=timedelta(seconds=2))
        async with running_broker(config(running, clients, issuer=settings)) as address:
            valid = issuer.token("payments:ledger")
            first = await get_tokens(address, "oslo", bearer=valid, calls=100)
            fetched = (served.discovery_fetches, served.jwks_fetches)
            refused = await _refusals(address, issuer)
            burst_before = served.jwks_fetches
            stranger = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
            unknown_kid = await get_tokens(
                address, "oslo", bearer=issuer.token("payments:ledger", key=stranger), calls=50
            )
            burst = served.jwks_fetches - burst_before
            # The cluster rotates its key; once the interval has passed, the new kid fetches the keys again.
            issuer.rotate()
            await asyncio.sleep(2.1)
            rotated = await get_tokens(address, "oslo", bearer=issuer.token("payments:ledger"), calls=20)
            other_tenant = await get_token(address, "bergen", bearer=issuer.token("payments:ledger"))
    print(
        f"service-account tokens (discovery): {len(first)} concurrent calls, "
        f"{fetched[0]} discovery and {fetched[1]} JWKS requests; 50 calls with an unknown kid, "
        f"{burst} JWKS request(s); after rotation {len(rotated)} calls, "
        f"{served.discovery_fetches} discovery and {served.jwks_fetches} JWKS requests in all"
    )
    for name, answer in refused.items():
        print(f"  {name}: {answer.code.name} {answer.reason}")
    assert {answer.code for answer in first} == {OK}
    assert fetched == (1, 1)
    assert {(answer.code, answer.reason) for answer in refused.values()} == {
        (UNAUTHENTICATED, "CALLER_UNAUTHENTICATED")
    }
    assert {answer.code for answer in unknown_kid} == {UNAUTHENTICATED}
    assert burst <= 1
    assert {answer.code for answer in rotated} == {OK}
    assert other_tenant.code == DENIED
    assert served.jwks_fetches <= 3


async def _refusals(address: str, issuer: ClusterIssuer) -> dict[str, Answer]:
    forged = RSAKey.generate_key(2048, parameters={"kid": str(issuer.keys[0].kid)})
    tokens = {
        "wrong audience": issuer.token("payments:ledger", audience="someone-else"),
        "expired": issuer.token("payments:ledger", lifetime_s=-60),
        "wrong issuer": issuer.token("payments:ledger", issuer="https://other-cluster.test"),
        "wrong sub (a user)": issuer.token("payments:ledger", subject="system:node:worker-1"),
        "service account of no caller": issuer.token("payments:billing"),
        "forged signature, known kid": issuer.token("payments:ledger", key=forged),
    }
    return {name: await get_token(address, "oslo", bearer=token) for name, token in tokens.items()}


async def test_service_account_tokens_verify_against_a_jwks_file(sts: STS, tmp_path: Path) -> None:
    running, clients = sts
    issuer = ClusterIssuer("https://cluster.test")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    settings = ServiceAccountIssuer(
        issuer.issuer, AUDIENCE, jwks_file=str(jwks), refetch_interval=timedelta(seconds=1)
    )
    async with running_broker(config(running, clients, issuer=settings)) as address:
        valid = await get_tokens(address, "oslo", bearer=issuer.token("payments:ledger"), calls=20)
        expired = await get_token(address, "oslo", bearer=issuer.token("payments:ledger", lifetime_s=-60))
        issuer.rotate()
        before_file_update = await get_token(address, "oslo", bearer=issuer.token("payments:ledger"))
        jwks.write_text(json.dumps(issuer.jwks()))
        await asyncio.sleep(1.1)
        after_file_update = await get_token(address, "oslo", bearer=issuer.token("payments:ledger"))
    print(
        f"service-account tokens (JWKS file): {len(valid)} valid calls OK; expired {expired.code.name}; "
        f"new kid before the file has it {before_file_update.code.name}, after {after_file_update.code.name}"
    )
    assert {answer.code for answer in valid} == {OK}
    assert expired.code == UNAUTHENTICATED
    assert before_file_update.code == UNAUTHENTICATED
    assert after_file_update.code == OK


async def test_a_certificate_and_a_service_account_token_of_different_callers_are_refused(sts: STS) -> None:
    running, clients = sts
    ca, issuer = TestCa(), ClusterIssuer()
    async with serving_issuer(issuer) as _:
        settings = ServiceAccountIssuer(issuer.issuer, AUDIENCE)
        async with running_broker(config(running, clients, ca=ca, issuer=settings)) as address:
            billing = ca.client(uris=(SPIFFE_ID,))
            stranger = ca.client(dns_names=("other.cluster.test",))
            ledger_token = issuer.token("payments:ledger")
            mixed = await get_token(address, "oslo", ca=ca, client=billing, bearer=ledger_token)
            token_alone = await get_token(address, "oslo", ca=ca, client=stranger, bearer=ledger_token)
    print(
        f"certificate of billing + token of ledger: {mixed.code.name}; token with a plain certificate: "
        f"{token_alone.code.name}"
    )
    assert (mixed.code, mixed.reason) == (UNAUTHENTICATED, "CALLER_UNAUTHENTICATED")
    assert "'billing'" in mixed.details
    assert "'ledger'" in mixed.details
    assert ledger_token not in mixed.details
    assert token_alone.code == OK
