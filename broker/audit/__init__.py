"""The audit trail: a tamper-evident record of every token served, exchanged or minted into a proof, and of
every refused call, for the logging duty of Normen (fact sheet 15) and pasientjournalforskriften § 14.

`open_trail` builds a process's trail from the `[audit]` settings; `configure` makes it the one `record`
writes to. The API calls `AuditTrail.call` once per RPC; the engine and the session services call `record`
for what they obtain from the STS. Records hold hashes, never a token, key, session id or national id.
"""

from __future__ import annotations

import logging
import os

from broker.audit.events import AuditEvent, fields_of, now_ns
from broker.audit.hashing import UserHasher, session_ref, token_id
from broker.audit.otel import OtelExport
from broker.audit.settings import DEFAULT_FLUSH_INTERVAL, AuditSettings
from broker.audit.sink import FileSink, LogSink
from broker.audit.trail import AuditTrail
from broker.audit.verify import VerifyResult, verify

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "AuditSettings",
    "AuditTrail",
    "VerifyResult",
    "configure",
    "open_trail",
    "record",
    "token_id",
    "verify",
]

_log = logging.getLogger("broker.audit.trail")  # not "broker.audit": its lines are records
# The engine's and sessions' event names, as the trail names them.
_RENAMED = {"token.minted": "sts.fetched", "token.exchanged": "sts.exchanged"}
_FIELDS = ("rpc", "outcome", "caller", "tenant", "target")


class _Process:
    trail: AuditTrail | None = None


def open_trail(settings: AuditSettings, *, instance: str) -> AuditTrail:
    """Opens this process's trail (its own file, or the log stream) and records `trail.opened`."""
    key = settings.hash_key
    if key is None:
        key = os.urandom(32)
        _log.warning(
            "no audit hash_key configured: user hashes use a random key of this process and do not "
            "correlate across processes or restarts"
        )
    users = UserHasher(key)
    sink: FileSink | LogSink = (
        LogSink()
        if settings.directory is None
        else FileSink(settings.directory, instance, fsync=settings.fsync)
    )
    otel = None if settings.otlp_endpoint is None else OtelExport(settings.otlp_endpoint, instance)
    trail = AuditTrail(
        sink,
        instance=instance,
        users=users,
        head=sink.head,
        flush_interval=settings.flush_interval,
        otel=otel,
    )
    origin = "new chain" if sink.head.seq == 0 else f"continues seq {sink.head.seq}"
    user_key = "configured" if settings.hash_key is not None else "random"
    trail.add(
        AuditEvent(
            now_ns(), "trail.opened", outcome="OK", detail=f"{origin}; user key {user_key} {users.key_id}"
        )
    )
    return trail


def configure(trail: AuditTrail | None) -> None:
    """Makes `trail` the process's trail for `record`; None goes back to plain log lines."""
    _Process.trail = trail


def record(event: str, **fields: str | None) -> None:
    """Records an internal event. `token`, `pid` and `session` are hashed here; `token_sha256` and
    `subject_sha256` are taken as `token_id` values; other fields go into `detail`."""
    values = {name: fields.pop(name, None) for name in _FIELDS}
    token, token_sha = fields.pop("token", None), fields.pop("token_sha256", None)
    session, pid = fields.pop("session", None), fields.pop("pid", None)
    subject = fields.pop("subject_sha256", None)
    detail = " ".join(f"{name}={value}" for name, value in fields.items() if value is not None) or None
    trail = _Process.trail
    entry = AuditEvent(
        now_ns(),
        _RENAMED.get(event, event),
        outcome=values["outcome"] or "OK",
        rpc=values["rpc"],
        caller=values["caller"],
        tenant=values["tenant"],
        target=values["target"],
        token_id=token_id(token) if token is not None else token_sha,
        subject_id=subject,
        session=None if session is None else session_ref(session),
        user=None if pid is None or trail is None else trail.user(pid),
        detail=detail,
    )
    if trail is not None:
        trail.add(entry)
    else:  # no trail opened (a library use, a test): the old behaviour, a log line at INFO
        _log_unconfigured(entry)


def _log_unconfigured(entry: AuditEvent) -> None:
    shown = fields_of(entry, seq=0, instance="-")
    logging.getLogger("broker.audit").info(
        "%s %s",
        entry.event,
        " ".join(f"{name}={value}" for name, value in shown if name not in {"event", "seq", "time"}),
    )
