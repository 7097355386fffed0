from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from joserfc.jwk import RSAKey

from devauthority import RegisteredClient, RunningAuthority, start_dev_authority

from .conftest import PPS_SCOPE
from .helpers import Caller, DevClient, MovableClock, error_of, rfc7638_thumbprint


async def test_token_endpoint_challenges_with_nonce_when_proof_has_no_nonce(
    caller: Caller, multi_client: DevClient
) -> None:
    response = await caller.post_token(caller.form(multi_client, scope=PPS_SCOPE), proof=caller.proof())

    assert error_of(response) == "use_dpop_nonce"
    assert response.headers["DPoP-Nonce"]


async def test_dpop_token_is_issued_when_proof_carries_the_server_nonce(
    caller: Caller, multi_client: DevClient
) -> None:
    response = await caller.request_token(multi_client, scope=PPS_SCOPE)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert body["expires_in"] == 5
    assert body["scope"] == PPS_SCOPE
    assert "rejected_scope" not in body
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["DPoP-Nonce"] == caller.nonce  # a success hands out the nonce too


async def test_access_token_verifies_and_is_bound_to_the_proof_key_when_issued(
    caller: Caller, multi_client: DevClient, authority: RunningAuthority
) -> None:
    response = await caller.request_token(multi_client, scope=PPS_SCOPE)
    header, claims = await caller.verified_claims(response.json()["access_token"])

    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert claims["cnf"] == {"jkt": rfc7638_thumbprint(caller.dpop_key.as_dict(private=False))}
    assert claims["iss"] == authority.issuer
    assert claims["aud"] == "nhn:pps"
    assert claims["scope"] == [PPS_SCOPE]
    assert claims["client_id"] == multi_client.client_id
    assert claims["client_amr"] == "private_key_jwt"
    assert claims["exp"] - claims["iat"] == 5
    assert claims["nbf"] == claims["iat"]
    assert claims["jti"]


async def test_rsa_ps256_proof_is_accepted_when_its_header_exceeds_512_bytes(
    caller: Caller, multi_client: DevClient
) -> None:
    caller.dpop_key = RSAKey.generate_key(2048)
    caller.dpop_alg = "PS256"
    assert len(caller.proof().split(".")[0]) > 512  # the size joserfc refuses by default

    response = await caller.request_token(multi_client, scope=PPS_SCOPE)

    assert response.status_code == 200, response.text
    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert claims["cnf"]["jkt"] == rfc7638_thumbprint(caller.dpop_key.as_dict(private=False))


async def test_proof_is_refused_when_its_jwk_holds_the_private_key(
    caller: Caller, multi_client: DevClient
) -> None:
    await caller.request_token(multi_client, scope=PPS_SCOPE)  # learn a nonce
    leaked = caller.proof(public_jwk=caller.dpop_key.as_dict(private=True))

    response = await caller.post_token(caller.form(multi_client, scope=PPS_SCOPE), proof=leaked)

    assert error_of(response) == "invalid_dpop_proof"


async def test_proof_is_refused_when_htu_is_another_url(caller: Caller, multi_client: DevClient) -> None:
    await caller.request_token(multi_client, scope=PPS_SCOPE)
    proof = caller.proof(htu=caller.issuer + "/connect/par")

    response = await caller.post_token(caller.form(multi_client, scope=PPS_SCOPE), proof=proof)

    assert error_of(response) == "invalid_dpop_proof"


async def test_proof_is_refused_when_htm_is_not_post(caller: Caller, multi_client: DevClient) -> None:
    await caller.request_token(multi_client, scope=PPS_SCOPE)

    response = await caller.post_token(
        caller.form(multi_client, scope=PPS_SCOPE), proof=caller.proof(htm="GET")
    )

    assert error_of(response) == "invalid_dpop_proof"


async def test_proof_is_refused_when_replayed(caller: Caller, multi_client: DevClient) -> None:
    await caller.request_token(multi_client, scope=PPS_SCOPE)
    proof = caller.proof()
    first = await caller.post_token(caller.form(multi_client, scope=PPS_SCOPE), proof=proof)
    assert first.status_code == 200, first.text

    replay = await caller.post_token(caller.form(multi_client, scope=PPS_SCOPE), proof=proof)

    assert error_of(replay) == "invalid_dpop_proof"


async def test_proof_is_required_when_the_client_requires_dpop(
    caller: Caller, multi_client: DevClient
) -> None:
    response = await caller.request_token(multi_client, scope=PPS_SCOPE, dpop=False)

    assert error_of(response) == "invalid_dpop_proof"


async def test_bearer_token_is_issued_when_client_does_not_require_dpop_and_sends_no_proof(
    caller: Caller, bearer_client: DevClient
) -> None:
    response = await caller.request_token(bearer_client, scope=PPS_SCOPE, dpop=False)

    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    _, claims = await caller.verified_claims(response.json()["access_token"])
    assert "cnf" not in claims


async def test_assertion_is_not_spent_when_the_request_only_lacked_a_nonce(
    caller: Caller, multi_client: DevClient
) -> None:
    # The Java library resends the same assertion after a nonce challenge; that must work.
    form = caller.form(multi_client, scope=PPS_SCOPE)
    challenge = await caller.post_token(form, proof=caller.proof())
    assert error_of(challenge) == "use_dpop_nonce"
    caller.nonce = challenge.headers["DPoP-Nonce"]

    response = await caller.post_token(form, proof=caller.proof())

    assert response.status_code == 200, response.text


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def rotating_authority(
    registered: list[RegisteredClient], clock: MovableClock
) -> AsyncIterator[RunningAuthority]:
    running = await start_dev_authority(clients=registered, nonce_period=timedelta(seconds=30), clock=clock)
    yield running
    await running.stop()


async def test_previous_nonce_is_accepted_when_nonces_rotated_once(
    http: httpx.AsyncClient,
    rotating_authority: RunningAuthority,
    clock: MovableClock,
    multi_client: DevClient,
) -> None:
    caller = Caller(http=http, issuer=rotating_authority.issuer, clock=clock)
    assert (await caller.request_token(multi_client, scope=PPS_SCOPE)).status_code == 200
    clock.offset = 31  # one 30 s period later: the nonce we hold is now the previous one

    response = await caller.post_token(caller.form(multi_client, scope=PPS_SCOPE), proof=caller.proof())

    assert response.status_code == 200, response.text
    assert response.headers["DPoP-Nonce"] != caller.nonce  # and the answer hands out the new one


async def test_nonce_challenge_repeats_when_the_nonce_is_two_periods_old(
    http: httpx.AsyncClient,
    rotating_authority: RunningAuthority,
    clock: MovableClock,
    multi_client: DevClient,
) -> None:
    caller = Caller(http=http, issuer=rotating_authority.issuer, clock=clock)
    assert (await caller.request_token(multi_client, scope=PPS_SCOPE)).status_code == 200
    stale = caller.nonce
    clock.offset = 61

    response = await caller.post_token(caller.form(multi_client, scope=PPS_SCOPE), proof=caller.proof())

    assert error_of(response) == "use_dpop_nonce"
    assert response.headers["DPoP-Nonce"] != stale
    assert (await caller.request_token(multi_client, scope=PPS_SCOPE)).status_code == 200
