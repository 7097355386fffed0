"""The audit trail: one structured log record (logger `broker.audit`) per token the broker obtains from the
STS, per exchange, per login and per session end. Records name the tenant, target, caller where known, and a
hash of the token (`token_sha256`, 16 hex digits) that identifies it without revealing it.

Cache hits are not recorded one by one (thousands a second); the served-token counters cover them.
"""

from __future__ import annotations

import hashlib
import logging

_log = logging.getLogger("broker.audit")


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def record(event: str, **fields: str | None) -> None:
    """Logs `event` with its fields as structured extras (JSON logs show them as keys)."""
    shown = {f"audit_{name}": value for name, value in fields.items() if value is not None}
    _log.info(
        "%s %s",
        event,
        " ".join(f"{k[6:]}={v}" for k, v in shown.items()),
        extra={"audit_event": event, **shown},
    )
