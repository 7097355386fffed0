from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey

from broker.devauthority import RegisteredClient, RunningAuthority, start_dev_authority

from .helpers import Caller, DevClient

SUPPLIER_ORG = "912345678"
TENANT_ORG = "987654321"  # has delegated to the multi-tenant client
TENANT_CHILD = "976543210"
UNSIGNED_TENANT = "955555555"  # has delegated, but not signed the PPS terms
SINGLE_ORG = "923456789"
SINGLE_CHILD = "934567890"
SFM_ID = "sfm-client-42"

PPS_SCOPE = "nhn:pps/provesvar-read"
SFM_SCOPE = "e-helse:sfm.api/sfm.api2"
KJ_SCOPE = "nhn:kjernejournal/innlogging"


@pytest.fixture(scope="session")
def multi_client() -> DevClient:
    key = ECKey.generate_key("P-256", parameters={"kid": "multi-key-1", "use": "sig"})
    return DevClient("multi-tenant-client", key, "ES256")


@pytest.fixture(scope="session")
def single_client() -> DevClient:
    # An RSA key signing PS256, like the keys HelseID's own tooling makes.
    key = RSAKey.generate_key(2048, parameters={"kid": "single-key-1", "alg": "PS256"})
    return DevClient("single-tenant-client", key, "PS256")


@pytest.fixture(scope="session")
def bearer_client() -> DevClient:
    key = ECKey.generate_key("P-384", parameters={"kid": "bearer-key-1"})
    return DevClient("bearer-client", key, "ES384")


def registration(client: DevClient, **fields: Any) -> RegisteredClient:
    return RegisteredClient(
        client_id=client.client_id, jwks={"keys": [client.key.as_dict(private=False)]}, **fields
    )


@pytest.fixture
def registered(
    multi_client: DevClient, single_client: DevClient, bearer_client: DevClient
) -> list[RegisteredClient]:
    return [
        registration(
            multi_client,
            tenancy="multi",
            organization_number=SUPPLIER_ORG,
            delegations=[TENANT_ORG, UNSIGNED_TENANT],
            not_signed={UNSIGNED_TENANT: [PPS_SCOPE]},
            allowed_scopes=[PPS_SCOPE, SFM_SCOPE, KJ_SCOPE],
        ),
        registration(
            single_client,
            tenancy="single",
            organization_number=SINGLE_ORG,
            child_organizations=[SINGLE_CHILD],
            allowed_scopes=[SFM_SCOPE, PPS_SCOPE],
            sfm_id=SFM_ID,
        ),
        registration(
            bearer_client,
            tenancy="single",
            organization_number=SINGLE_ORG,
            allowed_scopes=[PPS_SCOPE],
            require_dpop=False,
        ),
    ]


@pytest.fixture
async def authority(registered: list[RegisteredClient]) -> AsyncIterator[RunningAuthority]:
    running = await start_dev_authority(clients=registered, token_lifetime=timedelta(seconds=5))
    yield running
    await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def caller(http: httpx.AsyncClient, authority: RunningAuthority) -> Caller:
    return Caller(http=http, issuer=authority.issuer)
