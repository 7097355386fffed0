"""A demo resource server beside the dev authority: the API every client's tests call through the broker.

It checks what NHN's APIs check (RFC 9449 §7 and §9): `Authorization: DPoP <token>` with a token this
authority signed for its audience, and a `DPoP` proof whose signature, `htm`, `htu` (the request's URL),
`ath` (the token's hash), key (`cnf.jkt` of the token), `iat` (within a few seconds) and single-use `jti`
all hold, and that carries the API's own current nonce: a proof without it is answered `401` with
`WWW-Authenticate: DPoP error="use_dpop_nonce"` and a `DPoP-Nonce` header, as a resource server that
demands nonces does. Every answer carries the current nonce. A second path takes bearer tokens of its own
audience. Counters and a nonce rotation are dev-only hooks for tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .answers import Answer
from .attest import ATTEST_TYPE, CLAIM_AUTHORIZATION_DETAILS
from .dpop import DPoPVerifier, NonceKeeper
from .errors import INVALID_DPOP_PROOF, USE_DPOP_NONCE, OAuthError
from .timing import Clock
from .tokens import TokenIssuer

DPOP_PATH = "/demo-api/"
# Under the DPoP path: also requires a trust-framework attest in the token (403 without one).
ATTEST_PATH = DPOP_PATH + "attest/"
INSUFFICIENT_AUTHORIZATION_DETAILS = "insufficient_authorization_details"
BEARER_PATH = "/demo-bearer/"
DPOP_AUDIENCE = "nhn:demo-api"
BEARER_AUDIENCE = "nhn:demo-bearer"
# "iat within a few seconds": a resource server needs no more than clock skew and the network.
PROOF_WINDOW_S = 10
NONCE_PERIOD_S = 300
INVALID_TOKEN = "invalid_token"  # noqa: S105 - an RFC 6750 error code


@dataclass
class DemoApiStats:
    requests: int = 0
    nonce_challenges: int = 0
    accepted: int = 0
    rejected: int = 0


class DemoApi:
    def __init__(self, *, tokens: TokenIssuer, clock: Clock) -> None:
        self._tokens = tokens
        self._clock = clock
        self.stats = DemoApiStats()
        self._nonces = NonceKeeper(period_s=NONCE_PERIOD_S, clock=clock)
        self._proofs = self._verifier()

    def _verifier(self) -> DPoPVerifier:
        # htu is given per request; the one here is never used.
        return DPoPVerifier(
            htu="http://localhost/", nonces=self._nonces, clock=self._clock, window_s=PROOF_WINDOW_S
        )

    def rotate_nonce(self) -> None:
        """A new nonce at once; the previous one stops working."""
        self._nonces.rotate_now()

    def snapshot(self) -> dict[str, int]:
        return asdict(self.stats)

    def dpop(
        self, *, method: str, url: str, path: str, headers: Mapping[str, Sequence[str]], body_bytes: int
    ) -> Answer:
        """One request to the DPoP-protected path."""
        self.stats.requests += 1
        try:
            claims = self._token(headers, scheme="DPoP", audience=DPOP_AUDIENCE)
            token = _credentials(headers, "DPoP")
            jkt = (claims.get("cnf") or {}).get("jkt")
            if not isinstance(jkt, str):
                raise _challenge(INVALID_TOKEN, "the token is not DPoP-bound")
            proofs = headers.get("DPoP", ())
            if len(proofs) != 1:
                raise _challenge(INVALID_DPOP_PROOF, "exactly one DPoP header is required")
            try:
                proof = self._proofs.verify(proofs[0], method=method, htu=url)
            except OAuthError as exc:
                if exc.error == USE_DPOP_NONCE:
                    self.stats.nonce_challenges += 1
                    raise _challenge(USE_DPOP_NONCE, "the API requires its nonce in the DPoP proof") from None
                raise _challenge(INVALID_DPOP_PROOF, exc.description or "invalid proof") from None
            ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
            if not hmac.compare_digest(str(proof.claims.get("ath", "")), ath):
                raise _challenge(INVALID_DPOP_PROOF, "DPoP proof ath does not match the access token")
            if not hmac.compare_digest(proof.jkt, jkt):
                raise _challenge(INVALID_DPOP_PROOF, "DPoP proof key is not the one the token is bound to")
            self._proofs.spend(proof)
            attest = _attest_of(claims) if path.startswith(ATTEST_PATH) else None
        except _RefusedError as refused:
            if refused.error != USE_DPOP_NONCE:
                self.stats.rejected += 1
            return self._refusal(refused, scheme="DPoP")
        self.stats.accepted += 1
        extra: dict[str, Any] = {}
        if attest is not None:
            # What the API acts on, and no more: no patient data, no practitioner identifier.
            care = attest["care_relationship"]
            extra["attest"] = {
                "purpose_of_use": care["purpose_of_use"]["code"],
                "decision_ref": care["decision_ref"]["id"],
            }
        return self._ok(method, path, claims, "DPoP", body_bytes, extra=extra)

    def bearer(
        self, *, method: str, path: str, headers: Mapping[str, Sequence[str]], body_bytes: int
    ) -> Answer:
        """One request to the bearer path."""
        self.stats.requests += 1
        try:
            claims = self._token(headers, scheme="Bearer", audience=BEARER_AUDIENCE)
        except _RefusedError as refused:
            self.stats.rejected += 1
            return self._refusal(refused, scheme="Bearer")
        self.stats.accepted += 1
        return self._ok(method, path, claims, "Bearer", body_bytes)

    def _token(self, headers: Mapping[str, Sequence[str]], *, scheme: str, audience: str) -> dict[str, Any]:
        token = _credentials(headers, scheme)
        claims = self._tokens.verify_access_token(token) if token else None
        if claims is None:
            raise _challenge(INVALID_TOKEN, f"a valid {scheme} access token is required")
        audiences = claims.get("aud")
        listed = [audiences] if isinstance(audiences, str) else list(audiences or [])
        if audience not in listed:
            raise _challenge(INVALID_TOKEN, f"the token is not for {audience}")
        return claims

    def _ok(
        self,
        method: str,
        path: str,
        claims: Mapping[str, Any],
        kind: str,
        body_bytes: int,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> Answer:
        body = {
            "method": method,
            "path": path,
            "client_id": claims.get("client_id"),
            "token_type": kind,
            "body_bytes": body_bytes,
            **(extra or {}),
        }
        return Answer(200, body, {"DPoP-Nonce": self._nonces.current()})

    def _refusal(self, refused: _RefusedError, *, scheme: str) -> Answer:
        challenge = f'{scheme} error="{refused.error}", error_description="{refused.description}"'
        if scheme == "DPoP":
            challenge += ', algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256"'
        headers = {"WWW-Authenticate": challenge, "DPoP-Nonce": self._nonces.current()}
        body = {"error": refused.error, "error_description": refused.description}
        return Answer(refused.status, body, headers)


class _RefusedError(Exception):
    def __init__(self, error: str, description: str, status: int = 401) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status


def _attest_of(claims: Mapping[str, Any]) -> Mapping[str, Any]:
    """The token's trust-framework attest, or a 403 ``insufficient_authorization_details`` refusal."""
    details = claims.get(CLAIM_AUTHORIZATION_DETAILS)
    for item in details if isinstance(details, list) else []:
        if isinstance(item, Mapping) and item.get("type") == ATTEST_TYPE:
            return item
    raise _RefusedError(
        INSUFFICIENT_AUTHORIZATION_DETAILS,
        f"this API requires a {ATTEST_TYPE} attest in the access token",
        status=403,
    )


def _challenge(error: str, description: str) -> _RefusedError:
    return _RefusedError(error, description.replace('"', "'"))


def _credentials(headers: Mapping[str, Sequence[str]], scheme: str) -> str:
    values = headers.get("Authorization", ())
    if len(values) != 1:
        return ""
    given, _, token = values[0].partition(" ")
    return token.strip() if given.lower() == scheme.lower() else ""
