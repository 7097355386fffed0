"""OpenID Connect Core 1.0 §3.1.3.7: ID token validation, and HelseID's user claims (helseid.md §5).

https://openid.net/specs/openid-connect-core-1_0.html. The signing keys come from the issuer's JWKS; the
caller fetches them, this module only checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from broker.errors import ProtocolError
from broker.model import UserIdentity

ID_TOKEN_ALGS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
PID: Final = "helseid://claims/identity/pid"
SECURITY_LEVEL: Final = "helseid://claims/identity/security_level"
ASSURANCE_LEVEL: Final = "helseid://claims/identity/assurance_level"
HPR_NUMBER: Final = "helseid://claims/hpr/hpr_number"
LOGIN_SCOPES: Final = (
    "openid",
    "profile",
    "offline_access",
    "helseid://scopes/identity/pid",
    "helseid://scopes/identity/security_level",
    "helseid://scopes/identity/assurance_level",
    "helseid://scopes/hpr/hpr_number",
)


def validate_id_token(
    id_token: str,
    keys: KeySet,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: datetime,
    leeway: timedelta = timedelta(seconds=30),
) -> dict[str, Any]:
    """The claims of an ID token whose signature, iss, aud, exp, iat and nonce are right."""
    try:
        claims = dict(jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGS)).claims)
    except (JoseError, ValueError) as exc:
        raise ProtocolError(f"the ID token does not verify ({type(exc).__name__})", issuer=issuer) from None
    _check(claims.get("iss") == issuer, "iss is not the issuer", issuer)
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    _check(client_id in audiences, "aud does not name this client", issuer)
    _check(len(audiences) == 1 or claims.get("azp") == client_id, "azp does not name this client", issuer)
    stamp = now.timestamp()
    _check(
        isinstance(claims.get("exp"), int | float) and claims["exp"] > stamp - leeway.total_seconds(),
        "the ID token has expired",
        issuer,
    )
    _check(
        isinstance(claims.get("iat"), int | float) and claims["iat"] < stamp + leeway.total_seconds(),
        "the ID token was issued in the future",
        issuer,
    )
    # §3.1.2.1: the nonce binds the ID token to the login this broker started.
    _check(claims.get("nonce") == nonce, "nonce does not match the login", issuer)
    _check(isinstance(claims.get("sub"), str) and bool(claims["sub"]), "sub is missing", issuer)
    return claims


def identity_from_claims(claims: Mapping[str, Any]) -> UserIdentity:
    def text(name: str) -> str | None:
        value = claims.get(name)
        return str(value) if isinstance(value, str | int) and value != "" else None

    return UserIdentity(
        subject=str(claims["sub"]),
        pid=text(PID),
        hpr_number=text(HPR_NUMBER),
        security_level=text(SECURITY_LEVEL),
        assurance_level=text(ASSURANCE_LEVEL),
        name=text("name"),
        given_name=text("given_name"),
        family_name=text("family_name"),
    )


def _check(condition: bool, problem: str, issuer: str) -> None:
    if not condition:
        raise ProtocolError(f"invalid ID token: {problem}", issuer=issuer)
