"""DPoP (RFC 9449) at the token endpoint: proof checks, server nonces, and the key thumbprint to bind."""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key

from .algorithms import APPROVED_ALGORITHMS, import_public_jwk, verifier_registry
from .errors import INVALID_DPOP_PROOF, USE_DPOP_NONCE, OAuthError
from .replay import ReplayCache
from .timing import CLOCK_SKEW_S, Clock, is_numeric_date

DPOP_TYP = "dpop+jwt"
# How far a proof's iat may be from our clock, either way (the brief's ±60 s; HelseID's own is unpublished).
PROOF_WINDOW_S = 60
# joserfc refuses encoded headers over 512 bytes by default, but a proof carries its public key in the
# header, and an RSA-2048 key alone encodes to more than that (RSA-4096: about 1 KB). 8 KiB admits any
# sane key while still bounding the work a hostile header can cause.
MAX_PROOF_HEADER_BYTES = 8192


class NonceKeeper:
    """Server-issued DPoP nonces that rotate every ``period_s``; the current and the previous are valid.

    Accepting the previous nonce means a client that fetched a nonce just before a rotation is not
    challenged again at once.
    """

    def __init__(self, *, period_s: float, clock: Clock) -> None:
        if period_s <= 0:
            raise ValueError("the nonce period must be positive")
        self._period = period_s
        self._clock = clock
        self._current = _fresh_nonce()
        self._previous: str | None = None
        self._since = clock()

    def current(self) -> str:
        self._rotate()
        return self._current

    def rotate_now(self) -> None:
        """A new nonce at once, and the previous one invalid (a test hook: a client must re-learn it)."""
        self._current = _fresh_nonce()
        self._previous = None
        self._since = self._clock()

    def is_valid(self, nonce: str) -> bool:
        self._rotate()
        candidates = [self._current] if self._previous is None else [self._current, self._previous]
        # Any equality check would do for a nonce; compare_digest costs nothing and leaks nothing.
        return any(hmac.compare_digest(nonce, c) for c in candidates)

    def _rotate(self) -> None:
        elapsed = self._clock() - self._since
        if elapsed < self._period:
            return
        periods = int(elapsed // self._period)
        # After more than one period nobody can still hold the old "current" legitimately.
        self._previous = self._current if periods == 1 else None
        self._current = _fresh_nonce()
        self._since += periods * self._period


@dataclass(frozen=True)
class VerifiedProof:
    """A DPoP proof that passed every check; ``jkt`` is the RFC 7638 thumbprint of its key."""

    jkt: str
    jti: str
    remember_until: float
    claims: dict[str, Any]


class DPoPVerifier:
    """Checks DPoP proofs sent to one URL (``htu``) of this authority."""

    def __init__(
        self,
        *,
        htu: str,
        nonces: NonceKeeper,
        clock: Clock,
        require_nonce: bool = True,
        window_s: float = PROOF_WINDOW_S,
    ) -> None:
        # The token endpoint demands a server nonce; PAR does not (RFC 9449 §10 leaves it to the server,
        # and a nonce there would only add a round trip before the user is even sent to log in).
        self._require_nonce = require_nonce
        self._window_s = window_s
        self._htu = normalize_htu(htu)
        self._nonces = nonces
        self._clock = clock
        self._jose = verifier_registry(max_header_bytes=MAX_PROOF_HEADER_BYTES)
        self._spent = ReplayCache(clock)

    def verify(self, proof: str, *, method: str, htu: str | None = None) -> VerifiedProof:
        """Verify a proof, or raise ``invalid_dpop_proof`` / ``use_dpop_nonce``. Does not spend its jti.

        ``htu`` is the request's URL where one verifier serves many (a resource server); default: the
        verifier's own."""
        try:
            compact = jws.extract_compact(proof.encode("ascii"), registry=self._jose)
        except (JoseError, ValueError, UnicodeError):
            raise _fail("the DPoP proof is not a compact JWS") from None
        header = compact.headers()
        key = _proof_key(header)
        try:
            valid = jws.validate_compact(compact, key, algorithms=[header["alg"]], registry=self._jose)
        except (JoseError, ValueError):
            valid = False
        if not valid:
            raise _fail("DPoP proof signature does not verify with its jwk")

        claims = _payload_object(compact.payload)
        jti, iat = self._check_claims(claims, method, self._htu if htu is None else normalize_htu(htu))
        # The nonce is checked after everything else, so a challenged client only lacked the nonce.
        nonce = claims.get("nonce")
        if self._require_nonce and (not isinstance(nonce, str) or not self._nonces.is_valid(nonce)):
            raise OAuthError(
                USE_DPOP_NONCE,
                "Authorization server requires nonce in DPoP proof",
                headers={"DPoP-Nonce": self._nonces.current()},
            )
        if self._spent.seen(jti):
            raise _fail("DPoP proof jti was already used; sign a fresh proof for every request")
        until = iat + self._window_s + CLOCK_SKEW_S
        return VerifiedProof(jkt=key.thumbprint(), jti=jti, remember_until=until, claims=claims)

    def _check_claims(self, claims: dict[str, Any], method: str, expected_htu: str) -> tuple[str, float]:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _fail("DPoP proof has no jti")
        if claims.get("htm") != method:
            raise _fail(f"DPoP proof htm must be {method}")
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalize_htu(htu) != expected_htu:
            raise _fail(f"DPoP proof htu must be {expected_htu}")
        iat = claims.get("iat")
        if not is_numeric_date(iat) or abs(self._clock() - iat) > self._window_s:
            raise _fail(f"DPoP proof iat must be within {self._window_s:g} s of the server's time")
        return jti, float(iat)

    def spend(self, proof: VerifiedProof) -> None:
        """Mark the proof used; presenting it again is a replay."""
        self._spent.remember(proof.jti, proof.remember_until)


def _proof_key(header: dict[str, Any]) -> Key:
    if header.get("typ") != DPOP_TYP:
        raise _fail(f"DPoP proof typ must be {DPOP_TYP}")
    if header.get("alg") not in APPROVED_ALGORITHMS:
        raise _fail(f"DPoP proof alg must be one of {', '.join(APPROVED_ALGORITHMS)}")
    if "b64" in header or "crit" in header:
        raise _fail("DPoP proof must be a plain compact JWS (no b64/crit)")
    try:
        return import_public_jwk(header.get("jwk"))
    except ValueError as exc:
        raise _fail(f"DPoP proof jwk: {exc}") from None


def normalize_htu(url: str) -> str:
    """Scheme, host, port and path of a URL in a canonical form (RFC 9449 §4.3: no query or fragment)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def _payload_object(payload: bytes | None) -> dict[str, Any]:
    try:
        claims = json.loads(payload or b"")
    except ValueError:
        raise _fail("DPoP proof payload is not JSON") from None
    if not isinstance(claims, dict):
        raise _fail("DPoP proof payload is not a JSON object")
    return claims


def _fresh_nonce() -> str:
    return secrets.token_urlsafe(24)


def _fail(description: str) -> OAuthError:
    return OAuthError(INVALID_DPOP_PROOF, description)
