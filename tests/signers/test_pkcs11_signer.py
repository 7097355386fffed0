"""The PKCS#11 signer against SoftHSM2: every alg's signatures verify with joserfc against the public JWK, the
private key cannot be read off the token, the signer survives a module reset, and it refuses unusable
references naming the member at fault, never the PIN."""

from __future__ import annotations

import base64
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pkcs11
import pytest
from joserfc import jws
from joserfc.jwk import JWKRegistry
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11

from broker.signers.pkcs11 import Pkcs11KeyRef, Pkcs11SetupError, Pkcs11Signer, open_signer
from tests.fixtures.softhsm import SPARE_TOKEN_LABEL, SoftHsm


def compact(signer: Pkcs11Signer, claims: dict[str, object]) -> str:
    """A compact JWS built by hand around the signer, so joserfc only verifies (it never signs here)."""

    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = segment(json.dumps({"alg": signer.alg, "kid": signer.kid}).encode())
    payload = segment(json.dumps(claims).encode())
    signature = signer.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{segment(signature)}"


def verify(token: str, public: dict[str, str], alg: str) -> dict[str, object]:
    key = JWKRegistry.import_key(dict(public))
    result = jws.deserialize_compact(token, key, algorithms=[alg])
    return dict(json.loads(result.payload))


@pytest.mark.parametrize(
    ("label", "alg", "expected"),
    [
        ("ec-p256", None, "ES256"),
        ("ec-p384", None, "ES384"),
        ("rsa-2048", None, "PS256"),
        ("rsa-2048", "RS256", "RS256"),
        ("rsa-3072", "PS384", "PS384"),
        ("rsa-3072", "PS512", "PS512"),
        ("rsa-3072", "RS512", "RS512"),
    ],
)
def test_signatures_verify_against_the_public_jwk(
    softhsm: SoftHsm, label: str, alg: str | None, expected: str
) -> None:
    signer = open_signer(softhsm.ref(label, alg=alg))
    assert signer.alg == expected
    public = dict(signer.public_jwk())
    for _ in range(3):  # ECDSA and PSS are randomised: each signature differs, each verifies
        assert verify(compact(signer, {"sub": label, "n": 1}), public, expected) == {"sub": label, "n": 1}


def test_the_public_jwk_holds_public_members_only_and_the_kid_is_its_thumbprint(softhsm: SoftHsm) -> None:
    ec = open_signer(softhsm.ref("ec-p256"))
    rsa = open_signer(softhsm.ref("rsa-2048"))
    assert set(ec.public_jwk()) == {"kty", "crv", "x", "y"}
    assert ec.public_jwk()["crv"] == "P-256"
    assert set(rsa.public_jwk()) == {"kty", "n", "e"}
    for signer in (ec, rsa):
        assert signer.kid == JWKRegistry.import_key(dict(signer.public_jwk())).thumbprint()
    named = open_signer(softhsm.ref("ec-p256", kid="supplier-2026"))
    assert named.kid == "supplier-2026"
    assert named.public_jwk() == ec.public_jwk()


def test_the_same_reference_gives_the_same_signer(softhsm: SoftHsm) -> None:
    # A configuration reload must not open one more HSM session per key each time.
    assert open_signer(softhsm.ref("ec-p256")) is open_signer(softhsm.ref("ec-p256"))


def test_the_private_key_cannot_be_read_from_the_token(softhsm: SoftHsm) -> None:
    token = pkcs11.lib(softhsm.module).get_token(token_label=softhsm.token)
    with token.open() as session:  # no PIN: the signers' login covers this session too
        for label, secret in (("ec-p256", Attribute.VALUE), ("rsa-2048", Attribute.PRIVATE_EXPONENT)):
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
            assert key[Attribute.SENSITIVE] is True
            assert key[Attribute.EXTRACTABLE] is False
            with pytest.raises(p11.AttributeSensitive):
                key[secret]


def test_signing_from_many_threads_at_once(softhsm: SoftHsm) -> None:
    # A PKCS#11 session is not thread safe; the signer's lock makes one session serve every thread.
    signer = open_signer(softhsm.ref("ec-p256"))
    public = dict(signer.public_jwk())
    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = list(pool.map(lambda n: compact(signer, {"n": n}), range(200)))
    assert [verify(token, public, "ES256")["n"] for token in tokens] == list(range(200))


def test_a_module_reset_logs_in_again_and_signs(softhsm: SoftHsm, caplog: pytest.LogCaptureFixture) -> None:
    ec = open_signer(softhsm.ref("ec-p256"))
    rsa = open_signer(softhsm.ref("rsa-2048"))
    caplog.set_level(logging.DEBUG)
    # As after a device reset or an HSM failover: every session and the login are gone.
    pkcs11.lib(softhsm.module).reinitialize()
    for signer in (ec, rsa, ec):
        assert verify(compact(signer, {"after": "reset"}), dict(signer.public_jwk()), signer.alg)
    assert "logging in again" in caplog.text
    assert softhsm.pin not in caplog.text
    assert softhsm.so_pin not in caplog.text


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"key_label": "no-such-key"}, "key_label", 'no such key on token "broker"'),
        ({"token": "no-such-token"}, "token", 'no token labelled "no-such-token"'),
        ({"module": "/nonexistent/libpkcs11.so"}, "module", "no PKCS#11 module at /nonexistent/libpkcs11.so"),
        ({"module": "libsofthsm2.so"}, "module", "must be the absolute path"),
        ({"alg": "ES384"}, "alg", "must be ES256 for a P-256 key"),
        ({"key_label": "rsa-2048", "alg": "ES256"}, "alg", "must be one of PS256"),
        ({"token": SPARE_TOKEN_LABEL, "pin": "000000"}, "pin", f'wrong PIN for token "{SPARE_TOKEN_LABEL}"'),
        ({"pin": "000000"}, "pin", 'differs from the PIN another key reference logged in to token "broker"'),
    ],
)
def test_an_unusable_reference_names_the_member(
    softhsm: SoftHsm, change: dict[str, str], field: str, message: str
) -> None:
    open_signer(softhsm.ref("ec-p256"))  # the token is logged in, as when a second client names it
    ref: Pkcs11KeyRef = replace(softhsm.ref("ec-p256"), **change)
    with pytest.raises(Pkcs11SetupError) as raised:
        open_signer(ref)
    assert raised.value.field == field
    assert message in str(raised.value)
    assert softhsm.pin not in str(raised.value)
    assert "\n" not in str(raised.value)
