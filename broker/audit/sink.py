"""Where sealed lines go: an append-only file per process, or the log stream; see `otel.py` for OTLP.

The file is opened O_APPEND, so every write lands at its end whoever else holds it open, and written with
os.write (no user-space buffer: once `write` returns the lines are in the kernel and survive the process).
With fsync on, each batch is also forced to disk, so a machine's crash loses at most one flush interval.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from broker.audit.chain import GENESIS, BrokenLineError, unseal

_log = logging.getLogger(__name__)
AUDIT_LOGGER = "broker.audit"
_TAIL_BYTES = 65536
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class Sink(Protocol):
    def write(self, text: str) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where a trail continues: the last sequence number written and that line's hash."""

    seq: int = 0
    hash: str = GENESIS


class FileSink:
    """Appends to `audit-<instance>.jsonl`; continues the chain of that file if it exists and ends whole."""

    def __init__(self, directory: Path, instance: str, *, fsync: bool) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.path = directory / f"audit-{_UNSAFE.sub('_', instance)}.jsonl"
        self.head = ChainHead()
        if self.path.exists() and self.path.stat().st_size > 0:
            head = read_head(self.path)
            if head is None:
                # Appending to a cut line would glue two records together: leave it, as it is, to the auditor.
                damaged = self.path
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
                self.path = damaged.with_name(f"{damaged.stem}-{stamp}.jsonl")
                _log.error(
                    "audit file %s does not end in a whole record; a new chain starts in %s",
                    damaged,
                    self.path,
                )
            else:
                self.head = head
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._fsync = fsync
        self._unwritten = bytearray()  # what a failed write (a full disk) left, written before anything new

    def write(self, text: str) -> None:
        """Appends `text` (whole lines); on OSError what was not written is kept for the next call."""
        self._unwritten += text.encode()
        while self._unwritten:
            del self._unwritten[: os.write(self._fd, self._unwritten)]
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def read_head(path: Path) -> ChainHead | None:
    """The seq and hash of the file's last line, or None if that line is cut off or not a sealed record."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    if not tail.endswith(b"\n"):
        return None
    last = tail[:-1].rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    try:
        record = unseal(last)
    except BrokenLineError:
        return None
    return ChainHead(int(record["seq"]), str(record["hash"]))


class LogSink:
    """One line of the `broker.audit` logger per record, handed to the handlers whatever the log level."""

    def __init__(self) -> None:
        self._logger = logging.getLogger(AUDIT_LOGGER)
        self.head = ChainHead()

    def write(self, text: str) -> None:
        for line in text.splitlines():
            # Logger.handle skips the level check that .info() makes: audit is not subject to log_level.
            self._logger.handle(
                self._logger.makeRecord(AUDIT_LOGGER, logging.INFO, __file__, 0, "%s", (line,), None)
            )

    def close(self) -> None:
        pass
