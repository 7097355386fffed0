"""Signed request objects (JAR, RFC 9101) sent in the ``request`` parameter of a pushed request.

HelseID's rules (ATL pageId=235339812): signed by the client's registered key with an approved
asymmetric algorithm, ``iss`` = client_id, ``aud`` = the issuer, ``exp`` at most 60 s after ``nbf`` /
``iat``. The object may carry ``authorization_details`` (the org structure of ``assertion_details``):
HelseID's way to name the org unit at login.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key

from .algorithms import APPROVED_ALGORITHMS, verifier_registry
from .details import ASSERTION_DETAILS, AUTHORIZATION_DETAILS
from .errors import INVALID_REQUEST_OBJECT, OAuthError
from .registry import RegisteredClient
from .replay import ReplayCache
from .timing import CLOCK_SKEW_S, Clock, is_numeric_date

MAX_REQUEST_OBJECT_LIFETIME_S = 60
# RFC 9101 §10.8 recommends this typ; HelseID's samples send plain JWTs, so JWT (or none) passes too.
_ACCEPTED_TYPS = frozenset({"oauth-authz-req+jwt", "jwt"})
_JWT_CLAIMS = frozenset({"iss", "aud", "exp", "nbf", "iat", "jti", "sub"})


@dataclass(frozen=True)
class RequestObject:
    """The authorization parameters of a verified request object."""

    params: dict[str, str]
    resources: tuple[str, ...] | None  # None: the object has no `resource`, keep the form's
    authorization_details: Any  # the raw claim, or None


class RequestObjectVerifier:
    def __init__(self, *, issuer: str, clock: Clock) -> None:
        self._issuer = issuer
        self._clock = clock
        self._jose = verifier_registry()
        self._spent = ReplayCache(clock)

    def verify(self, request: str, client: RegisteredClient) -> RequestObject:
        """Verify a request object of ``client``, or raise ``invalid_request_object``."""
        try:
            compact = jws.extract_compact(request.encode("ascii"), registry=self._jose)
        except (JoseError, ValueError, UnicodeError):
            raise _fail(
                "the request object must be a signed JWT (compact JWS; no unsigned or encrypted)"
            ) from None
        header = compact.headers()
        key = _key_of(header, client)
        try:
            valid = jws.validate_compact(compact, key, algorithms=[header["alg"]], registry=self._jose)
        except (JoseError, ValueError):
            valid = False
        if not valid:
            raise _fail("request object signature does not verify with the client's registered key")
        claims = _payload_object(compact.payload)
        self._check_claims(claims, client)
        jti = claims.get("jti")
        if jti is not None:
            if not isinstance(jti, str) or not jti:
                raise _fail("request object jti must be a non-empty string")
            if self._spent.seen((client.client_id, jti)):
                raise _fail("request object jti was already used")
            self._spent.remember((client.client_id, jti), float(claims["exp"]) + CLOCK_SKEW_S)
        return _parameters(claims)

    def _check_claims(self, claims: Mapping[str, Any], client: RegisteredClient) -> None:
        if claims.get("iss") != client.client_id:
            raise _fail("request object iss must be the client_id")
        if "client_id" in claims and claims["client_id"] != client.client_id:
            raise _fail("request object client_id does not match the authenticated client")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self._issuer not in audiences:
            raise _fail("request object aud must be the issuer")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not is_numeric_date(exp):
            raise _fail("request object must carry a numeric exp")
        starts = [t for t in (iat, nbf) if t is not None]
        if not starts:
            raise _fail("request object must carry nbf or iat")
        if not all(is_numeric_date(t) for t in starts):
            raise _fail("request object nbf and iat must be numeric")
        if any(exp - t > MAX_REQUEST_OBJECT_LIFETIME_S for t in starts):
            raise _fail(f"request object exp may be at most {MAX_REQUEST_OBJECT_LIFETIME_S} s after nbf/iat")
        now = self._clock()
        if exp <= now - CLOCK_SKEW_S:
            raise _fail("request object has expired")
        if any(t > now + CLOCK_SKEW_S for t in starts):
            raise _fail("request object is not valid yet (nbf/iat in the future)")


def _key_of(header: Mapping[str, Any], client: RegisteredClient) -> Key:
    if header.get("alg") not in APPROVED_ALGORITHMS:
        raise _fail(f"request object alg must be one of {', '.join(APPROVED_ALGORITHMS)}")
    if "b64" in header or "crit" in header:
        raise _fail("request object must be a plain compact JWS (no b64/crit)")
    typ = header.get("typ")
    if typ is not None and (
        not isinstance(typ, str) or typ.lower().removeprefix("application/") not in _ACCEPTED_TYPS
    ):
        raise _fail("request object typ must be oauth-authz-req+jwt or JWT")
    kid = header.get("kid")
    if kid is None:
        keys = client.verification_keys()
        if len(keys) != 1:
            raise _fail("request object header needs the kid of a registered key")
        return keys[0]
    key = client.verification_key(kid) if isinstance(kid, str) else None
    if key is None:
        raise _fail(f"kid is not a registered key of client {client.client_id!r}")
    return key


def _parameters(claims: Mapping[str, Any]) -> RequestObject:
    if "request" in claims or "request_uri" in claims:
        raise _fail("a request object must not hold request or request_uri")
    if ASSERTION_DETAILS in claims:
        raise _fail(
            f"a request object carries org details as {AUTHORIZATION_DETAILS}, not {ASSERTION_DETAILS}"
        )
    params: dict[str, str] = {}
    resources: tuple[str, ...] | None = None
    for name, value in claims.items():
        if name in _JWT_CLAIMS or name == AUTHORIZATION_DETAILS:
            continue
        if name == "resource":
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str) and v for v in values):
                raise _fail("request object resource must be a string or a list of strings")
            resources = tuple(values)
        elif isinstance(value, str):
            params[name] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            params[name] = str(value)  # max_age and the like
        else:
            raise _fail(f"request object parameter {name!r} must be a string")
    return RequestObject(
        params=params, resources=resources, authorization_details=claims.get(AUTHORIZATION_DETAILS)
    )


def _payload_object(payload: bytes | None) -> dict[str, Any]:
    try:
        claims = json.loads(payload or b"")
    except ValueError:
        raise _fail("request object payload is not JSON") from None
    if not isinstance(claims, dict):
        raise _fail("request object payload is not a JSON object")
    return claims


def _fail(description: str) -> OAuthError:
    return OAuthError(INVALID_REQUEST_OBJECT, description)
