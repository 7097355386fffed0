from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey

from devauthority import RegisteredClient, RunningAuthority, TestUser, start_dev_authority

from .helpers import AUTHORIZATION_CODE, REFRESH_TOKEN, TOKEN_EXCHANGE, Caller, DevClient, LoginFlow

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
KJ = "nhn:kjernejournal"
PPS = "nhn:pps"
SFM = "e-helse:sfm.api"

REDIRECT_URI = "http://127.0.0.1:8089/signin-oidc"
IDENTITY_SCOPES = (
    "openid profile offline_access helseid://scopes/identity/pid helseid://scopes/identity/security_level "
    "helseid://scopes/identity/assurance_level helseid://scopes/hpr/hpr_number"
)
LOGIN_SCOPE = f"{IDENTITY_SCOPES} {KJ_SCOPE} {PPS_SCOPE}"

OLA = TestUser(
    id="ola",
    pid="13116900216",
    hpr_number="431001110",
    given_name="Ola",
    middle_name="Test",
    family_name="Nordmann",
    security_level="3",
    assurance_level="substantial",
)


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


@pytest.fixture(scope="session")
def login_client() -> DevClient:
    """A multi-tenant EPJ that logs users in (all four grants)."""
    key = ECKey.generate_key("P-256", parameters={"kid": "login-key-1"})
    return DevClient("epj-login-client", key, "ES256")


@pytest.fixture(scope="session")
def api_client() -> DevClient:
    """A single-tenant API that exchanges the tokens it receives for SFM tokens (the actor)."""
    key = RSAKey.generate_key(2048, parameters={"kid": "api-key-1"})
    return DevClient("pps-api-client", key, "RS256")


@pytest.fixture
def registered(
    multi_client: DevClient,
    single_client: DevClient,
    bearer_client: DevClient,
    login_client: DevClient,
    api_client: DevClient,
) -> list[RegisteredClient]:
    return [
        registration(
            login_client,
            tenancy="multi",
            organization_number=SUPPLIER_ORG,
            delegations=[TENANT_ORG],
            allowed_scopes=[KJ_SCOPE, PPS_SCOPE],
            grant_types=["client_credentials", AUTHORIZATION_CODE, REFRESH_TOKEN, TOKEN_EXCHANGE],
            redirect_uris=[REDIRECT_URI, "no.example.epj:/callback"],
        ),
        registration(
            api_client,
            tenancy="single",
            organization_number=SINGLE_ORG,
            allowed_scopes=[SFM_SCOPE],
            grant_types=["client_credentials", TOKEN_EXCHANGE],
        ),
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
    running = await start_dev_authority(
        clients=registered, token_lifetime=timedelta(seconds=5), test_users=[OLA]
    )
    yield running
    await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def caller(http: httpx.AsyncClient, authority: RunningAuthority) -> Caller:
    return Caller(http=http, issuer=authority.issuer)


@pytest.fixture
def flow(caller: Caller, login_client: DevClient) -> LoginFlow:
    return LoginFlow(caller=caller, client=login_client, redirect_uri=REDIRECT_URI)


@pytest.fixture
def actor_caller(http: httpx.AsyncClient, authority: RunningAuthority) -> Caller:
    """A second caller with its own DPoP key and nonce: the API that acts in a token exchange."""
    return Caller(http=http, issuer=authority.issuer)
