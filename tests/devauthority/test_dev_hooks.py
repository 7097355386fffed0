from __future__ import annotations

import time

import httpx
from joserfc.jwk import ECKey

from devauthority import RunningAuthority

from .conftest import PPS_SCOPE, SUPPLIER_ORG, registration
from .helpers import Caller, DevClient, LoginFlow, error_of


async def test_stats_count_requests_challenges_tokens_and_errors_when_tokens_are_fetched(
    caller: Caller, multi_client: DevClient, single_client: DevClient, authority: RunningAuthority
) -> None:
    await caller.request_token(multi_client, scope=PPS_SCOPE)  # challenge + token
    await caller.request_token(multi_client, scope=PPS_SCOPE)  # token (nonce remembered)
    await caller.request_token(single_client, scope="nhn:kjernejournal/innlogging")  # invalid_scope
    await caller.http.get(caller.token_endpoint)  # invalid_request, no grant

    stats = (await caller.http.get(caller.issuer + "/dev/stats")).json()

    assert stats == {
        "token_requests": 5,
        "token_requests_by_grant": {"client_credentials": 4, "(missing)": 1},
        "nonce_challenges": 1,
        "tokens_issued": 2,
        "errors_by_code": {"use_dpop_nonce": 1, "invalid_scope": 1, "invalid_request": 1},
        "par_requests": 0,
        "logins": 0,
        "refreshes": 0,
        "exchanges": 0,
        "revocations": 0,
        "tokens_by_kid": {"multi-key-1": 2, "single-key-1": 1},  # the last one's grant refused its scope
        "attests": {"in_assertions": 0, "in_request_objects": 0, "double": 0, "invalid": 0},
        "demo_api": {"requests": 0, "nonce_challenges": 0, "accepted": 0, "rejected": 0},
        "selvbetjening": {"registrations": 0, "refused": 0, "lists": 0, "removals": 0},
    }
    assert authority.stats() == stats


async def test_stats_are_zero_when_reset(caller: Caller, multi_client: DevClient) -> None:
    await caller.request_token(multi_client, scope=PPS_SCOPE)

    reset = await caller.http.post(caller.issuer + "/dev/reset-stats")

    assert reset.status_code == 200
    stats = (await caller.http.get(caller.issuer + "/dev/stats")).json()
    assert stats["token_requests"] == 0
    assert stats["token_requests_by_grant"] == {}
    assert stats["errors_by_code"] == {}


async def test_token_endpoint_answers_503_when_the_fault_is_unavailable(
    caller: Caller, multi_client: DevClient
) -> None:
    faults = caller.issuer + "/dev/faults"
    assert (await caller.http.post(faults, json={"token_endpoint": "unavailable"})).status_code == 200

    down = await caller.request_token(multi_client, scope=PPS_SCOPE)

    assert down.status_code == 503
    assert down.json()["error"] == "temporarily_unavailable"
    await caller.http.post(faults, json={"token_endpoint": "ok"})
    assert (await caller.request_token(multi_client, scope=PPS_SCOPE)).status_code == 200
    stats = (await caller.http.get(caller.issuer + "/dev/stats")).json()
    assert stats["errors_by_code"]["temporarily_unavailable"] == 1


async def test_token_endpoint_answers_late_when_the_fault_is_slow(
    caller: Caller, multi_client: DevClient
) -> None:
    await caller.http.post(caller.issuer + "/dev/faults", json={"token_endpoint": "slow", "delay_s": 0.3})

    started = time.monotonic()
    response = await caller.request_token(multi_client, scope=PPS_SCOPE)

    assert response.status_code == 200, response.text
    assert time.monotonic() - started >= 0.6  # challenge and retry are both delayed


async def test_faults_are_refused_and_unchanged_when_the_mode_is_unknown(
    http: httpx.AsyncClient, authority: RunningAuthority
) -> None:
    faults = authority.issuer + "/dev/faults"

    response = await http.post(faults, json={"token_endpoint": "down"})

    assert response.status_code == 400
    assert (await http.get(faults)).json() == {"token_endpoint": "ok", "delay_s": 0.0}


async def test_client_gets_a_token_when_registered_at_run_time_in_process(
    caller: Caller, authority: RunningAuthority
) -> None:
    newcomer = DevClient("newcomer", ECKey.generate_key("P-256", parameters={"kid": "n1"}), "ES256")
    assert error_of(await caller.request_token(newcomer, scope=PPS_SCOPE)) == "invalid_client"

    authority.register(
        registration(newcomer, tenancy="multi", organization_number=SUPPLIER_ORG, allowed_scopes=[PPS_SCOPE])
    )

    assert (await caller.request_token(newcomer, scope=PPS_SCOPE)).status_code == 200


async def test_client_gets_a_token_when_registered_at_run_time_over_http(caller: Caller) -> None:
    newcomer = DevClient("http-newcomer", ECKey.generate_key("P-521", parameters={"kid": "h1"}), "ES512")
    registered = await caller.http.post(
        caller.issuer + "/dev/clients",
        json={
            "client_id": newcomer.client_id,
            "jwks": {"keys": [newcomer.key.as_dict(private=False)]},
            "tenancy": "single",
            "organization_number": SUPPLIER_ORG,
            "allowed_scopes": [PPS_SCOPE],
        },
    )
    assert registered.status_code == 200, registered.text

    assert (await caller.request_token(newcomer, scope=PPS_SCOPE)).status_code == 200


async def test_client_registration_over_http_is_refused_when_it_carries_a_private_key(caller: Caller) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "p1"})
    response = await caller.http.post(
        caller.issuer + "/dev/clients",
        json={
            "client_id": "leaky",
            "jwks": {"keys": [key.as_dict(private=True)]},
            "tenancy": "single",
            "organization_number": SUPPLIER_ORG,
        },
    )

    assert response.status_code == 400
    assert "private" in response.json()["error_description"]


async def test_test_user_registered_over_http_can_be_logged_in_by_login_hint(
    flow: LoginFlow, caller: Caller
) -> None:
    user = {"id": "sykepleier", "pid": "26079000164", "given_name": "Siri", "family_name": "Sykepleier"}
    registered = await caller.http.post(caller.issuer + "/dev/test-users", json=user)
    duplicate = await caller.http.post(caller.issuer + "/dev/test-users", json=user)
    assert registered.status_code == 200, registered.text
    assert duplicate.status_code == 400

    code, pushed = await flow.login(scope="openid profile", login_hint="26079000164")
    response = await flow.redeem(code, pushed.verifier)

    _, claims = await caller.verified_claims(response.json()["id_token"])
    assert claims["name"] == "Siri Sykepleier"
