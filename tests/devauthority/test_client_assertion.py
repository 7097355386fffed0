from __future__ import annotations

from urllib.parse import urlencode

import httpx
from joserfc.jwk import ECKey

from devauthority import RunningAuthority

from .conftest import PPS_SCOPE
from .helpers import Caller, DevClient, client_assertion, error_of


async def _with_assertion(caller: Caller, client: DevClient, assertion: str) -> httpx.Response:
    """Send one request with a given assertion and a valid proof (nonce learned beforehand)."""
    if caller.nonce is None:
        await caller.request_token(client, scope=PPS_SCOPE)
    form = caller.form(client, scope=PPS_SCOPE, assertion=assertion)
    return await caller.post_token(form, proof=caller.proof())


async def test_assertion_is_refused_with_invalid_client_when_its_jti_is_replayed(
    caller: Caller, multi_client: DevClient
) -> None:
    assertion = client_assertion(multi_client, aud=caller.issuer)
    first = await _with_assertion(caller, multi_client, assertion)
    assert first.status_code == 200, first.text

    replay = await _with_assertion(caller, multi_client, assertion)

    assert error_of(replay) == "invalid_client"


async def test_assertion_is_refused_when_aud_is_another_issuer(
    caller: Caller, multi_client: DevClient
) -> None:
    assertion = client_assertion(multi_client, aud="https://helseid-sts.test.nhn.no")

    assert error_of(await _with_assertion(caller, multi_client, assertion)) == "invalid_client"


async def test_assertion_is_refused_when_aud_has_a_trailing_slash(
    caller: Caller, multi_client: DevClient
) -> None:
    assertion = client_assertion(multi_client, aud=caller.issuer + "/")

    assert error_of(await _with_assertion(caller, multi_client, assertion)) == "invalid_client"


async def test_assertion_is_accepted_when_aud_is_the_token_endpoint(
    caller: Caller, multi_client: DevClient
) -> None:
    assertion = client_assertion(multi_client, aud=caller.token_endpoint)

    response = await _with_assertion(caller, multi_client, assertion)

    assert response.status_code == 200, response.text


async def test_assertion_is_refused_when_its_lifetime_exceeds_60_seconds(
    caller: Caller, multi_client: DevClient
) -> None:
    assertion = client_assertion(multi_client, aud=caller.issuer, lifetime=61)

    assert error_of(await _with_assertion(caller, multi_client, assertion)) == "invalid_client"


async def test_assertion_is_refused_when_expired(caller: Caller, multi_client: DevClient) -> None:
    assertion = client_assertion(multi_client, aud=caller.issuer, iat_offset=-40, lifetime=30)

    assert error_of(await _with_assertion(caller, multi_client, assertion)) == "invalid_client"


async def test_assertion_is_refused_when_issued_in_the_future(
    caller: Caller, multi_client: DevClient
) -> None:
    assertion = client_assertion(multi_client, aud=caller.issuer, iat_offset=30)

    assert error_of(await _with_assertion(caller, multi_client, assertion)) == "invalid_client"


async def test_assertion_is_refused_when_typ_is_plain_jwt(caller: Caller, multi_client: DevClient) -> None:
    assertion = client_assertion(multi_client, aud=caller.issuer, typ="JWT")

    assert error_of(await _with_assertion(caller, multi_client, assertion)) == "invalid_client"


async def test_assertion_is_refused_when_kid_is_not_registered(
    caller: Caller, multi_client: DevClient
) -> None:
    assertion = client_assertion(multi_client, aud=caller.issuer, kid="some-other-kid")

    response = await _with_assertion(caller, multi_client, assertion)

    assert error_of(response) == "invalid_client"
    assert "kid" in response.json()["error_description"]


async def test_assertion_is_refused_when_signed_by_another_key_with_the_registered_kid(
    caller: Caller, multi_client: DevClient
) -> None:
    impostor = DevClient(multi_client.client_id, ECKey.generate_key("P-256"), "ES256")
    assertion = client_assertion(impostor, aud=caller.issuer, kid=multi_client.key.kid)

    assert error_of(await _with_assertion(caller, multi_client, assertion)) == "invalid_client"


async def test_assertion_is_refused_when_form_client_id_differs_from_iss(
    caller: Caller, multi_client: DevClient, single_client: DevClient
) -> None:
    await caller.request_token(multi_client, scope=PPS_SCOPE)
    form = caller.form(multi_client, scope=PPS_SCOPE)
    form["client_id"] = single_client.client_id

    assert error_of(await caller.post_token(form, proof=caller.proof())) == "invalid_client"


async def test_request_is_refused_with_invalid_client_when_assertion_is_missing(
    caller: Caller, multi_client: DevClient
) -> None:
    form = caller.form(multi_client, scope=PPS_SCOPE)
    del form["client_assertion"]
    form["client_secret"] = "hunter2"

    assert error_of(await caller.post_token(form, proof=caller.proof())) == "invalid_client"


async def test_request_is_refused_with_invalid_request_when_not_a_form_post(
    http: httpx.AsyncClient, authority: RunningAuthority
) -> None:
    endpoint = authority.issuer + "/connect/token"

    assert error_of(await http.get(endpoint)) == "invalid_request"
    assert error_of(await http.post(endpoint, json={"grant_type": "client_credentials"})) == "invalid_request"


async def test_request_is_refused_when_a_parameter_repeats(caller: Caller, multi_client: DevClient) -> None:
    body = urlencode([*caller.form(multi_client, scope=PPS_SCOPE).items(), ("scope", PPS_SCOPE)])
    headers = {"Content-Type": "application/x-www-form-urlencoded", "DPoP": caller.proof()}

    response = await caller.http.post(caller.token_endpoint, content=body, headers=headers)

    assert error_of(response) == "invalid_request"


async def test_request_is_refused_with_unsupported_grant_type_when_grant_is_unknown(
    caller: Caller, multi_client: DevClient
) -> None:
    form = caller.form(multi_client, scope=PPS_SCOPE, grant_type="password")

    assert error_of(await caller.post_token(form, proof=caller.proof())) == "unsupported_grant_type"
