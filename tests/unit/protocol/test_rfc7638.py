from __future__ import annotations

import pytest

from broker.model import SigningKey
from broker.protocol import keys
from broker.protocol.rfc7638 import jwk_thumbprint

# RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZ"
        "CiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZ"
        "gnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBni"
        "Iqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_matches_rfc7638_vector_when_given_the_example_key() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT


def test_thumbprint_ignores_optional_members_when_kid_alg_and_use_are_present() -> None:
    bare = {"kty": "RSA", "n": RFC7638_JWK["n"], "e": "AQAB"}
    assert jwk_thumbprint({**RFC7638_JWK, "use": "sig"}) == jwk_thumbprint(bare)


def test_thumbprint_equals_signing_key_thumbprint_when_given_its_public_jwk(es256_key: SigningKey) -> None:
    assert jwk_thumbprint(keys.public_jwk(es256_key)) == es256_key.thumbprint


def test_thumbprint_is_refused_when_a_required_member_is_missing() -> None:
    with pytest.raises(ValueError, match="lacks the member"):
        jwk_thumbprint({"kty": "RSA", "e": "AQAB"})


def test_thumbprint_is_refused_when_kty_is_unknown() -> None:
    with pytest.raises(ValueError, match="kty"):
        jwk_thumbprint({"kty": "XYZ"})
