"""The user-login state a running authority keeps in memory: pushed requests, codes, refresh tokens.

Nothing here is written to disk; a restarted authority forgets every login (and has a new signing key,
so its old tokens stop verifying anyway). Entries are dropped once they can no longer be used.

Refresh tokens are opaque random strings, stored by their SHA-256 only. They come in families: the
refresh token issued at code redemption starts a family, and each refresh replaces the family's current
token by a new one (rotation). A family has an absolute expiry, set at login; refreshing does not
extend it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Hashable
from dataclasses import dataclass, field

from .attest import Attest
from .details import RequestedDetails
from .replay import ReplayCache
from .timing import Clock
from .users import TestUser

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


@dataclass(frozen=True)
class PushedRequest:
    """An authorization request accepted at PAR, waiting for the browser to reach /connect/authorize."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    code_challenge: str
    state: str | None
    nonce: str | None
    user: TestUser
    details: RequestedDetails
    dpop_jkt: str | None
    expires_at: float
    # The trust-framework attest of the request object: it sticks to every access token of the login.
    attest: Attest | None = None


@dataclass
class RefreshFamily:
    """One login's chain of refresh tokens, and the access tokens issued along it."""

    family_id: str
    client_id: str
    user: TestUser
    sid: str
    auth_time: int
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    details: RequestedDetails
    jkt: str | None
    nonce: str | None  # of the login; refreshed ID tokens repeat it (OIDC Core §12.2)
    expires_at: float
    revoked: bool = False
    access_tokens: list[tuple[str, float]] = field(default_factory=list)  # (jti, exp)
    attest: Attest | None = None  # of the login's request object, for every refreshed token too


@dataclass
class AuthorizationCode:
    """A code handed out at /connect/authorize. ``used`` is set by the first redemption attempt."""

    request: PushedRequest
    sid: str
    auth_time: int
    expires_at: float
    used: bool = False
    family: RefreshFamily | None = None
    access_tokens: list[tuple[str, float]] = field(default_factory=list)  # (jti, exp)


@dataclass
class _RefreshEntry:
    family: RefreshFamily
    used: bool = False


class LoginStore:
    """Pushed requests, codes, refresh-token families and revoked access tokens of one authority."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pushed: dict[str, PushedRequest] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._refresh: dict[str, _RefreshEntry] = {}
        self._revoked_access = ReplayCache(clock)

    # --- PAR and authorize ---------------------------------------------------------------------------

    def push(self, request: PushedRequest) -> str:
        self._prune()
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
        self._pushed[request_uri] = request
        return request_uri

    def pushed(self, request_uri: str) -> PushedRequest | None:
        """The pushed request, if known and not expired (it stays until :meth:`take_pushed`)."""
        self._prune()
        return self._pushed.get(request_uri)

    def take_pushed(self, request_uri: str) -> None:
        """Use the request_uri up: it is single-use."""
        self._pushed.pop(request_uri, None)

    def new_code(self, request: PushedRequest, *, sid: str, auth_time: int, lifetime_s: float) -> str:
        self._prune()
        code = secrets.token_urlsafe(32)
        self._codes[_digest(code)] = AuthorizationCode(
            request=request, sid=sid, auth_time=auth_time, expires_at=self._clock() + lifetime_s
        )
        return code

    def code(self, code: str) -> AuthorizationCode | None:
        """The code's record while it may still be redeemed or its replay still detected."""
        self._prune()
        record = self._codes.get(_digest(code))
        if record is None:
            return None
        # An unused code lives until its expiry; a used one is kept so a replay can be detected and
        # the tokens issued from it revoked (RFC 6749 §4.1.2), but a replay after expiry is simply unknown.
        return record if record.expires_at > self._clock() else None

    # --- refresh tokens ------------------------------------------------------------------------------

    def new_family(self, family: RefreshFamily) -> str:
        """Start a refresh-token family; returns its first refresh token."""
        return self._new_refresh_token(family)

    def refresh_entry(self, token: str) -> tuple[RefreshFamily, bool] | None:
        """The family of a refresh token and whether this token was already used, if known."""
        self._prune()
        entry = self._refresh.get(_digest(token))
        return (entry.family, entry.used) if entry is not None else None

    def rotate(self, token: str) -> str:
        """Mark a refresh token used and return its family's new one."""
        entry = self._refresh[_digest(token)]
        entry.used = True
        return self._new_refresh_token(entry.family)

    def revoke_family(self, family: RefreshFamily) -> None:
        """Kill every refresh token of the family and every access token issued along it."""
        family.revoked = True
        self._revoke_access_tokens(family.access_tokens)

    def revoke_code(self, record: AuthorizationCode) -> None:
        """A replayed code: revoke what was issued from it (RFC 6749 §4.1.2)."""
        self._revoke_access_tokens(record.access_tokens)
        if record.family is not None:
            self.revoke_family(record.family)

    # --- access tokens -------------------------------------------------------------------------------

    def revoke_access_token(self, jti: str, exp: float) -> None:
        self._revoked_access.remember(jti, exp)

    def access_token_revoked(self, jti: Hashable) -> bool:
        return self._revoked_access.seen(jti)

    # --- housekeeping --------------------------------------------------------------------------------

    def _new_refresh_token(self, family: RefreshFamily) -> str:
        token = secrets.token_urlsafe(32)
        self._refresh[_digest(token)] = _RefreshEntry(family)
        return token

    def _revoke_access_tokens(self, tokens: list[tuple[str, float]]) -> None:
        for jti, exp in tokens:
            self.revoke_access_token(jti, exp)

    def _prune(self) -> None:
        now = self._clock()
        for uri in [u for u, r in self._pushed.items() if r.expires_at <= now]:
            del self._pushed[uri]
        for digest in [d for d, c in self._codes.items() if c.expires_at <= now]:
            del self._codes[digest]
        for digest in [d for d, e in self._refresh.items() if e.family.expires_at <= now]:
            del self._refresh[digest]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
