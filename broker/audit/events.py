"""One audit record: what happened, to what, for whom; hashes only, never a token, key, session id or pid.

The names of the events the broker records:
- per RPC (the API's wrapper calls `AuditTrail.call`): `served`, `proof`, `exchanged`, `login.started`,
  `login.completed`, `session.token`, `session.ended`, and `refused` for every call answered with an error;
- from inside (`record`): `sts.fetched` (a token the STS issued for a tenant), `sts.exchanged`,
  `session.created`, `session.refreshed`, `session.ended`;
- of the trail itself: `trail.opened` and `trail.closed`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import NamedTuple

from broker.audit.chain import encode_string

# Caller-chosen names (an unknown tenant, say) can be long; a record keeps their start.
MAX_VALUE_CHARS = 200


class AuditEvent(NamedTuple):
    """An event as the hot path queues it: a tuple is the cheapest thing to build; hashes already taken."""

    time_ns: int
    event: str
    rpc: str | None = None
    outcome: str | None = None
    caller: str | None = None
    tenant: str | None = None
    target: str | None = None
    token_id: str | None = None
    subject_id: str | None = None  # the token given to an exchange
    session: str | None = None
    user: str | None = None
    patient: str | None = None  # keyed hash of the national id in a request's care context
    purpose: str | None = None  # the care context's purpose of use (TREAT, ETREAT, COC)
    decision: str | None = None  # the care context's access decision reference
    detail: str | None = None


def now_ns() -> int:
    return time.time_ns()


class _Seconds:
    """The last second formatted: records come thousands a second, so each second is formatted once."""

    second = -1
    stamp = ""


def rfc3339_ms(time_ns: int) -> str:
    """UTC, milliseconds, `Z`: `2025-01-31T12:00:00.123Z`."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    if seconds != _Seconds.second:
        _Seconds.stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _Seconds.second = seconds
    return f"{_Seconds.stamp}.{nanos // 1_000_000:03d}Z"


def members_of(event: AuditEvent, *, seq: int, instance: str) -> str:
    """The record's JSON members in line order, absent fields left out, long values cut: the hot loop of
    the writer, so built from pieces rather than through a dict."""
    parts = [f'"time":"{rfc3339_ms(event.time_ns)}","seq":{seq}']
    for prefix, value in zip(_PREFIXES, event[1:-1], strict=True):
        if value is not None:
            parts.append(prefix + encode_string(value if len(value) <= MAX_VALUE_CHARS else _cut(value)))
    parts.append(',"instance":' + encode_string(instance))
    if event.detail is not None:
        parts.append(',"detail":' + encode_string(_cut(event.detail)))
    return "".join(parts)


def fields_of(event: AuditEvent, *, seq: int, instance: str) -> list[tuple[str, str | int]]:
    """The same fields as pairs (for OpenTelemetry attributes and plain log lines)."""
    values: list[tuple[str, str | int]] = [("time", rfc3339_ms(event.time_ns)), ("seq", seq)]
    values += [
        (name, _cut(value)) for name, value in zip(_NAMED, event[1:-1], strict=True) if value is not None
    ]
    values.append(("instance", instance))
    if event.detail is not None:
        values.append(("detail", _cut(event.detail)))
    return values


def _cut(value: str) -> str:
    return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "..."


_NAMED = AuditEvent._fields[1:-1]  # event .. decision; time_ns and detail are placed apart
_PREFIXES = tuple(f',"{name}":' for name in _NAMED)
