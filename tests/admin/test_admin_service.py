"""The AdminService of one broker, against the dev authority: who may reach it, tenants written, read,
listed and deleted, validated exactly like a tenant file, and the clients' public keys.

The broker here has no configuration file (as embedded defaults run) and the memory store; the replicas on
one Redis are tests/reload/test_replicas.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import grpc
import pytest
from google.rpc import error_details_pb2

from broker.model import Caller
from broker.protocol import keys
from broker.v1 import admin_service_pb2 as admin
from broker.v1 import admin_service_pb2_grpc as admin_grpc
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import broker_config, running_broker, sfm_clients
from tests.fixtures.sts import RunningSts, TestClient, running_sts
from tests.integration.test_client_credentials import error_info

ADMIN = "admin-" + "a" * 40
OSLO_ADMIN = "oslo-admin-" + "b" * 40
SERVICE = "service-" + "c" * 40
MOLDE = admin.TenantSettings(client="multi", targets=["sfm"], orgnr_parent="934567890")


def caller(name: str, secret: str, tenants: set[str] | None, *, admin_grant: bool) -> Caller:
    digest = hashlib.sha256(secret.encode()).digest()
    return Caller(name, digest, None if tenants is None else frozenset(tenants), None, admin=admin_grant)


@pytest.fixture(scope="module")
def sts(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningSts, tuple[TestClient, TestClient]]]:
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path_factory.mktemp("sts"), clients) as running:
        yield running, clients


@asynccontextmanager
async def broker(
    sts: tuple[RunningSts, tuple[TestClient, TestClient]],
) -> AsyncIterator[tuple[admin_grpc.AdminServiceStub, pb_grpc.TokenBrokerServiceStub]]:
    running, clients = sts
    callers = {
        "ops": caller("ops", ADMIN, None, admin_grant=True),
        "oslo-ops": caller("oslo-ops", OSLO_ADMIN, {"oslo", "molde"}, admin_grant=True),
        "service": caller("service", SERVICE, None, admin_grant=False),
    }
    config = dataclasses.replace(broker_config(running.issuer, clients), callers=callers)
    async with running_broker(config) as address, grpc.aio.insecure_channel(address) as channel:
        yield admin_grpc.AdminServiceStub(channel), pb_grpc.TokenBrokerServiceStub(channel)


def as_caller(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


def violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    _, details = error_info(error)
    request = error_details_pb2.BadRequest()
    assert details
    assert details[0].Unpack(request)
    return [(item.field, item.description) for item in request.field_violations]


async def test_only_admin_callers_reach_the_service_and_their_tenants_bound_it(
    sts: tuple[RunningSts, tuple[TestClient, TestClient]],
) -> None:
    async with broker(sts) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListTenants(admin.ListTenantsRequest(), metadata=as_caller(SERVICE), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(refused.value)[0].reason == "CALLER_NOT_ALLOWED"

        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.GetPublicJwks(admin.GetPublicJwksRequest(), timeout=10)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # An admin granted some tenants sees and writes only those.
        listed = await stub.ListTenants(
            admin.ListTenantsRequest(), metadata=as_caller(OSLO_ADMIN), timeout=10
        )
        assert [tenant.name for tenant in listed.tenants] == ["oslo"]
        with pytest.raises(grpc.aio.AioRpcError) as other:
            await stub.UpsertTenant(
                admin.UpsertTenantRequest(tenant="tromso", settings=MOLDE),
                metadata=as_caller(OSLO_ADMIN),
                timeout=10,
            )
        assert error_info(other.value)[0].reason == "CALLER_NOT_ALLOWED"
        every = await stub.ListTenants(admin.ListTenantsRequest(), metadata=as_caller(ADMIN), timeout=10)
        assert [tenant.name for tenant in every.tenants] == ["bergen", "oslo", "trondheim"]


async def test_a_tenant_written_is_served_at_once_changed_and_deleted(
    sts: tuple[RunningSts, tuple[TestClient, TestClient]],
) -> None:
    async with broker(sts) as (stub, tokens):
        metadata = as_caller(ADMIN)
        upserted = await stub.UpsertTenant(
            admin.UpsertTenantRequest(tenant="molde", settings=MOLDE), metadata=metadata, timeout=10
        )
        assert upserted.created
        assert upserted.tenant.source == admin.TENANT_SOURCE_STORE
        assert upserted.tenant.settings.orgnr_parent == "934567890"
        token = await tokens.GetToken(
            pb.GetTokenRequest(tenant="molde", target="sfm"), metadata=metadata, timeout=20
        )
        assert token.access_token.token

        changed = admin.TenantSettings(client="multi", targets=["sfm"], orgnr_parent="945678901")
        again = await stub.UpsertTenant(
            admin.UpsertTenantRequest(tenant="molde", settings=changed), metadata=metadata, timeout=10
        )
        assert not again.created
        read = await stub.GetTenant(admin.GetTenantRequest(tenant="molde"), metadata=metadata, timeout=10)
        assert read.tenant.settings.orgnr_parent == "945678901"

        await stub.DeleteTenant(admin.DeleteTenantRequest(tenant="molde"), metadata=metadata, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await tokens.GetToken(
                pb.GetTokenRequest(tenant="molde", target="sfm"), metadata=metadata, timeout=10
            )
        assert error_info(gone.value)[0].reason == "TENANT_NOT_FOUND"
        with pytest.raises(grpc.aio.AioRpcError) as again_gone:
            await stub.DeleteTenant(admin.DeleteTenantRequest(tenant="molde"), metadata=metadata, timeout=10)
        assert error_info(again_gone.value)[0].reason == "TENANT_NOT_FOUND"


async def test_settings_are_validated_like_a_tenant_file_naming_every_bad_field(
    sts: tuple[RunningSts, tuple[TestClient, TestClient]],
) -> None:
    async with broker(sts) as (stub, _):
        metadata = as_caller(ADMIN)
        # The shape first (the guard): the organisation number is not 9 digits.
        bad = admin.TenantSettings(client="multi", targets=["sfm"], orgnr_parent="ORG-1")
        with pytest.raises(grpc.aio.AioRpcError) as shape:
            await stub.UpsertTenant(
                admin.UpsertTenantRequest(tenant="molde", settings=bad), metadata=metadata, timeout=10
            )
        assert shape.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(shape.value) == [
            ("settings.orgnr_parent", "must be an organisation number of 9 digits")
        ]
        assert "ORG-1" not in (shape.value.details() or "")

        # Then the tenant file's rules, every mistake at once: an unknown client and target, a warm target
        # the tenant does not have.
        bad = admin.TenantSettings(client="nobody", targets=["sfm", "kj"], warm=["pps"])
        with pytest.raises(grpc.aio.AioRpcError) as rules:
            await stub.UpsertTenant(
                admin.UpsertTenantRequest(tenant="molde", settings=bad), metadata=metadata, timeout=10
            )
        found = dict(violations(rules.value))
        assert rules.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert found["settings.client"] == "no client named 'nobody' in [clients]"
        assert found["settings.targets[1]"] == "no target named 'kj' in [targets]"
        assert any(field.startswith("settings.warm") for field in found), found

        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.UpsertTenant(admin.UpsertTenantRequest(tenant="molde"), metadata=metadata, timeout=10)
        assert violations(missing.value) == [("settings", "is required")]

        # Nothing was stored by any of them.
        listed = await stub.ListTenants(admin.ListTenantsRequest(), metadata=metadata, timeout=10)
        assert "molde" not in [tenant.name for tenant in listed.tenants]


async def test_a_tenant_of_the_files_is_managed_there(
    sts: tuple[RunningSts, tuple[TestClient, TestClient]],
) -> None:
    async with broker(sts) as (stub, _):
        metadata = as_caller(ADMIN)
        for call in (
            stub.UpsertTenant(
                admin.UpsertTenantRequest(tenant="oslo", settings=MOLDE), metadata=metadata, timeout=10
            ),
            stub.DeleteTenant(admin.DeleteTenantRequest(tenant="oslo"), metadata=metadata, timeout=10),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_info(refused.value)[0].reason == "TENANT_MANAGED_BY_FILES"
        read = await stub.GetTenant(admin.GetTenantRequest(tenant="oslo"), metadata=metadata, timeout=10)
        assert read.tenant.source == admin.TENANT_SOURCE_FILES
        assert read.tenant.settings.orgnr_parent == "912345678"


async def test_tenants_are_listed_in_pages(sts: tuple[RunningSts, tuple[TestClient, TestClient]]) -> None:
    async with broker(sts) as (stub, _):
        metadata = as_caller(ADMIN)
        for index in range(5):
            await stub.UpsertTenant(
                admin.UpsertTenantRequest(tenant=f"kommune-{index}", settings=MOLDE),
                metadata=metadata,
                timeout=10,
            )
        names: list[str] = []
        token = ""
        pages = 0
        while True:
            page = await stub.ListTenants(
                admin.ListTenantsRequest(page_size=3, page_token=token), metadata=metadata, timeout=10
            )
            pages += 1
            names += [tenant.name for tenant in page.tenants]
            token = page.next_page_token
            if not token:
                break
        assert pages == 3
        assert names == sorted(names) == ["bergen", *[f"kommune-{i}" for i in range(5)], "oslo", "trondheim"]
        with pytest.raises(grpc.aio.AioRpcError) as too_big:
            await stub.ListTenants(admin.ListTenantsRequest(page_size=5000), metadata=metadata, timeout=10)
        assert violations(too_big.value) == [("page_size", "must be from 0 to 1000")]


async def test_public_jwks_are_every_clients_signing_key_without_private_parts(
    sts: tuple[RunningSts, tuple[TestClient, TestClient]],
) -> None:
    _, clients = sts
    async with broker(sts) as (stub, _):
        answer = await stub.GetPublicJwks(admin.GetPublicJwksRequest(), metadata=as_caller(ADMIN), timeout=10)
    by_client = {key.client: key for key in answer.keys}
    assert sorted(by_client) == ["multi", "single"]
    for name, client in zip(("multi", "single"), clients, strict=True):
        key = by_client[name]
        assert key.client_id == client.client_id
        assert json.loads(key.jwk_json) == keys.public_jwk(client.signing_key)
        assert "d" not in json.loads(key.jwk_json)
        assert key.kid == client.signing_key.kid


async def test_reload_without_files_answers_what_it_changed(
    sts: tuple[RunningSts, tuple[TestClient, TestClient]],
) -> None:
    async with broker(sts) as (stub, _):
        answer = await stub.ReloadConfiguration(
            admin.ReloadConfigurationRequest(), metadata=as_caller(ADMIN), timeout=10
        )
    assert answer.tenants == 3
    assert list(answer.added_tenants) == []
    assert answer.routes_removed == 0
