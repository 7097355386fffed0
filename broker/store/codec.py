"""Serialises access tokens for a shared store, sealed with AES-256-GCM.

The cache key is the associated data: a value copied under another key does not open, so one tenant's token
can never be served for another's.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.model import AccessToken, TokenType

_VERSION = b"\x01"
_NONCE_BYTES = 12


class SealedCodec:
    """Turns tokens into sealed bytes and back; `open` returns None for anything it cannot trust."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, cache_key: str, token: AccessToken) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(_to_dict(token), separators=(",", ":")).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plain, cache_key.encode())

    def open(self, cache_key: str, blob: bytes) -> AccessToken | None:
        if not blob.startswith(_VERSION) or len(blob) < 1 + _NONCE_BYTES + 16:
            return None
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, cache_key.encode())
            return _from_dict(json.loads(plain))
        except Exception:
            return None


def _to_dict(token: AccessToken) -> dict[str, object]:
    return {
        "value": token.value,
        "token_type": token.token_type.value,
        "issued_at": token.issued_at.timestamp(),
        "expires_at": token.expires_at.timestamp(),
        "scopes": list(token.scopes),
        "rejected_scopes": list(token.rejected_scopes),
        "audience": list(token.audience),
        "jkt": token.jkt,
    }


def _from_dict(data: dict[str, object]) -> AccessToken:
    return AccessToken(
        value=str(data["value"]),
        token_type=TokenType(data["token_type"]),
        issued_at=datetime.fromtimestamp(float(str(data["issued_at"])), UTC),
        expires_at=datetime.fromtimestamp(float(str(data["expires_at"])), UTC),
        scopes=tuple(str(s) for s in _list(data["scopes"])),
        rejected_scopes=tuple(str(s) for s in _list(data["rejected_scopes"])),
        audience=tuple(str(s) for s in _list(data["audience"])),
        jkt=None if data["jkt"] is None else str(data["jkt"]),
    )


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value
