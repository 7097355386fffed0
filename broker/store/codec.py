"""Serialises tokens, user sessions and pending logins for a shared store, sealed with AES-256-GCM.

The record's key is the associated data: a value copied under another key does not open, so one tenant's
token (or one user's session) can never be served for another's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.model import AccessToken, PendingLogin, Session, TokenType, UserIdentity

T = TypeVar("T")

_VERSION = b"\x01"
_NONCE_BYTES = 12


class SealedCodec:
    """Turns tokens, sessions and pending logins into sealed bytes and back; `open_*` returns None for
    anything it cannot trust (another key, another record name, tampering, an old format)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, cache_key: str, token: AccessToken) -> bytes:
        return self._seal(cache_key, _to_dict(token))

    def open(self, cache_key: str, blob: bytes) -> AccessToken | None:
        data = self._open(cache_key, blob)
        return None if data is None else _safely(_from_dict, data)

    def seal_session(self, record_key: str, session: Session) -> bytes:
        return self._seal(record_key, _session_to_dict(session))

    def open_session(self, record_key: str, blob: bytes) -> Session | None:
        data = self._open(record_key, blob)
        return None if data is None else _safely(_session_from_dict, data)

    def seal_pending(self, record_key: str, login: PendingLogin) -> bytes:
        return self._seal(record_key, _pending_to_dict(login))

    def open_pending(self, record_key: str, blob: bytes) -> PendingLogin | None:
        data = self._open(record_key, blob)
        return None if data is None else _safely(_pending_from_dict, data)

    def seal_table(self, record_key: str, table: dict[str, object]) -> bytes:
        """A plain table (a tenant's settings): sealed so that only a holder of the key can write one."""
        return self._seal(record_key, table)

    def open_table(self, record_key: str, blob: bytes) -> dict[str, object] | None:
        return self._open(record_key, blob)

    def _seal(self, associated: str, data: dict[str, object]) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(data, separators=(",", ":")).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plain, associated.encode())

    def _open(self, associated: str, blob: bytes) -> dict[str, object] | None:
        if not blob.startswith(_VERSION) or len(blob) < 1 + _NONCE_BYTES + 16:
            return None
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            data = json.loads(self._aead.decrypt(nonce, sealed, associated.encode()))
        except Exception:  # a value we cannot open is a miss, whatever broke it
            return None
        return data if isinstance(data, dict) else None


def _safely(parse: Callable[[dict[str, object]], T], data: dict[str, object]) -> T | None:
    try:
        return parse(data)
    except (KeyError, TypeError, ValueError):
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


def _instant(value: object) -> datetime:
    return datetime.fromtimestamp(float(str(value)), UTC)


def _session_to_dict(session: Session) -> dict[str, object]:
    return {
        "session_key": session.session_key,
        "tenant": session.tenant,
        "targets": list(session.targets),
        "refresh_token": session.refresh_token,
        "expires_at": session.expires_at.timestamp(),
        "user": asdict(session.user),
        "created_at": session.created_at.timestamp(),
        "owner": session.owner,
        "attested": session.attested,
    }


def _session_from_dict(data: dict[str, object]) -> Session:
    user = data["user"]
    if not isinstance(user, dict):
        raise TypeError("user must be an object")
    return Session(
        session_key=str(data["session_key"]),
        tenant=str(data["tenant"]),
        targets=tuple(str(t) for t in _list(data["targets"])),
        refresh_token=str(data["refresh_token"]),
        expires_at=_instant(data["expires_at"]),
        user=UserIdentity(**{str(k): (None if v is None else str(v)) for k, v in user.items()}),  # type: ignore[arg-type]
        created_at=_instant(data["created_at"]),
        owner=_optional(data.get("owner")),
        attested=data.get("attested") is True,
    )


def _pending_to_dict(login: PendingLogin) -> dict[str, object]:
    return {
        "tenant": login.tenant,
        "targets": list(login.targets),
        "redirect_uri": login.redirect_uri,
        "code_verifier": login.code_verifier,
        "nonce": login.nonce,
        "expires_at": login.expires_at.timestamp(),
        "caller": login.caller,
        "attested": login.attested,
    }


def _pending_from_dict(data: dict[str, object]) -> PendingLogin:
    return PendingLogin(
        tenant=str(data["tenant"]),
        targets=tuple(str(t) for t in _list(data["targets"])),
        redirect_uri=str(data["redirect_uri"]),
        code_verifier=str(data["code_verifier"]),
        nonce=str(data["nonce"]),
        expires_at=_instant(data["expires_at"]),
        caller=_optional(data.get("caller")),
        attested=data.get("attested") is True,
    )


def _optional(value: object) -> str | None:
    return None if value is None else str(value)
