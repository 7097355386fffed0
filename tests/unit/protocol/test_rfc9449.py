from __future__ import annotations

from datetime import timedelta

import pytest

from broker.errors import InvalidRequestError
from broker.model import SigningKey
from broker.protocol import keys
from broker.protocol.rfc9449 import (
    access_token_hash,
    build_dpop_proof,
    nonce_challenge,
    normalize_htu,
    response_nonce,
)

from .support import NOW, NOW_S, response, unverified, verify_with_header_jwk

TOKEN_ENDPOINT = "https://helseid-sts.test.nhn.no/connect/token"
CHALLENGE_BODY = {"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce"}


def test_ath_matches_rfc9449_vector_when_given_the_example_token() -> None:
    # RFC 9449 §7.1: the access token of the example and the `ath` of its proof.
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_ath_is_refused_when_the_token_is_not_ascii() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        access_token_hash("tøken")
    assert caught.value.field == "access_token"


@pytest.mark.parametrize("key_name", ["es256_key", "ps256_key", "es512_key"])
def test_proof_verifies_with_its_own_jwk_header_when_signed(
    key_name: str, request: pytest.FixtureRequest
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    proof = build_dpop_proof(key, htm="post", htu=TOKEN_ENDPOINT, now=NOW, jti="p-1")
    token = verify_with_header_jwk(proof, key.alg)
    assert token.header == {"typ": "dpop+jwt", "alg": key.alg, "jwk": keys.public_members(key)}
    assert token.claims == {"jti": "p-1", "htm": "POST", "htu": TOKEN_ENDPOINT, "iat": NOW_S}


@pytest.mark.parametrize("key_name", ["es256_key", "ps256_key"])
def test_jwk_header_has_no_private_members_or_kid_when_signed(
    key_name: str, request: pytest.FixtureRequest
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    header, _ = unverified(build_dpop_proof(key, htm="GET", htu=TOKEN_ENDPOINT, now=NOW, jti="p-1"))
    assert header["jwk"].keys() <= {"kty", "crv", "x", "y", "n", "e"}
    assert not {"d", "p", "q", "dp", "dq", "qi", "kid"} & header["jwk"].keys()


def test_proof_carries_nonce_and_ath_when_both_are_given(es256_key: SigningKey) -> None:
    proof = build_dpop_proof(
        es256_key,
        htm="GET",
        htu="https://api.example/r?x=1",
        now=NOW,
        jti="p-2",
        nonce="n-1",
        access_token="at",
    )
    _, claims = unverified(proof)
    assert claims["nonce"] == "n-1"
    assert claims["ath"] == access_token_hash("at")
    assert claims["htu"] == "https://api.example/r"


def test_a_normal_htu_given_as_such_is_signed_as_normalising_would_give_it(es256_key: SigningKey) -> None:
    url = "HTTPS://API.Example:443/a/./b/../r?x=1#f"
    normal = normalize_htu(url)
    proof = build_dpop_proof(es256_key, htm="GET", htu=normal, now=NOW, jti="p-3", htu_is_normal=True)
    _, claims = unverified(proof)
    assert claims["htu"] == normal == "https://api.example/a/r"
    verify_with_header_jwk(proof, "ES256")


def test_proof_has_no_nonce_or_ath_when_they_are_empty(es256_key: SigningKey) -> None:
    proof = build_dpop_proof(
        es256_key, htm="GET", htu=TOKEN_ENDPOINT, now=NOW, jti="p", nonce="", access_token=""
    )
    _, claims = unverified(proof)
    assert not {"nonce", "ath"} & claims.keys()


def test_proof_iat_follows_now_when_time_moves(es256_key: SigningKey) -> None:
    later = NOW + timedelta(seconds=5)
    _, claims = unverified(build_dpop_proof(es256_key, htm="GET", htu=TOKEN_ENDPOINT, now=later, jti="p"))
    assert claims["iat"] == NOW_S + 5


def test_proof_headers_stay_per_key_when_two_keys_sign_alternately(es256_key: SigningKey) -> None:
    other = keys.generate_signing_key("ES256")
    for key in (es256_key, other, es256_key, other):
        header, _ = unverified(build_dpop_proof(key, htm="GET", htu=TOKEN_ENDPOINT, now=NOW, jti="p"))
        assert header["jwk"] == keys.public_members(key)


@pytest.mark.parametrize("method", ["", "GET /", "PO ST"])
def test_proof_is_refused_with_field_named_when_the_method_is_not_a_token(
    es256_key: SigningKey, method: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        build_dpop_proof(es256_key, htm=method, htu=TOKEN_ENDPOINT, now=NOW, jti="p")
    assert caught.value.field == "method"


@pytest.mark.parametrize(
    ("url", "htu"),
    [
        ("https://api.example/fhir/Patient?id=1#top", "https://api.example/fhir/Patient"),
        ("HTTPS://API.Example/Path", "https://api.example/Path"),
        ("https://api.example:443/a", "https://api.example/a"),
        ("http://localhost:80/a", "http://localhost/a"),
        ("https://api.example:8443/a", "https://api.example:8443/a"),
        ("http://127.0.0.1:443/a", "http://127.0.0.1:443/a"),
        ("https://api.example/fhir/./Patient/../Patient/%7e1", "https://api.example/fhir/Patient/~1"),
        ("https://api.example", "https://api.example/"),
        ("https://api.example?q=1", "https://api.example/"),
        ("https://[::1]:8443/a", "https://[::1]:8443/a"),
    ],
)
def test_htu_is_normalised_when_the_url_has_query_case_or_default_port(url: str, htu: str) -> None:
    assert normalize_htu(url) == htu


@pytest.mark.parametrize(
    "url",
    [
        "/connect/token",
        "ftp://host/x",
        "https://",
        "api.example/x",
        "https://user:pw@api.example/",
        "http://h:99999/",
        "http://api.example/",
        " https://api.example/",
        "https://api.example/a/..%2f..%2fadmin",
    ],
)
def test_htu_is_refused_with_field_named_when_not_an_absolute_http_url(url: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        normalize_htu(url)
    assert caught.value.field == "url"


def test_challenge_gives_the_nonce_when_400_use_dpop_nonce_has_a_nonce_header() -> None:
    assert nonce_challenge(response(400, CHALLENGE_BODY, {"DPoP-Nonce": "n-1"})) == "n-1"


def test_challenge_gives_the_nonce_when_401_www_authenticate_asks_for_one() -> None:
    headers = {
        "WWW-Authenticate": 'Bearer realm="api", DPoP algs="ES256", error="use_dpop_nonce"',
        "DPoP-Nonce": "n-2",
    }
    assert nonce_challenge(response(401, None, headers)) == "n-2"


@pytest.mark.parametrize(
    "answer",
    [
        response(400, CHALLENGE_BODY),
        response(400, {"error": "invalid_dpop_proof"}, {"DPoP-Nonce": "n"}),
        response(400, None, {"DPoP-Nonce": "n"}),
        response(401, None, {"WWW-Authenticate": 'DPoP error="invalid_token"', "DPoP-Nonce": "n"}),
        response(401, None, {"WWW-Authenticate": 'Bearer error="use_dpop_nonce"', "DPoP-Nonce": "n"}),
        response(200, {"access_token": "x"}, {"DPoP-Nonce": "n"}),
        response(400, CHALLENGE_BODY, {"DPoP-Nonce": 'has "quotes"'}),
    ],
)
def test_challenge_is_none_when_the_response_is_not_a_nonce_challenge(answer: object) -> None:
    assert nonce_challenge(answer) is None  # type: ignore[arg-type]


def test_response_nonce_is_read_when_a_success_carries_one() -> None:
    assert response_nonce(response(200, {}, {"dpop-nonce": "n-3"})) == "n-3"


def test_response_nonce_is_none_when_there_is_no_header() -> None:
    assert response_nonce(response(200, {})) is None
