from __future__ import annotations

from typing import Any

import pytest
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, RSAKey

from broker.model import SigningKey
from broker.protocol import keys


def _private_ec(crv: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**ECKey.generate_key(crv).as_dict(private=True), **(extra or {})}


@pytest.fixture(scope="module")
def rsa_2048_jwk() -> dict[str, Any]:
    return RSAKey.generate_key(2048).as_dict(private=True)


def test_supported_algs_are_helseid_list_when_read() -> None:
    assert set(keys.SUPPORTED_ALGS) == {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
    }  # fmt: skip


@pytest.mark.parametrize(("crv", "alg"), [("P-256", "ES256"), ("P-384", "ES384"), ("P-521", "ES512")])
def test_alg_defaults_by_curve_when_the_jwk_has_no_alg(crv: str, alg: str) -> None:
    assert keys.load_signing_key(_private_ec(crv)).alg == alg


def test_alg_defaults_to_ps256_when_an_rsa_jwk_has_no_alg(rsa_2048_jwk: dict[str, Any]) -> None:
    assert keys.load_signing_key(rsa_2048_jwk).alg == "PS256"


def test_alg_and_kid_are_kept_when_the_jwk_names_them(rsa_2048_jwk: dict[str, Any]) -> None:
    key = keys.load_signing_key({**rsa_2048_jwk, "alg": "RS512", "kid": "rotation-7"})
    assert (key.alg, key.kid) == ("RS512", "rotation-7")


def test_kid_defaults_to_thumbprint_when_the_jwk_has_none() -> None:
    key = keys.load_signing_key(_private_ec("P-256"))
    assert key.kid == key.thumbprint
    assert len(key.thumbprint) == 43


def test_load_round_trips_when_given_private_jwk_output(es256_key: SigningKey) -> None:
    loaded = keys.load_signing_key(keys.private_jwk(es256_key))
    assert (loaded.alg, loaded.kid, loaded.thumbprint) == (es256_key.alg, es256_key.kid, es256_key.thumbprint)


def test_extra_members_are_dropped_when_loading_a_jwk_with_x5c() -> None:
    key = keys.load_signing_key(_private_ec("P-256", {"x5c": ["MIIB..."], "kid": "k1"}))
    assert "x5c" not in keys.public_jwk(key)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kty": "oct"}, "'kty' must be 'EC' or 'RSA'"),
        ({"alg": "HS256"}, "'alg' must be one of"),
        ({"alg": "ES384"}, "alg ES384 needs curve P-384"),
        ({"alg": "PS256"}, "does not fit a key of kty EC"),
        ({"crv": "secp256k1"}, "'crv' must be P-256, P-384 or P-521"),
        ({"use": "enc"}, "'use' must be 'sig'"),
        ({"key_ops": ["verify"]}, "'key_ops' must include 'sign'"),
        ({"kid": ""}, "'kid' must be a non-empty string"),
    ],
)
def test_load_is_refused_with_the_problem_named_when_the_jwk_is_unfit(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        keys.load_signing_key(_private_ec("P-256", change))


def test_load_is_refused_when_the_jwk_is_a_public_key(es256_key: SigningKey) -> None:
    with pytest.raises(ValueError, match="public key"):
        keys.load_signing_key(keys.public_jwk(es256_key))


def test_load_is_refused_when_the_rsa_key_is_shorter_than_2048_bits() -> None:
    with pytest.warns(SecurityWarning):  # joserfc only warns about short keys; the broker refuses them
        short = RSAKey.generate_key(1024).as_dict(private=True)
    with pytest.raises(ValueError, match="1024 bits"):
        keys.load_signing_key(short)


def test_error_never_echoes_key_material_when_d_does_not_match_the_public_key() -> None:
    jwk = _private_ec("P-256")
    other_d = str(_private_ec("P-256")["d"])
    with pytest.raises(ValueError, match="not a valid private key") as caught:
        keys.load_signing_key({**jwk, "d": other_d})
    assert other_d not in str(caught.value)
    assert caught.value.__cause__ is None


def test_load_is_refused_with_member_named_when_one_is_missing() -> None:
    jwk = _private_ec("P-256")
    del jwk["y"]
    with pytest.raises(ValueError, match="'y' is required"):
        keys.load_signing_key(jwk)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_generated_key_signs_with_alg_when_an_ec_alg_is_asked(alg: str) -> None:
    key = keys.generate_signing_key(alg, kid="k")
    assert (key.alg, key.kid, key.public["kty"]) == (alg, "k", "EC")


def test_generated_rsa_key_has_3072_bits_when_an_rs_or_ps_alg_is_asked(ps256_key: SigningKey) -> None:
    assert ps256_key.public["kty"] == "RSA"
    assert RSAKey.import_key(dict(ps256_key.public)).raw_value.key_size == 3072
    assert ps256_key.kid == ps256_key.thumbprint


def test_generate_is_refused_when_the_alg_is_not_supported() -> None:
    with pytest.raises(ValueError, match="alg must be one of"):
        keys.generate_signing_key("EdDSA")


def test_private_jwk_has_kid_alg_and_use_when_exported(es256_key: SigningKey) -> None:
    jwk = keys.private_jwk(es256_key)
    assert {"d", "x", "y", "crv"} <= jwk.keys()
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == (es256_key.kid, "ES256", "sig")


def test_public_jwk_has_no_private_members_when_exported(ps256_key: SigningKey) -> None:
    jwk = keys.public_jwk(ps256_key)
    assert jwk.keys() == {"kty", "n", "e", "kid", "alg", "use"}
    assert jwk["use"] == "sig"


def test_public_members_are_only_the_key_when_building_a_dpop_jwk(es256_key: SigningKey) -> None:
    assert keys.public_members(es256_key).keys() == {"kty", "crv", "x", "y"}
