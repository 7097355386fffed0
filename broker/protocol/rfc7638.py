"""RFC 7638: JSON Web Key (JWK) Thumbprint. https://www.rfc-editor.org/rfc/rfc7638

Implements §3 (the thumbprint computation) with the required members of §3.2; the hashing is joserfc's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from joserfc import jwk as joserfc_jwk

# RFC 7638 §3.2: only these members take part, in lexicographic order; for EC and RSA they are exactly the
# public members, which is why `keys.py` also uses this table to strip a JWK down to its public part.
REQUIRED_MEMBERS: Final[Mapping[str, tuple[str, ...]]] = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
    "oct": ("k", "kty"),
}


def required_members(jwk: Mapping[str, Any]) -> dict[str, str]:
    """The RFC 7638 §3.2 required members of `jwk`; ValueError when its `kty` is unknown or one is missing."""
    kty = jwk.get("kty")
    names = REQUIRED_MEMBERS.get(kty) if isinstance(kty, str) else None
    if names is None:
        raise ValueError("the JWK has no known 'kty' (EC, RSA, OKP or oct)")
    members = {name: jwk.get(name) for name in names}
    missing = [name for name, value in members.items() if not isinstance(value, str) or not value]
    if missing:
        raise ValueError(f"the {kty} JWK lacks the member(s) {', '.join(missing)}")
    return {name: str(value) for name, value in members.items()}


def jwk_thumbprint(public_jwk: Mapping[str, Any]) -> str:
    """The base64url SHA-256 thumbprint of a JWK (RFC 7638 §3.1), as DPoP's `jkt` uses it (RFC 9449 §6)."""
    return joserfc_jwk.thumbprint(required_members(public_jwk))
