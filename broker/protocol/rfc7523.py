"""RFC 7523: JSON Web Token (JWT) Profile for OAuth 2.0 Client Authentication and Authorization Grants.
https://www.rfc-editor.org/rfc/rfc7523

Implements §2.2 (a JWT for client authentication, "private_key_jwt") and §3 (its claims: iss, sub, aud,
exp, nbf, iat, jti), with the `typ` of draft-ietf-oauth-rfc7523bis (`client-authentication+jwt`) that
HelseID's libraries send, and HelseID's `assertion_details` claim (helseid.md §2-3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from broker.model import SigningKey
from broker.protocol import keys
from broker.protocol.helseid import ASSERTION_DETAILS_CLAIM
from broker.protocol.rfc7519 import numeric_date

CLIENT_ASSERTION_JWT_TYPE: Final = "client-authentication+jwt"
# HelseID refuses an assertion whose exp is more than 60 s after its iat.
MAX_ASSERTION_LIFETIME: Final = timedelta(seconds=60)


def build_client_assertion(
    *,
    client_id: str,
    audience: str,
    key: SigningKey,
    now: datetime,
    jti: str,
    lifetime: timedelta = timedelta(seconds=30),
    details: Sequence[Mapping[str, Any]] = (),
) -> str:
    """A signed client assertion (RFC 7523 §3) for one token-endpoint call.

    `audience` is the issuer exactly as discovery gives it; `jti` must be new for every call, because HelseID
    accepts each assertion once. `details` go, as a JSON array, into `assertion_details`.
    """
    _check_lifetime(lifetime)
    for name, value in (("client_id", client_id), ("audience", audience), ("jti", jti)):
        if not value:
            raise ValueError(f"{name} must not be empty")
    issued_at = numeric_date(now)
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": jti,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(lifetime.total_seconds()),
    }
    if details:
        claims[ASSERTION_DETAILS_CLAIM] = [dict(item) for item in details]
    header = {"typ": CLIENT_ASSERTION_JWT_TYPE, "alg": key.alg, "kid": key.kid}
    return keys.sign_jwt(key, header, claims)


def _check_lifetime(lifetime: timedelta) -> None:
    if lifetime < timedelta(seconds=1) or lifetime > MAX_ASSERTION_LIFETIME:
        raise ValueError("an assertion lifetime must be between 1 and 60 seconds (HelseID refuses longer)")
