"""Signing keys: loading, generating and exporting the private JWKs the broker signs with, and signing.

HelseID accepts RS256/384/512, PS256/384/512 and ES256/384/512 for client assertions and DPoP proofs, with EC
keys on P-256/P-384/P-521 and RSA keys of at least 2048 bits (helseid.md §2; RFC 7518 §3.1 names the
algorithms, RFC 7517 §4 the JWK members).

Every signature goes through a `Signer` (model.py): `MemorySigner` holds a private JWK in process memory and
signs with joserfc's algorithm implementations; an HSM signer (`broker/signers/pkcs11.py`) signs inside the
token. `sign_jwt` assembles the compact JWS (RFC 7515 §7.1) around the signer's signature, so the signer
only ever sees the signing input; a key's encoded header can be computed once and reused (DPoP proofs).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Final

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, KeyParameters, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.util import base64_to_int

from broker.model import Signer, SigningKey
from broker.protocol.rfc7638 import REQUIRED_MEMBERS

PrivateKey = ECKey | RSAKey

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

# One registry, built once: the explicit allowlist of algorithms an in-memory key signs with, and no
# per-call registry construction on the DPoP hot path.
_SIGNING_REGISTRY: Final = JWSRegistry(algorithms=list(SUPPORTED_ALGS))


class MemorySigner:
    """A private JWK in process memory (from a file or an environment variable, or generated)."""

    __slots__ = ("_algorithm", "_jwk", "_public", "alg", "kid")

    def __init__(self, jwk: PrivateKey, alg: str) -> None:
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f"alg must be one of {', '.join(SUPPORTED_ALGS)}")
        kid = jwk.kid
        assert kid is not None  # _import and generate_signing_key always set one
        self._jwk = jwk
        self._algorithm = _SIGNING_REGISTRY.get_alg(alg)
        members = jwk.dict_value
        self._public = {name: str(members[name]) for name in REQUIRED_MEMBERS[jwk.key_type]}
        self.alg = alg
        self.kid = kid

    def public_jwk(self) -> Mapping[str, str]:
        return self._public

    def sign(self, signing_input: bytes) -> bytes:
        return self._algorithm.sign(signing_input, self._jwk)

    def private_jwk(self) -> dict[str, Any]:
        """The private JWK, for `keygen` to write it once; nothing else reads it."""
        return dict(self._jwk.as_dict(private=True, kid=self.kid, alg=self.alg, use="sig"))


def from_signer(signer: Signer, *, where: str = "memory") -> SigningKey:
    """The `SigningKey` of any signer: its public members and RFC 7638 thumbprint taken from it."""
    if signer.alg not in SUPPORTED_ALGS:
        raise ValueError(f"alg must be one of {', '.join(SUPPORTED_ALGS)}")
    public = dict(signer.public_jwk())
    members: dict[str, str | list[str]] = dict(public)
    thumbprint = JWKRegistry.import_key(members).thumbprint()
    return SigningKey(signer, signer.alg, signer.kid, thumbprint, public, where)


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
    """The private JWK with `kid`, `alg` and `use: sig`, for storing a key kept in memory (never into the
    repository); ValueError for a key that lives elsewhere (an HSM key cannot be read)."""
    if not isinstance(key.signer, MemorySigner):
        raise ValueError(f"the key {key.kid!r} lives in {key.where}; its private part cannot be exported")
    return key.signer.private_jwk()


def public_jwk(key: SigningKey) -> dict[str, Any]:
    """The public JWK with `kid`, `alg` and `use: sig`, as registered in HelseID Selvbetjening."""
    return {**key.public, "kid": key.kid, "alg": key.alg, "use": "sig"}


def public_members(key: SigningKey) -> dict[str, str]:
    """Only the public key members (kty, crv/x/y or e/n), as a DPoP proof's `jwk` header carries them."""
    return dict(key.public)


def sign_jwt(key: SigningKey, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """A JWS-compact JWT over `claims`, signed with `key` (RFC 7515 §7.1); `header` must carry its `alg`."""
    if header.get("alg") != key.alg:
        raise ValueError(f"the header's alg must be the key's ({key.alg})")
    return sign_compact(key, encode_segment(header), claims)


def sign_compact(key: SigningKey, header_segment: bytes, claims: Mapping[str, Any]) -> str:
    """As `sign_jwt`, with the header already encoded (a key's DPoP header is encoded once)."""
    signing_input = header_segment + b"." + encode_segment(claims)
    signature = key.signer.sign(signing_input)
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode("ascii")


def encode_segment(part: Mapping[str, Any]) -> bytes:
    """base64url(UTF-8(JSON)) without padding (RFC 7515 §2, §7.1), compact JSON."""
    data = json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _wrap(native: PrivateKey, alg: str) -> SigningKey:
    return from_signer(MemorySigner(native, alg))


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
