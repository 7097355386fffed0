"""Kubernetes service-account tokens: every claim rule refuses on its own, with a fixed clock."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from broker.errors import UnauthenticatedError
from broker.protocol.serviceaccount import key_id, validate_service_account_token

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "helseid-token-broker"
LEEWAY = timedelta(seconds=10)


@pytest.fixture(scope="module")
def signer() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"})


@pytest.fixture(scope="module")
def published(signer: RSAKey) -> KeySet:
    return KeySet.import_key_set(KeySet([signer]).as_dict(private=False))


def claims(**changes: Any) -> dict[str, Any]:
    stamp = int(NOW.timestamp())
    base = {
        "iss": ISSUER,
        "aud": [AUDIENCE, "https://kubernetes.default.svc"],
        "sub": "system:serviceaccount:payments:ledger",
        "iat": stamp - 60,
        "nbf": stamp - 60,
        "exp": stamp + 3600,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def sign(key: RSAKey | ECKey, payload: dict[str, Any], alg: str = "RS256", kid: str | None = "k1") -> str:
    header = {"alg": alg} | ({"kid": kid} if kid else {})
    return jwt.encode(header, payload, key)


def validate(token: str, keys: KeySet) -> str:
    account = validate_service_account_token(
        token, keys, issuer=ISSUER, audience=AUDIENCE, now=NOW, leeway=LEEWAY
    )
    return account.key


def test_a_valid_token_names_its_namespace_and_service_account(signer: RSAKey, published: KeySet) -> None:
    account = validate_service_account_token(
        sign(signer, claims()), published, issuer=ISSUER, audience=AUDIENCE, now=NOW, leeway=LEEWAY
    )
    assert (account.namespace, account.name, account.key) == ("payments", "ledger", "payments:ledger")
    assert account.expires_at == NOW + timedelta(hours=1)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"aud": ["someone-else"]}, "aud"),
        ({"aud": None}, "aud"),
        ({"iss": "https://other-cluster.test"}, "iss"),
        ({"exp": int(NOW.timestamp()) - 11}, "expired"),
        ({"exp": None}, "expired"),
        ({"exp": "tomorrow"}, "expired"),
        ({"nbf": int(NOW.timestamp()) + 11}, "nbf"),
        ({"sub": "system:node:worker-1"}, "sub"),
        ({"sub": "system:serviceaccount:payments"}, "sub"),
        ({"sub": "system:serviceaccount:payments:ledger:extra"}, "sub"),
        ({"sub": None}, "sub"),
    ],
)
def test_each_claim_rule_refuses_a_token_that_breaks_it(
    signer: RSAKey, published: KeySet, change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(UnauthenticatedError) as refused:
        validate(sign(signer, claims(**change)), published)
    assert problem in refused.value.message


def test_leeway_accepts_small_clock_differences(signer: RSAKey, published: KeySet) -> None:
    stamp = int(NOW.timestamp())
    assert validate(sign(signer, claims(exp=stamp - 9, nbf=stamp + 9)), published) == "payments:ledger"


def test_signatures_of_other_keys_and_other_algorithms_are_refused(published: KeySet) -> None:
    forged = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    other_kid = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    # An HMAC keyed with the public key's bytes: the classic algorithm confusion.
    hmac_key = OctKey.import_key(json.dumps(published.keys[0].as_dict()).encode())
    unsigned = _b64({"alg": "none", "kid": "k1"}) + "." + _b64(claims()) + "."
    tokens = {
        "forged": sign(forged, claims()),
        "unknown kid": sign(other_kid, claims(), kid="k2"),
        "no kid": sign(forged, claims(), kid=None),
        "HS256": jwt.encode({"alg": "HS256", "kid": "k1"}, claims(), hmac_key, algorithms=["HS256"]),
        "none": unsigned,
        "not a JWT": "a-shared-secret-" + "x" * 40,
        "huge": sign(forged, claims(padding="x" * 20_000)),
    }
    messages = {}
    for name, token in tokens.items():
        with pytest.raises(UnauthenticatedError) as refused:
            validate(token, published)
        messages[name] = refused.value.message
    print(f"\n{len(messages)} forged or malformed tokens refused")
    assert "does not publish" in messages["unknown kid"]
    assert all(
        token not in message for token, message in zip(tokens.values(), messages.values(), strict=True)
    )


def test_an_absurd_exp_does_not_overflow(signer: RSAKey, published: KeySet) -> None:
    account = validate_service_account_token(
        sign(signer, claims(exp=1e300)), published, issuer=ISSUER, audience=AUDIENCE, now=NOW, leeway=LEEWAY
    )
    assert account.expires_at <= NOW + timedelta(days=366)


def test_key_id_reads_the_header_only_of_jwt_shaped_values(signer: RSAKey) -> None:
    assert key_id(sign(signer, claims())) == "k1"
    assert key_id("eyJub3QganNvbg.x.y") is None
    assert key_id("secret-value") is None


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
