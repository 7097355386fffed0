"""A Selvbetjening-like key API beside the dev authority: clients register their own new public keys.

The shapes follow NHN's Selvbetjening API as its client libraries use it (HelseID.Library's
``ClientSecretEndpoint``, HelseID.Library.Java's ``ClientSecretEndpoint``, FHI's ``SelvbetjeningApi``):

- ``POST /v1/client-secret``: the body is the new public JWK itself (``application/json``; a JSON string
  holding the JWK's JSON is accepted too, as FHI's tool sends it); the answer is
  ``{"expiration": "<RFC 3339>"}``. The key is added to the client's keys; the others stay.
- ``GET /v1/client-secret``: ``[{"expiration", "kid", "jwkThumbprint", "origin", "publicJwk"}]``, where
  ``origin`` is ``Gui`` for keys registered at start and ``Api`` for keys posted here, ``expiration`` is
  null for a key that never expires, and ``publicJwk`` is the key's JSON as a string (FHI's DTO types it
  as a string).
- ``DELETE /v1/client-secret/{kid}``: dev-only; HelseID documents no removal through the API.

Every call needs an access token of this authority for the audience ``nhn:selvbetjening`` with the scope
``nhn:selvbetjening/client``: DPoP-bound with a proof (what NHN's libraries send; no nonce is demanded,
as they handle none there), or a bearer token. The client whose keys change is the token's ``client_id``.
Errors are RFC 7807 problem details, the shape HelseID.Library.Java parses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from joserfc.jwk import Key

from .algorithms import import_public_jwk
from .dpop import DPoPVerifier, NonceKeeper
from .errors import OAuthError
from .registry import ClientRegistry, RegisteredClient
from .timing import Clock
from .tokens import TokenIssuer

CLIENT_SECRET_PATH = "/v1/client-secret"  # noqa: S105 - a URL path, not a secret
SCOPE = "nhn:selvbetjening/client"
AUDIENCE = "nhn:selvbetjening"
ORIGIN_API = "Api"
ORIGIN_GUI = "Gui"
DEFAULT_KEY_LIFETIME_S = 365 * 24 * 3600
MAX_JWK_BYTES = 16 * 1024  # an RSA-8192 public JWK is under 2 KB; anything far bigger is not a key
PROOF_WINDOW_S = 10  # as the demo API: a resource server needs no more than clock skew and the network
REFUSAL_STATUSES = (400, 403, 500, 503)
PROBLEM_JSON = "application/problem+json"
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class JsonAnswer:
    """An HTTP answer whose body may be any JSON value (the key list is an array)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class SelvbetjeningStats:
    """``registrations``: keys added; ``refused``: POSTs answered with an error, injected or not;
    ``lists``: key lists served; ``removals``: keys deleted (dev-only)."""

    registrations: int = 0
    refused: int = 0
    lists: int = 0
    removals: int = 0


@dataclass
class SelvbetjeningFaults:
    """While ``refuse`` is set, every POST is answered ``status`` and registers nothing."""

    refuse: bool = False
    status: int = 400

    def update(self, data: Any) -> None:
        """Apply ``{"refuse": bool, "status": n}``, or raise ``ValueError`` and change nothing."""
        if not isinstance(data, dict) or not data or set(data) - {"refuse", "status"}:
            raise ValueError('expected {"refuse": true|false, "status": 400|403|500|503}')
        refuse = data.get("refuse", self.refuse)
        status = data.get("status", self.status)
        if not isinstance(refuse, bool):
            raise ValueError("refuse must be true or false")
        if isinstance(status, bool) or status not in REFUSAL_STATUSES:
            raise ValueError(f"status must be one of {list(REFUSAL_STATUSES)}")
        self.refuse, self.status = refuse, status


