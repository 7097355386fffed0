"""The signing algorithms HelseID approves, and the checks every key we verify with must pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey, import_key

# HelseID's approved list (SMP AlgorithmValidator.cs, JAVA Algorithm.java): asymmetric only, so no HS*/none.
APPROVED_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)

# HelseID's key generator refuses smaller RSA keys; refusing them here catches a weak test key early.
MIN_RSA_BITS = 2048

# Members that only a private JWK carries (RFC 7518 §6.2.2, §6.3.2, §6.4). A registered key or a DPoP
# proof's `jwk` holding any of them is a leaked private key, which we refuse rather than silently strip.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def verifier_registry(*, max_header_bytes: int | None = None) -> jws.JWSRegistry:
    """A joserfc registry that accepts only the approved algorithms.

    ``strict_check_header`` is off because HelseID (a .NET server) ignores header members it does not
    know; rejecting them would make the dev authority stricter than the real one in a way that teaches
    nothing. ``max_header_bytes`` raises joserfc's 512-byte cap on the encoded header where a caller
    needs that (DPoP proofs embed the public key, and an RSA key alone is bigger than 512 bytes).
    """
    registry = jws.JWSRegistry(algorithms=list(APPROVED_ALGORITHMS), strict_check_header=False)
    if max_header_bytes is not None:
        registry.max_header_length = max_header_bytes
    return registry


def import_public_jwk(data: Any) -> Key:
    """Import a public RSA or EC JWK, or raise ``ValueError`` saying what is wrong with it."""
    if not isinstance(data, Mapping):
        raise ValueError("a JWK must be a JSON object")
    private = sorted(_PRIVATE_MEMBERS & set(data.keys()))
    if private:
        raise ValueError(f"the JWK holds private key members {private}; only public keys are allowed")
    if data.get("kty") not in ("RSA", "EC"):
        raise ValueError("the JWK's kty must be RSA or EC")
    try:
        key = import_key(dict(data))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError("the JWK is not a valid public key") from exc
    if isinstance(key, RSAKey) and key.public_key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    if not isinstance(key, RSAKey | ECKey):
        raise ValueError("the JWK's kty must be RSA or EC")
    return key
