"""Signing keys: loading, generating and exporting the private JWKs the broker signs with, and signing.

HelseID accepts RS256/384/512, PS256/384/512 and ES256/384/512 for client assertions and DPoP proofs, with EC
keys on P-256/P-384/P-521 and RSA keys of at least 2048 bits (helseid.md §2; RFC 7518 §3.1 names the
algorithms, RFC 7517 §4 the JWK members). All JOSE work is joserfc's; this module only applies the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeyParameters, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.util import base64_to_int

from broker.model import PrivateKey, SigningKey
from broker.protocol.rfc7638 import REQUIRED_MEMBERS

SUPPORTED_ALGS: Final[tuple[str, ...]] = (
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
)  # fmt: skip

_CURVE_BY_ALG: Final = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_ALG_BY_CURVE: Final = {curve: alg for alg, curve in _CURVE_BY_ALG.items()}
# PS256 rather than RS256 for RSA: the PSS padding is the modern choice and what LIB's key rotation picks.
_DEFAULT_RSA_ALG: Final = "PS256"
_MIN_RSA_BITS: Final = 2048
_GENERATED_RSA_BITS: Final = 3072
# Private members per RFC 7518 §6.2.2 and §6.3.2; `oth` (multi-prime RSA) is left out, joserfc refuses it.
_PRIVATE_MEMBERS: Final[Mapping[str, tuple[str, ...]]] = {
    "EC": ("d",),
    "RSA": ("d", "p", "q", "dp", "dq", "qi"),
}

# One registry, built once: the explicit allowlist every signature goes through (a hand-made SigningKey with
# another alg is refused by joserfc), and no per-call registry construction on the DPoP hot path.
_SIGNING_REGISTRY: Final = JWSRegistry(algorithms=list(SUPPORTED_ALGS))


def load_signing_key(jwk: Mapping[str, Any]) -> SigningKey:
    """A `SigningKey` from a private EC or RSA JWK; ValueError naming the problem (never key material)."""
    kty = _key_type(jwk)
    _check_private(jwk, kty)
    _check_use(jwk)
    alg = _algorithm(jwk, kty)
    if kty == "EC":
        _check_curve_fits(_curve(jwk), alg)
    else:
        _check_rsa_size(jwk)
    kid = _optional_kid(jwk)
    return _wrap(_import(jwk, kty, alg, kid), alg)


def generate_signing_key(alg: str = "ES256", kid: str | None = None) -> SigningKey:
    """A fresh key for `alg`: EC on the curve the alg names, RSA 3072 for RS*/PS*; `kid` defaults to the
    RFC 7638 thumbprint."""
    if alg not in SUPPORTED_ALGS:
        raise ValueError(f"alg must be one of {', '.join(SUPPORTED_ALGS)}")
    parameters: KeyParameters = {"alg": alg, "use": "sig"}
    if kid is not None:
        parameters["kid"] = kid
    native: PrivateKey
    if alg in _CURVE_BY_ALG:
        native = ECKey.generate_key(_CURVE_BY_ALG[alg], parameters, auto_kid=kid is None)
    else:
        native = RSAKey.generate_key(_GENERATED_RSA_BITS, parameters, auto_kid=kid is None)
    return _wrap(native, alg)


def private_jwk(key: SigningKey) -> dict[str, Any]:
    """The private JWK with `kid`, `alg` and `use: sig`, for storing the key (never into the repository)."""
    return dict(key.jwk.as_dict(private=True, kid=key.kid, alg=key.alg, use="sig"))


def public_jwk(key: SigningKey) -> dict[str, Any]:
    """The public JWK with `kid`, `alg` and `use: sig`, as registered in HelseID Selvbetjening."""
    return dict(key.jwk.as_dict(private=False, kid=key.kid, alg=key.alg, use="sig"))


def public_members(key: SigningKey) -> dict[str, str]:
    """Only the public key members (kty, crv/x/y or e/n), as a DPoP proof's `jwk` header carries them."""
    members = key.jwk.dict_value
    return {name: str(members[name]) for name in REQUIRED_MEMBERS[key.jwk.key_type]}


