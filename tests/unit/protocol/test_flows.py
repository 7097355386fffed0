from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta

import pytest

from broker.errors import IdpRejectedError
from broker.model import Client, SigningKey, Target, Tenancy, TokenType
from broker.protocol.flows import FlowResult, TokenFlow, client_credentials_flow
from broker.protocol.http import HTTPRequest, HTTPResponse

from .support import NOW, NOW_S, access_token_jwt, response, unverified, verify, verify_with_header_jwk

ISSUER = "https://helseid-sts.test.nhn.no"
TOKEN_ENDPOINT = f"{ISSUER}/connect/token"
DETAILS = ({"type": "nhn:sfm:journal-id", "value": {"journal_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}},)


@pytest.fixture
def client(es256_key: SigningKey, dpop_key: SigningKey) -> Client:
    return Client("supplier", "client-a", ISSUER, Tenancy.MULTI, signing_key=es256_key, dpop_key=dpop_key)


def _jti_source() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"jti-{next(counter)}"


def _flow(client: Client, *, target: Target | None = None, nonce: str | None = None) -> TokenFlow:
    return client_credentials_flow(
        client=client,
        target=target or Target("sfm", ("e-helse:sfm.api/client",), resource="e-helse:sfm.api"),
        details=DETAILS,
        token_endpoint=TOKEN_ENDPOINT,
        issuer=ISSUER,
        clock=lambda: NOW,
        new_jti=_jti_source(),
        nonce=nonce,
    )


def _finish(flow: TokenFlow, answer: HTTPResponse) -> FlowResult:
    with pytest.raises(StopIteration) as stopped:
        flow.send(answer)
    result: FlowResult = stopped.value.value
    return result


def _ok(client: Client, **headers: str) -> HTTPResponse:
    token = access_token_jwt({"cnf": {"jkt": client.dpop_key.thumbprint}})
    body = {"access_token": token, "token_type": "DPoP", "expires_in": 300, "scope": "e-helse:sfm.api/client"}
    return response(200, body, headers)


def _challenge(nonce: str) -> HTTPResponse:
    return response(400, {"error": "use_dpop_nonce"}, {"DPoP-Nonce": nonce})


def _jtis(request: HTTPRequest) -> tuple[str, str]:
    _, assertion = unverified(request.form["client_assertion"])
    _, proof = unverified(request.headers["DPoP"])
    return assertion["jti"], proof["jti"]


def test_one_request_gives_the_token_when_there_is_no_challenge(client: Client) -> None:
    flow = _flow(client, nonce="remembered")
    request = next(flow)
    result = _finish(flow, _ok(client))
    assert (request.method, request.url) == ("POST", TOKEN_ENDPOINT)
    assert request.form["scope"] == "e-helse:sfm.api/client"
    assert request.form["resource"] == "e-helse:sfm.api"
    assert (result.token.token_type, result.token.jkt) == (TokenType.DPOP, client.dpop_key.thumbprint)
    assert result.token.expires_at == NOW + timedelta(seconds=300)
    assert result.nonce == "remembered"


def test_request_carries_verified_assertion_and_proof_when_built(client: Client) -> None:
    request = next(_flow(client, nonce="remembered"))
    assertion = verify(request.form["client_assertion"], client.signing_key).claims
    proof = verify_with_header_jwk(request.headers["DPoP"], client.dpop_key.alg).claims
    assert (assertion["iss"], assertion["aud"], assertion["iat"]) == ("client-a", ISSUER, NOW_S)
    assert assertion["assertion_details"] == list(DETAILS)
    assert proof == {
        "jti": "jti-2",
        "htm": "POST",
        "htu": TOKEN_ENDPOINT,
        "iat": NOW_S,
        "nonce": "remembered",
    }


def test_exactly_one_retry_with_fresh_jtis_and_the_nonce_when_challenged(client: Client) -> None:
    flow = _flow(client)
    first = next(flow)
    retry = flow.send(_challenge("server-nonce"))
    result = _finish(flow, _ok(client))
    assert "nonce" not in unverified(first.headers["DPoP"])[1]
    assert unverified(retry.headers["DPoP"])[1]["nonce"] == "server-nonce"
    assert set(_jtis(first)).isdisjoint(_jtis(retry))
    assert len(set(_jtis(retry))) == 2
    assert result.nonce == "server-nonce"


def test_nonce_of_the_final_response_is_remembered_when_it_sends_one(client: Client) -> None:
    flow = _flow(client, nonce="old")
    next(flow)
    assert _finish(flow, _ok(client, **{"DPoP-Nonce": "newer"})).nonce == "newer"


def test_second_challenge_is_not_retried_when_the_retry_is_challenged_too(client: Client) -> None:
    flow = _flow(client)
    next(flow)
    flow.send(_challenge("n-1"))
    with pytest.raises(IdpRejectedError) as caught:
        flow.send(_challenge("n-2"))
    assert caught.value.oauth_error == "use_dpop_nonce"


def test_bearer_target_gets_no_proof_and_no_retry_when_challenged(client: Client) -> None:
    flow = _flow(client, target=Target("pps", ("pps:read",), token_type=TokenType.BEARER))
    request = next(flow)
    assert "DPoP" not in request.headers
    with pytest.raises(IdpRejectedError):
        flow.send(_challenge("n-1"))


def test_bearer_token_is_returned_when_the_target_wants_bearer(client: Client) -> None:
    flow = _flow(client, target=Target("pps", ("pps:read",), token_type=TokenType.BEARER))
    next(flow)
    result = _finish(
        flow, response(200, {"access_token": "opaque", "token_type": "Bearer", "expires_in": 60})
    )
    assert (result.token.token_type, result.token.jkt, result.nonce) == (TokenType.BEARER, None, None)
