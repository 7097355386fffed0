"""What the `[audit]` section of the configuration says; `broker.config` parses it into this."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

DEFAULT_FLUSH_INTERVAL = timedelta(milliseconds=200)


@dataclass(frozen=True, slots=True)
class AuditSettings:
    # Each process writes `audit-<instance>.jsonl` here. None: records go to the log stream (stderr) as
    # lines of the `broker.audit` logger, whatever the log level.
    directory: Path | None = None
    # Also export each record as an OpenTelemetry log record to this OTLP/HTTP base URL (the collector's
    # :4318); config sets it from telemetry.otlp_endpoint when `otel = true`.
    otlp_endpoint: str | None = None
    # HMAC-SHA256 key for user hashes. None: a random key per process, so user hashes do not correlate
    # across processes or restarts.
    hash_key: bytes | None = field(default=None, repr=False)
    # Records are written (and, with fsync, made durable) at least this often: the most a crash loses.
    flush_interval: timedelta = DEFAULT_FLUSH_INTERVAL
    fsync: bool = True