def sign_jwt(key: SigningKey, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """A JWS-compact JWT over `claims`, signed with `key` (RFC 7515 §7.1); `header` must carry `alg`."""
    # default_type=None: the caller's `typ` is the whole point (client-authentication+jwt, dpop+jwt).
    return jwt.encode(dict(header), dict(claims), key.jwk, registry=_SIGNING_REGISTRY, default_type=None)


def _wrap(native: PrivateKey, alg: str) -> SigningKey:
    kid = native.kid
    assert kid is not None  # _import and generate_signing_key always set one
    return SigningKey(jwk=native, alg=alg, kid=kid, thumbprint=native.thumbprint())


def _key_type(jwk: Mapping[str, Any]) -> str:
    kty = jwk.get("kty")
    if kty not in ("EC", "RSA"):
        raise ValueError("the JWK's 'kty' must be 'EC' or 'RSA' (HelseID signs with EC or RSA keys)")
    return str(kty)


def _check_private(jwk: Mapping[str, Any], kty: str) -> None:
    if "d" not in jwk:
        raise ValueError(f"the {kty} JWK is a public key; signing needs the private key (member 'd')")


def _check_use(jwk: Mapping[str, Any]) -> None:
    # Caught here, not at the first signature: joserfc would refuse an "enc" key only when signing.
    if jwk.get("use", "sig") != "sig":
        raise ValueError("the JWK's 'use' must be 'sig'")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "sign" not in key_ops):
        raise ValueError("the JWK's 'key_ops' must include 'sign'")


def _algorithm(jwk: Mapping[str, Any], kty: str) -> str:
    alg = jwk.get("alg")
    if alg is None:
        return _ALG_BY_CURVE[_curve(jwk)] if kty == "EC" else _DEFAULT_RSA_ALG
    if alg not in SUPPORTED_ALGS:
        raise ValueError(f"the JWK's 'alg' must be one of {', '.join(SUPPORTED_ALGS)}")
    if (kty == "EC") != alg.startswith("ES"):
        raise ValueError(f"the JWK's 'alg' {alg} does not fit a key of kty {kty}")
    return str(alg)


def _curve(jwk: Mapping[str, Any]) -> str:
    crv = jwk.get("crv")
    if crv not in _ALG_BY_CURVE:
        raise ValueError("the EC JWK's 'crv' must be P-256, P-384 or P-521")
    return str(crv)


def _check_curve_fits(crv: str, alg: str) -> None:
    if _CURVE_BY_ALG[alg] != crv:
        raise ValueError(f"alg {alg} needs curve {_CURVE_BY_ALG[alg]}, the JWK's 'crv' is {crv}")


def _check_rsa_size(jwk: Mapping[str, Any]) -> None:
    # Checked before joserfc imports it, which would only warn about a short key.
    try:
        bits = base64_to_int(jwk["n"]).bit_length()
    except (KeyError, ValueError, TypeError):
        raise ValueError("the RSA JWK's 'n' is missing or not base64url") from None
    if bits < _MIN_RSA_BITS:
        raise ValueError(f"the RSA key has {bits} bits; HelseID needs at least {_MIN_RSA_BITS}")


def _optional_kid(jwk: Mapping[str, Any]) -> str | None:
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise ValueError("the JWK's 'kid' must be a non-empty string")
    return kid


def _import(jwk: Mapping[str, Any], kty: str, alg: str, kid: str | None) -> PrivateKey:
    # Rebuild the JWK from its key members plus our kid/alg/use: extras such as x5c or key_ops must not
    # leak into the public JWK we export.
    names = REQUIRED_MEMBERS[kty] + _PRIVATE_MEMBERS[kty]
    members = {name: jwk[name] for name in names if name in jwk}
    parameters: KeyParameters = {"alg": alg, "use": "sig"}
    if kid is not None:
        parameters["kid"] = kid
    try:
        native: PrivateKey = (ECKey if kty == "EC" else RSAKey).import_key(members, parameters)
    except JoseError as exc:
        # joserfc's descriptions name members ("'x' is required"), never their values.
        raise ValueError(f"the {kty} JWK is invalid: {exc.description}") from None
    except (ValueError, TypeError, KeyError):
        # The cryptography error could describe the numbers; only say that the key does not hold together.
        message = f"the {kty} JWK is not a valid private key (malformed or mismatched members)"
        raise ValueError(message) from None
    native.ensure_kid()
    return native