class Selvbetjening:
    """The key API of one dev authority: it changes the keys of clients in the shared registry."""

    def __init__(
        self,
        *,
        registry: ClientRegistry,
        tokens: TokenIssuer,
        clock: Clock,
        key_lifetime_s: int = DEFAULT_KEY_LIFETIME_S,
    ) -> None:
        self._registry = registry
        self._tokens = tokens
        self._clock = clock
        self.key_lifetime_s = _lifetime(key_lifetime_s)
        self.stats = SelvbetjeningStats()
        self.faults = SelvbetjeningFaults()
        # Which keys came through the API, per client; every other registered key counts as "Gui".
        self._posted: dict[str, set[str]] = {}
        # htu is given per request; nonces are not demanded, but the verifier wants a keeper.
        self._proofs = DPoPVerifier(
            htu="http://localhost/",
            nonces=NonceKeeper(period_s=300, clock=clock),
            clock=clock,
            require_nonce=False,
            window_s=PROOF_WINDOW_S,
        )

    # --- the API -----------------------------------------------------------------------------------

    def register_key(self, *, url: str, headers: Mapping[str, Sequence[str]], body: bytes) -> JsonAnswer:
        """``POST /v1/client-secret``: add the posted public key to the caller's keys."""
        try:
            client = self._caller(url=url, method="POST", headers=headers)
            if self.faults.refuse:
                status = self.faults.status
                raise _ProblemError(status, "Refused", "the registration was refused (dev fault injection)")
            jwk, key = _posted_key(body)
            kid = jwk.setdefault("kid", key.thumbprint())
            if not isinstance(kid, str) or not kid:
                raise _ProblemError(400, "Invalid key", "the JWK's kid must be a non-empty string")
            if any(k.get("kid") == kid for k in client.jwks["keys"]):
                raise _ProblemError(400, "Invalid key", f"the client already has a key with kid {kid!r}")
            expires = int(self._clock()) + self.key_lifetime_s
            updated = replace(
                client,
                jwks={"keys": [*client.jwks["keys"], jwk]},
                key_expirations={**client.key_expirations, kid: float(expires)},
            )
        except _ProblemError as problem:
            self.stats.refused += 1
            return problem.answer()
        self._registry.register(updated)
        self._posted.setdefault(client.client_id, set()).add(kid)
        self.stats.registrations += 1
        return JsonAnswer(200, {"expiration": _rfc3339(expires)}, _NO_STORE)

    def list_keys(self, *, url: str, headers: Mapping[str, Sequence[str]]) -> JsonAnswer:
        """``GET /v1/client-secret``: every key of the caller, expired ones included."""
        try:
            client = self._caller(url=url, method="GET", headers=headers)
        except _ProblemError as problem:
            return problem.answer()
        posted = self._posted.get(client.client_id, set())
        listed = [
            {
                "expiration": _rfc3339(client.key_expirations[kid])
                if kid in client.key_expirations
                else None,
                "kid": kid,
                "jwkThumbprint": import_public_jwk(jwk).thumbprint(),
                "origin": ORIGIN_API if kid in posted else ORIGIN_GUI,
                "publicJwk": json.dumps(jwk, separators=(",", ":")),
            }
            for jwk in client.jwks["keys"]
            for kid in (jwk["kid"],)
        ]
        self.stats.lists += 1
        return JsonAnswer(200, listed, _NO_STORE)

    def remove_key(self, *, kid: str, url: str, headers: Mapping[str, Sequence[str]]) -> JsonAnswer:
        """``DELETE /v1/client-secret/{kid}`` (dev-only): drop one of the caller's keys."""
        try:
            client = self._caller(url=url, method="DELETE", headers=headers)
            keys = [k for k in client.jwks["keys"] if k.get("kid") != kid]
            if len(keys) == len(client.jwks["keys"]):
                raise _ProblemError(404, "Not found", "the client has no key with that kid")
            if not keys:
                raise _ProblemError(400, "Last key", "the client's last key cannot be removed")
            expirations = {k: at for k, at in client.key_expirations.items() if k != kid}
            updated = replace(client, jwks={"keys": keys}, key_expirations=expirations)
        except _ProblemError as problem:
            return problem.answer()
        self._registry.register(updated)
        self._posted.get(client.client_id, set()).discard(kid)
        self.stats.removals += 1
        return JsonAnswer(204, None, _NO_STORE)

    # --- dev hooks ---------------------------------------------------------------------------------

    def set_key_lifetime(self, data: Any) -> None:
        """Apply ``{"key_lifetime_s": n}`` to keys posted from now on, or raise ``ValueError``."""
        if not isinstance(data, dict) or set(data) != {"key_lifetime_s"}:
            raise ValueError('expected {"key_lifetime_s": n}')
        self.key_lifetime_s = _lifetime(data["key_lifetime_s"])

    def settings(self) -> dict[str, Any]:
        return {**asdict(self.faults), "key_lifetime_s": self.key_lifetime_s}

    def snapshot(self) -> dict[str, int]:
        return asdict(self.stats)

    def reset_stats(self) -> None:
        self.stats = SelvbetjeningStats()

    # --- the caller --------------------------------------------------------------------------------

    def _caller(self, *, url: str, method: str, headers: Mapping[str, Sequence[str]]) -> RegisteredClient:
        """The client whose token (and proof, for a DPoP token) this request carries, or a problem."""
        authorizations = headers.get("Authorization", ())
        if len(authorizations) != 1:
            raise _unauthorized("Bearer", "invalid_token", "exactly one Authorization header is required")
        scheme, _, token = authorizations[0].partition(" ")
        scheme = {"dpop": "DPoP", "bearer": "Bearer"}.get(scheme.lower(), "")
        claims = self._tokens.verify_access_token(token.strip()) if scheme and token else None
        if claims is None:
            raise _unauthorized(scheme or "Bearer", "invalid_token", "a valid access token is required")
        audiences = claims.get("aud")
        if AUDIENCE not in ([audiences] if isinstance(audiences, str) else list(audiences or [])):
            raise _unauthorized(scheme, "invalid_token", f"the token is not for {AUDIENCE}")
        jkt = (claims.get("cnf") or {}).get("jkt")
        # RFC 9449 §7.1: a DPoP-bound token is never accepted as a bearer token.
        if isinstance(jkt, str) or scheme == "DPoP":
            self._check_proof(url, method, headers, token.strip(), jkt)
        scopes = claims.get("scope")
        if SCOPE not in (scopes.split() if isinstance(scopes, str) else list(scopes or [])):
            raise _ProblemError(
                403,
                "Forbidden",
                f"the token lacks the scope {SCOPE}",
                _challenge(scheme, "insufficient_scope"),
            )
        client = self._registry.get(str(claims.get("client_id")))
        if client is None:
            raise _unauthorized(scheme, "invalid_token", "the token's client is not registered")
        return client

    def _check_proof(
        self, url: str, method: str, headers: Mapping[str, Sequence[str]], token: str, jkt: object
    ) -> None:
        if not isinstance(jkt, str):
            raise _unauthorized("DPoP", "invalid_token", "the token is not DPoP-bound")
        proofs = headers.get("DPoP", ())
        if len(proofs) != 1:
            raise _unauthorized("DPoP", "invalid_dpop_proof", "exactly one DPoP header is required")
        try:
            proof = self._proofs.verify(proofs[0], method=method, htu=url)
        except OAuthError as exc:
            raise _unauthorized("DPoP", "invalid_dpop_proof", exc.description or "invalid proof") from None
        ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
        if not hmac.compare_digest(str(proof.claims.get("ath", "")), ath):
            raise _unauthorized("DPoP", "invalid_dpop_proof", "the proof's ath does not match the token")
        if not hmac.compare_digest(proof.jkt, jkt):
            raise _unauthorized("DPoP", "invalid_dpop_proof", "the proof's key is not the token's")
        self._proofs.spend(proof)


