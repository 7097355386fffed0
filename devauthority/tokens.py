"""The authority's signing key, its JWKS, and the access tokens it mints."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from .attest import CLAIM_AUTHORIZATION_DETAILS, Attest
from .details import RequestedDetails
from .registry import RegisteredClient
from .timing import CLOCK_SKEW_S, Clock, is_numeric_date

SIGNING_ALG = "RS256"  # what HelseID's JWKS advertises
ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - RFC 9068, so an API can tell an access token from other JWTs
ID_TOKEN_TYP = "JWT"  # noqa: S105 - a JOSE typ, not a secret

CLAIM_CLIENT_AMR = "client_amr"
CLAIM_ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
CLAIM_ORGNR_CHILD = "helseid://claims/client/claims/orgnr_child"
CLAIM_ORGNR_SUPPLIER = "helseid://claims/client/claims/orgnr_supplier"
CLAIM_TENANCY = "helseid://claims/client/client_tenancy"
CLAIM_JOURNAL_ID = "nhn:sfm:journal-id"
CLAIM_SFM_ID = "e-helse:sfm.api/client/claims/sfm-id"
SFM_SCOPE_PREFIX = "e-helse:sfm.api/"

TENANCY_VALUES = {"single": "single-tenant", "multi": "multi-tenant"}


@dataclass(frozen=True)
class TokenContents:
    """Everything a grant decided about one access token."""

    client: RegisteredClient
    scopes: Sequence[str]
    audience: str | Sequence[str] | None
    details: RequestedDetails
    jkt: str | None
    # A logged-in user's claims (sub, pid, hpr_number, sid, ...); empty for a machine token.
    identity: Mapping[str, Any] = field(default_factory=dict)
    # The trust-framework attest of a user token (attest.py); None: the token has no authorization_details.
    attest: Attest | None = None


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    token_type: str
    expires_in: int
    jti: str
    expires_at: int


class TokenIssuer:
    """Mints access tokens as HelseID-shaped JWTs, signed with a key generated at start.

    The key lives only in this process's memory: a restarted authority has a new key, so every old
    token stops verifying, which is what a test of key rollover wants anyway.
    """

    def __init__(self, *, issuer: str, lifetime_s: int, clock: Clock) -> None:
        if lifetime_s < 1:
            raise ValueError("the token lifetime must be at least one second")
        self._issuer = issuer
        self._lifetime_s = lifetime_s
        self._clock = clock
        self._key = RSAKey.generate_key(2048, parameters={"alg": SIGNING_ALG, "use": "sig"}, auto_kid=True)

    @property
    def lifetime_s(self) -> int:
        return self._lifetime_s

    def jwks(self) -> dict[str, Any]:
        """The public JWKS, as served at ``jwks_uri``."""
        return {"keys": [self._key.as_dict(private=False)]}

    @property
    def issuer(self) -> str:
        return self._issuer

    def issue(self, contents: TokenContents) -> IssuedToken:
        claims: dict[str, Any] = {
            "client_id": contents.client.client_id,
            "scope": list(contents.scopes),  # HelseID sends a JSON array, not RFC 9068's string
            CLAIM_CLIENT_AMR: "private_key_jwt",
            CLAIM_TENANCY: TENANCY_VALUES[contents.client.tenancy],
        }
        if contents.audience is not None:
            claims["aud"] = (
                contents.audience if isinstance(contents.audience, str) else list(contents.audience)
            )
        claims.update(_org_claims(contents))
        if contents.attest is not None:
            claims[CLAIM_AUTHORIZATION_DETAILS] = contents.attest.claim()
        claims.update({k: v for k, v in contents.identity.items() if k not in claims})
        return self.mint(claims, jkt=contents.jkt)

    def mint(self, claims: Mapping[str, Any], *, jkt: str | None) -> IssuedToken:
        """Sign an access token with these claims, adding iss, the times, a jti and the DPoP binding."""
        now = int(self._clock())
        jti = secrets.token_hex(16)
        payload: dict[str, Any] = {
            **claims,
            "iss": self._issuer,
            "iat": now,
            "nbf": now,
            "exp": now + self._lifetime_s,
            "jti": jti,
        }
        payload.pop("cnf", None)
        if jkt is not None:
            payload["cnf"] = {"jkt": jkt}
        header = {"alg": SIGNING_ALG, "kid": self._key.kid, "typ": ACCESS_TOKEN_TYP}
        token = jwt.encode(header, payload, self._key, algorithms=[SIGNING_ALG])
        return IssuedToken(
            access_token=token,
            token_type="DPoP" if jkt is not None else "Bearer",
            expires_in=self._lifetime_s,
            jti=jti,
            expires_at=now + self._lifetime_s,
        )

    def id_token(self, *, client_id: str, claims: Mapping[str, Any], access_token: str) -> str:
        """An OpenID Connect ID token for ``client_id`` (RS256, like HelseID's), with ``at_hash``."""
        now = int(self._clock())
        payload: dict[str, Any] = {
            **claims,
            "iss": self._issuer,
            "aud": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + self._lifetime_s,
            "jti": secrets.token_hex(16),
            "at_hash": _left_half_hash(access_token),
        }
        header = {"alg": SIGNING_ALG, "kid": self._key.kid, "typ": ID_TOKEN_TYP}
        return jwt.encode(header, payload, self._key, algorithms=[SIGNING_ALG])

    def verify_access_token(self, token: str) -> dict[str, Any] | None:
        """The claims of an access token this authority signed and that is still valid, else None."""
        try:
            decoded = jwt.decode(token, self._key, algorithms=[SIGNING_ALG])
        except (JoseError, ValueError, TypeError, UnicodeError):
            return None
        claims = dict(decoded.claims)
        now = self._clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if (
            decoded.header.get("typ") != ACCESS_TOKEN_TYP
            or claims.get("iss") != self._issuer
            or not isinstance(claims.get("jti"), str)
            or not is_numeric_date(exp)
            or exp <= now
            or (is_numeric_date(nbf) and nbf > now + CLOCK_SKEW_S)
        ):
            return None
        return claims


def _left_half_hash(token: str) -> str:
    """OIDC Core §3.1.3.6 at_hash for RS256: base64url of the left half of SHA-256 of the token."""
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def _org_claims(contents: TokenContents) -> dict[str, str]:
    client, details = contents.client, contents.details
    claims: dict[str, str] = {}
    if details.orgnr_parent is not None:
        claims[CLAIM_ORGNR_PARENT] = details.orgnr_parent
    if details.orgnr_child is not None:
        claims[CLAIM_ORGNR_CHILD] = details.orgnr_child
    # A multi-tenant token names the supplier (the client's own org) once it acts for a tenant; a token
    # asked for without orgs carries no org claims at all (LIB IHelseIdClientCredentialsFlow docs).
    if client.tenancy == "multi" and details.orgnr_parent is not None:
        claims[CLAIM_ORGNR_SUPPLIER] = client.organization_number
    if details.journal_id is not None:
        claims[CLAIM_JOURNAL_ID] = details.journal_id  # a plain string in the token, not the object
    if (
        client.tenancy == "single"
        and client.sfm_id is not None
        and any(s.startswith(SFM_SCOPE_PREFIX) for s in contents.scopes)
    ):
        claims[CLAIM_SFM_ID] = client.sfm_id
    return claims
