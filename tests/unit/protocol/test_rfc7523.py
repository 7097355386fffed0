from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from broker.model import SigningKey, Tenancy
from broker.protocol import helseid
from broker.protocol.rfc7523 import build_client_assertion

from .support import NOW, NOW_S, verify

ISSUER = "https://helseid-sts.test.nhn.no"


def _assertion(key: SigningKey, **overrides: object) -> str:
    arguments: dict[str, object] = {
        "client_id": "client-a", "audience": ISSUER, "key": key, "now": NOW, "jti": "jti-1",
    }  # fmt: skip
    arguments.update(overrides)
    return build_client_assertion(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("key_name", ["es256_key", "ps256_key", "es512_key"])
def test_assertion_verifies_with_header_and_claims_when_signed(
    key_name: str, request: pytest.FixtureRequest
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    token = verify(_assertion(key), key)
    assert token.header == {"typ": "client-authentication+jwt", "alg": key.alg, "kid": key.kid}
    assert token.claims == {
        "iss": "client-a",
        "sub": "client-a",
        "aud": ISSUER,
        "jti": "jti-1",
        "iat": NOW_S,
        "nbf": NOW_S,
        "exp": NOW_S + 30,
    }


def test_exp_follows_lifetime_when_sixty_seconds_are_asked(es256_key: SigningKey) -> None:
    claims = verify(_assertion(es256_key, lifetime=timedelta(seconds=60)), es256_key).claims
    assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize("lifetime", [timedelta(seconds=61), timedelta(minutes=5), timedelta(0)])
def test_assertion_is_refused_when_lifetime_is_outside_one_to_sixty_seconds(
    es256_key: SigningKey, lifetime: timedelta
) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        _assertion(es256_key, lifetime=lifetime)


def test_details_go_in_assertion_details_only_when_given(es256_key: SigningKey) -> None:
    details = helseid.build_assertion_details(
        Tenancy.MULTI,
        orgnr_parent="999977775",
        orgnr_child="999888777",
        sfm_journal_id="3fa85f64-5717-4562-b3fc-2c963f66afa6",
    )
    claims = verify(_assertion(es256_key, details=details), es256_key).claims
    assert claims["assertion_details"] == list(details)
    assert "authorization_details" not in claims


def test_no_details_claim_is_sent_when_details_are_empty(es256_key: SigningKey) -> None:
    claims = verify(_assertion(es256_key), es256_key).claims
    assert not {"assertion_details", "authorization_details"} & claims.keys()


def test_audience_is_kept_verbatim_when_the_issuer_has_a_trailing_slash(es256_key: SigningKey) -> None:
    claims = verify(_assertion(es256_key, audience=ISSUER + "/"), es256_key).claims
    assert claims["aud"] == ISSUER + "/"


def test_assertion_is_refused_when_now_is_naive(es256_key: SigningKey) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _assertion(es256_key, now=datetime(2026, 3, 1, 12, 0))


def test_assertion_is_refused_when_jti_is_empty(es256_key: SigningKey) -> None:
    with pytest.raises(ValueError, match="jti"):
        _assertion(es256_key, jti="")
