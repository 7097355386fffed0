"""Kubernetes service-account tokens: what a caller's projected token must carry to name it.

A projected service-account token (Kubernetes, "Service Account Token Volume Projection"; bound tokens,
KEP-1205) is a JWT (RFC 7519) signed by the cluster's service-account issuer: `iss` is the issuer, `aud` the
audiences the pod asked for (the broker's), `exp` and `nbf` bound it in time, and `sub` is
`system:serviceaccount:<namespace>:<name>`. The keys come from the issuer's JWKS; whoever calls this module
fetches them, it only checks.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from broker.errors import UnauthenticatedError

SUBJECT_PREFIX: Final = "system:serviceaccount:"
# The algorithms a Kubernetes API server signs with (RS256 by default, ES256 with an EC key); never "none"
# and never an HMAC, whose key would be the public key.
ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
# A projected token is about 1 KB; anything far larger is refused before it is parsed.
MAX_TOKEN_BYTES: Final = 16 * 1024
_MAX_LIFETIME_S: Final = 366 * 24 * 3600


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The service account a valid token names, and when the token stops being valid."""

    namespace: str
    name: str
    expires_at: datetime

    @property
    def key(self) -> str:
        """`<namespace>:<name>`, as callers are configured."""
        return f"{self.namespace}:{self.name}"


def is_jwt(value: str) -> bool:
    """A compact JWS (three base64url parts, a JSON header); a shared secret never looks like one."""
    return value.startswith("eyJ") and value.count(".") == 2


def key_id(token: str) -> str | None:
    """The `kid` of the token's header, unverified: only to know whether the issuer's keys must be fetched."""
    if len(token) > MAX_TOKEN_BYTES or not is_jwt(token):
        return None
    header_part = token.split(".", 1)[0]
    try:
        header: Any = json.loads(base64.urlsafe_b64decode(header_part + "=" * (-len(header_part) % 4)))
    except ValueError:
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) and kid else None


def validate_service_account_token(
    token: str, keys: KeySet, *, issuer: str, audience: str, now: datetime, leeway: timedelta
) -> ServiceAccount:
    """The service account of a token whose signature, kid, iss, aud, exp, nbf and sub are right."""
    kid = key_id(token)
    if kid is None:
        raise UnauthenticatedError("service-account token: not a signed JWT with a kid, or too large")
    try:
        keys.get_by_kid(kid)
    except (JoseError, ValueError):
        raise UnauthenticatedError(
            "service-account token: signed by a key the issuer does not publish"
        ) from None
    try:
        claims: dict[str, Any] = dict(jwt.decode(token, keys, algorithms=list(ALGORITHMS)).claims)
    except (JoseError, ValueError) as exc:
        raise UnauthenticatedError(f"service-account token: does not verify ({type(exc).__name__})") from None
    _check(claims.get("iss") == issuer, "iss is not the configured issuer")
    audiences = claims.get("aud")
    _check(
        audience in (audiences if isinstance(audiences, list) else [audiences]),
        "aud does not name the broker",
    )
    stamp, slack = now.timestamp(), leeway.total_seconds()
    expires: Any = claims.get("exp")
    _check(_is_number(expires) and expires > stamp - slack, "it has expired (exp)")
    not_before: Any = claims.get("nbf")
    _check(
        not_before is None or (_is_number(not_before) and not_before <= stamp + slack), "not valid yet (nbf)"
    )
    # Capped so an absurd exp (1e300, inf) cannot overflow the datetime; the cap only shortens caching.
    expires_at = datetime.fromtimestamp(min(expires, stamp + _MAX_LIFETIME_S), UTC)
    return ServiceAccount(*_subject(claims.get("sub")), expires_at=expires_at)


def _subject(sub: Any) -> tuple[str, str]:
    _check(isinstance(sub, str) and sub.startswith(SUBJECT_PREFIX), "sub is not a service account")
    namespace, _, name = sub[len(SUBJECT_PREFIX) :].partition(":")
    _check(bool(namespace) and bool(name) and ":" not in name, "sub is not system:serviceaccount:<ns>:<name>")
    return namespace, name


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check(condition: bool, problem: str) -> None:
    if not condition:
        raise UnauthenticatedError(f"service-account token: {problem}")
