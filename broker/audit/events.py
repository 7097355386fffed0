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

# Fields in the order they appear on a line; `prev` and `hash` (the chain) come after them.
FIELDS = (
    "time",
    "seq",
    "event",
    "rpc",
    "outcome",
    "caller",
    "tenant",
    "target",
    "token_id",
    "subject_id",
    "session",
    "user",
    "instance",
    "detail",
)
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
    detail: str | None = None


def now_ns() -> int:
    return time.time_ns()


def rfc3339_ms(time_ns: int) -> str:
    """UTC, milliseconds, `Z`: `2025-01-31T12:00:00.123Z`."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos // 1_000_000:03d}Z"


def fields_of(event: AuditEvent, *, seq: int, instance: str) -> dict[str, object]:
    """The record's fields in line order, absent ones left out, long values cut."""
    values: dict[str, object] = {"time": rfc3339_ms(event.time_ns), "seq": seq}
    for name, value in zip(AuditEvent._fields[1:], event[1:], strict=True):
        if value is not None:
            values[name] = value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "..."
    values["instance"] = instance
    if event.detail is not None:
        values["detail"] = values.pop("detail")  # after instance, as FIELDS says
    return values
