"""Who may call: caller credentials, per-caller tenants and targets, TLS with client certificates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker.api.server import ServerTls, create_server
from broker.app import build_broker, check_exposure
from broker.config import BrokerConfig
from broker.errors import ConfigurationError
from broker.model import Caller
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import broker_config, running_broker, sfm_clients
from tests.fixtures.sts import RunningSts, TestClient, running_sts

OSLO_SECRET = "oslo-service-" + "x" * 40
ADMIN_SECRET = "admin-service-" + "y" * 40


def caller(name: str, secret: str, tenants: set[str] | None, *, sessions: bool = False) -> Caller:
    digest = hashlib.sha256(secret.encode()).digest()
    return Caller(name, digest, None if tenants is None else frozenset(tenants), None, sessions)


@pytest.fixture(scope="module")
def sts(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningSts, tuple[TestClient, TestClient]]]:
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path_factory.mktemp("sts"), clients) as running:
        yield running, clients


def guarded(running: RunningSts, clients: tuple[TestClient, TestClient]) -> BrokerConfig:
    callers = {"oslo": caller("oslo", OSLO_SECRET, {"oslo"}), "admin": caller("admin", ADMIN_SECRET, None)}
    return dataclasses.replace(broker_config(running.issuer, clients), callers=callers)


async def get_token(address: str, tenant: str, secret: str | None) -> pb.AccessToken:
    metadata = (("authorization", f"Bearer {secret}"),) if secret else ()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TokenBrokerServiceStub(channel)
        response = await stub.GetToken(
            pb.GetTokenRequest(tenant=tenant, target="sfm"), metadata=metadata, timeout=20
        )
    return response.access_token


async def test_callers_get_only_their_tenants_and_nobody_gets_in_without_a_credential(sts: tuple) -> None:
    running, clients = sts
    async with running_broker(guarded(running, clients)) as address:
        assert (await get_token(address, "oslo", OSLO_SECRET)).token
        assert (await get_token(address, "bergen", ADMIN_SECRET)).token
        with pytest.raises(grpc.aio.AioRpcError) as other_tenant:
            await get_token(address, "bergen", OSLO_SECRET)
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await get_token(address, "oslo", None)
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await get_token(address, "oslo", "guess-" + "z" * 40)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.TokenBrokerServiceStub(channel)
            metadata = (("authorization", f"Bearer {OSLO_SECRET}"),)
            with pytest.raises(grpc.aio.AioRpcError) as no_sessions:
                await stub.StartLogin(pb.StartLoginRequest(tenant="oslo", targets=["sfm"]), metadata=metadata)
    assert other_tenant.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert no_sessions.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert OSLO_SECRET not in (other_tenant.value.details() or "")


def test_broker_without_callers_refuses_to_listen_beyond_loopback(sts: tuple) -> None:
    running, clients = sts
    config = broker_config(running.issuer, clients)
    check_exposure(config, "127.0.0.1:50051")
    with pytest.raises(ConfigurationError) as caught:
        check_exposure(config, "0.0.0.0:50051")
    assert caught.value.field == "callers"


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(item: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


async def test_mtls_server_refuses_callers_without_a_certificate_from_its_ca(
    sts: tuple, tmp_path: Path
) -> None:
    running, clients = sts
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("test CA", ca_key, None, ca=True)
    server_cert = _certificate("broker", server_key, (ca.subject, ca_key), ip="127.0.0.1")
    client_cert = _certificate("sfm-service", client_key, (ca.subject, ca_key))
    broker = build_broker(broker_config(running.issuer, clients))
    tls = ServerTls(_pem(server_cert), _pem(server_key), _pem(ca))
    server, port, _ = create_server(broker.engine, "127.0.0.1:0", tls=tls)
    await server.start()
    try:
        request = pb.GetTokenRequest(tenant="oslo", target="sfm")
        with_cert = grpc.ssl_channel_credentials(_pem(ca), _pem(client_key), _pem(client_cert))
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", with_cert) as channel:
            token = (await pb_grpc.TokenBrokerServiceStub(channel).GetToken(request, timeout=20)).access_token
        without_cert = grpc.ssl_channel_credentials(_pem(ca))
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", without_cert) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pb_grpc.TokenBrokerServiceStub(channel).GetToken(request, timeout=5)
    finally:
        await server.stop(grace=None)
        await broker.engine.close()
        await broker.sts.close()
    assert token.token
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
