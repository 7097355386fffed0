"""The hashes a record holds instead of the secrets it is about: a token, a session, a user's national id.

A token is named by a hash of its `jti` (RFC 7519 section 4.1.7), so an auditor holding the STS's log can
match it by hashing the `jti` there; a token that is not a JWT (or has no `jti`) by a hash of itself.
A national id has about 10^10 values: a plain hash of it is reversed by trying them all, so users are
named by a keyed hash (HMAC-SHA256) whose key only the operator holds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

TOKEN_ID_HEX = 16
USER_HEX = 32
_SESSION_PREFIX = 16
# Served tokens repeat thousands of times a second: parse each once. Bounded; cleared when full.
_TOKEN_IDS: dict[str, str] = {}
_TOKEN_IDS_MAX = 4096


def token_id(token: str) -> str:
    """16 hex digits naming `token`: SHA-256 of its `jti` claim if it is a JWT with one, else of itself."""
    known = _TOKEN_IDS.get(token)
    if known is not None:
        return known
    jti = _jti(token)
    named = hashlib.sha256((token if jti is None else jti).encode()).hexdigest()[:TOKEN_ID_HEX]
    if len(_TOKEN_IDS) >= _TOKEN_IDS_MAX:
        _TOKEN_IDS.clear()
    _TOKEN_IDS[token] = named
    return named


def _jti(token: str) -> str | None:
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 65536:  # a JWS compact serialization; a sane size
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    jti = claims.get("jti") if isinstance(claims, dict) else None
    return jti if isinstance(jti, str) and jti else None


def session_ref(session_key: str) -> str:
    """16 hex digits naming a session, from its store key (`sessions.login.session_key(id)`, itself a hash
    of the session id). Only the key's first 16 digits count, so records that hold that prefix (the
    sessions module's own records) name the same session the same way."""
    return hashlib.sha256(b"broker-audit-session:" + session_key[:_SESSION_PREFIX].encode()).hexdigest()[:16]


class UserHasher:
    """HMAC-SHA256 of a user's pid under the operator's key; the same pid gives the same hash per key."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.key_id = hashlib.sha256(b"broker-audit-key-id:" + key).hexdigest()[:8]

    def __call__(self, pid: str) -> str:
        return hmac.new(self._key, pid.encode(), hashlib.sha256).hexdigest()[:USER_HEX]