class _ProblemError(Exception):
    """An RFC 7807 problem answer."""

    def __init__(
        self, status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail
        self.headers = dict(headers or {})

    def answer(self) -> JsonAnswer:
        body = {"type": "about:blank", "title": self.title, "status": self.status, "detail": self.detail}
        return JsonAnswer(self.status, body, {**_NO_STORE, **self.headers, "Content-Type": PROBLEM_JSON})


def _unauthorized(scheme: str, error: str, detail: str) -> _ProblemError:
    return _ProblemError(401, "Unauthorized", detail, _challenge(scheme, error, detail))


def _challenge(scheme: str, error: str, detail: str | None = None) -> dict[str, str]:
    value = f'{scheme} error="{error}"'
    if detail:
        value += ', error_description="{}"'.format(detail.replace('"', "'"))
    if scheme == "DPoP":
        value += ', algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512"'
    return {"WWW-Authenticate": value}


def _posted_key(body: bytes) -> tuple[dict[str, Any], Key]:
    """The posted public JWK (an object, or a JSON string holding one) and its imported key."""
    if len(body) > MAX_JWK_BYTES:
        raise _ProblemError(400, "Invalid key", f"the body exceeds {MAX_JWK_BYTES} bytes")
    try:
        data = json.loads(body)
        if isinstance(data, str):
            data = json.loads(data)
    except (ValueError, UnicodeError):
        raise _ProblemError(400, "Invalid key", "the body must be a public JWK as JSON") from None
    if not isinstance(data, dict):
        raise _ProblemError(400, "Invalid key", "the body must be a public JWK (a JSON object)")
    try:
        key = import_public_jwk(data)
    except ValueError as exc:
        raise _ProblemError(400, "Invalid key", str(exc)) from None
    return dict(data), key


def _lifetime(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("key_lifetime_s must be a whole number of seconds, at least 1")
    return value


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(int(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
