"""Client authentication by ``private_key_jwt``: verifying a client assertion as HelseID does."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

from .algorithms import APPROVED_ALGORITHMS, verifier_registry
from .errors import INVALID_CLIENT, OAuthError
from .registry import ClientRegistry, RegisteredClient
from .replay import ReplayCache
from .timing import CLOCK_SKEW_S, Clock, is_numeric_date

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_TYP = "client-authentication+jwt"
# HelseID caps an assertion's lifetime (exp - iat) at 60 s (ATL client-assertion page).
MAX_ASSERTION_LIFETIME_S = 60


@dataclass(frozen=True)
class AuthenticatedClient:
    """A client whose assertion verified; its ``jti`` is not spent until :meth:`AssertionVerifier.spend`."""

    client: RegisteredClient
    claims: Mapping[str, Any]
    jti: str
    remember_until: float
    kid: str = ""  # the registered key that verified it


class AssertionVerifier:
    """Checks the client assertion of a token request and keeps each assertion single-use."""

    def __init__(
        self,
        *,
        registry: ClientRegistry,
        issuer: str,
        token_endpoint: str,
        clock: Clock,
    ) -> None:
        self._registry = registry
        # The NHN libraries send the issuer as aud, the HelseID docs' example the token endpoint URL;
        # HelseID appears to accept both, so we do too, but nothing looser (no trailing-slash variants).
        self._audiences = frozenset({issuer, token_endpoint})
        self._clock = clock
        self._jose = verifier_registry()
        self._spent = ReplayCache(clock)

    def verify(self, form: Mapping[str, str], *, endpoint: str | None = None) -> AuthenticatedClient:
        """Authenticate the client of a request, or raise ``invalid_client``.

        ``aud`` may be the issuer or the token endpoint URL, and also ``endpoint`` when given (the URL
        of the PAR or revocation endpoint the assertion was sent to, as RFC 9126 §2 allows). One replay
        cache serves every endpoint, so an assertion is single-use across all of them.

        The ``jti`` is checked but not spent here, so that a request turned away only for want of a
        DPoP nonce does not burn the assertion (the Java library resends the same one on that retry).
        """
        if "client_secret" in form:
            raise _fail("only private_key_jwt client authentication is accepted")
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise _fail(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
        assertion = form.get("client_assertion")
        if not assertion:
            raise _fail("client_assertion is missing")
        try:
            compact = jws.extract_compact(assertion.encode("ascii"), registry=self._jose)
        except (JoseError, ValueError, UnicodeError):
            raise _fail("client_assertion is not a compact JWS") from None

        header = compact.headers()
        _check_header(header)
        claims = _payload_object(compact.payload)

        client = self._client_of(claims, form)
        key = client.verification_key(header["kid"])
        if key is None:
            raise _fail(f"kid is not a registered key of client {client.client_id!r}")
        try:
            valid = jws.validate_compact(compact, key, algorithms=[header["alg"]], registry=self._jose)
        except (JoseError, ValueError):
            valid = False
        if not valid:
            raise _fail("client assertion signature does not verify with the registered key")

        self._check_claims(claims, client, endpoint)
        jti = claims["jti"]
        if self._spent.seen((client.client_id, jti)):
            raise _fail("client assertion jti was already used; build a fresh assertion for every request")
        return AuthenticatedClient(
            client=client,
            claims=claims,
            jti=jti,
            remember_until=float(claims["exp"]) + CLOCK_SKEW_S,
            kid=header["kid"],
        )

    def spend(self, authenticated: AuthenticatedClient) -> None:
        """Mark the assertion used; a later request with the same ``jti`` is a replay."""
        key = (authenticated.client.client_id, authenticated.jti)
        self._spent.remember(key, authenticated.remember_until)

    def _client_of(self, claims: Mapping[str, Any], form: Mapping[str, str]) -> RegisteredClient:
        iss = claims.get("iss")
        if not isinstance(iss, str) or not iss:
            raise _fail("client assertion has no iss")
        if "client_id" in form and form["client_id"] != iss:
            raise _fail("client_id does not match the client assertion's iss")
        client = self._registry.get(iss)
        if client is None:
            raise _fail(f"unknown client {iss!r}")
        return client

    def _check_claims(
        self, claims: Mapping[str, Any], client: RegisteredClient, endpoint: str | None
    ) -> None:
        if claims.get("sub") != client.client_id:
            raise _fail("client assertion sub must equal iss (the client_id)")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        accepted = self._audiences | {endpoint} if endpoint is not None else self._audiences
        if not any(isinstance(a, str) and a in accepted for a in audiences):
            where = " or this endpoint's URL" if endpoint is not None else ""
            raise _fail(f"client assertion aud must be the issuer (or the token endpoint URL{where})")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _fail("client assertion has no jti")

        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not is_numeric_date(exp) or not is_numeric_date(iat):
            raise _fail("client assertion must carry numeric exp and iat")
        if nbf is not None and not is_numeric_date(nbf):
            raise _fail("client assertion nbf must be numeric")
        if exp - iat > MAX_ASSERTION_LIFETIME_S:
            raise _fail(f"client assertion lifetime (exp - iat) exceeds {MAX_ASSERTION_LIFETIME_S} s")
        now = self._clock()
        if exp <= now - CLOCK_SKEW_S:
            raise _fail("client assertion has expired")
        if iat > now + CLOCK_SKEW_S:
            raise _fail("client assertion iat is in the future")
        if nbf is not None and nbf > now + CLOCK_SKEW_S:
            raise _fail("client assertion is not valid yet (nbf)")


def _check_header(header: Mapping[str, Any]) -> None:
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") != ASSERTION_TYP:
        raise _fail(f"client assertion typ must be {ASSERTION_TYP}")
    if header.get("alg") not in APPROVED_ALGORITHMS:
        raise _fail(f"client assertion alg must be one of {', '.join(APPROVED_ALGORITHMS)}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _fail("client assertion header has no kid")
    if "b64" in header or "crit" in header:
        raise _fail("client assertion must be a plain compact JWS (no b64/crit)")


def _payload_object(payload: bytes | None) -> dict[str, Any]:
    try:
        claims = json.loads(payload or b"")
    except ValueError:
        raise _fail("client assertion payload is not JSON") from None
    if not isinstance(claims, dict):
        raise _fail("client assertion payload is not a JSON object")
    return claims


def _fail(description: str) -> OAuthError:
    return OAuthError(INVALID_CLIENT, description)
