"""The trail: callers queue events in microseconds; one writer thread seals them into the chain and writes.

`call` hashes what it is given and appends a tuple to a deque (thread-safe, no lock): the sealing (JSON,
SHA-256) and the write happen on the writer thread, every flush interval or as soon as 4,096 events wait.
So a crash of the process loses at most the events of the last interval (0.2 s by default) and `close()`
writes everything. If the sink fails (a full disk) events wait unsealed, up to 200,000 (about a minute of
cache hits); beyond that they are counted, not kept, and a `trail.lost` record says how many when writing
resumes.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import timedelta
from pathlib import Path

from broker.audit.chain import seal_members
from broker.audit.events import AuditEvent, fields_of, members_of, now_ns
from broker.audit.hashing import UserHasher, session_ref, token_id
from broker.audit.otel import OtelExport
from broker.audit.sink import ChainHead, FileSink, Sink

_log = logging.getLogger(__name__)
_WAKE_AT = 4096
_MAX_WAITING = 200_000


class AuditTrail:
    def __init__(
        self,
        sink: Sink,
        *,
        instance: str,
        users: UserHasher,
        head: ChainHead | None = None,
        flush_interval: timedelta = timedelta(milliseconds=200),
        otel: OtelExport | None = None,
    ) -> None:
        self.instance = instance
        # The file written, if the sink is one (None: the log stream).
        self.path: Path | None = sink.path if isinstance(sink, FileSink) else None
        self._sink = sink
        self._users = users
        self._otel = otel
        head = head or ChainHead()
        self._seq, self._prev = head.seq, head.hash
        self._waiting: deque[AuditEvent] = deque()
        self._lost = 0
        self._sink_failed = False
        self._interval_s = flush_interval.total_seconds()
        self._wake = threading.Event()
        self._drain_lock = threading.Lock()  # the writer thread and close() both drain
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._writer.start()

    def call(
        self,
        *,
        rpc: str,
        event: str,
        outcome: str,
        caller: str | None,
        tenant: str | None = None,
        target: str | None = None,
        token: str | None = None,
        session_key: str | None = None,
        pid: str | None = None,
        patient: str | None = None,
        purpose: str | None = None,
        decision: str | None = None,
    ) -> None:
        """Records one RPC's event: token, session key, pid and patient come in raw; only their (keyed)
        hashes go out."""
        self.add(
            AuditEvent(
                now_ns(),
                event,
                rpc,
                outcome,
                caller,
                tenant,
                target,
                None if token is None else token_id(token),
                None,
                None if session_key is None else session_ref(session_key),
                None if pid is None else self._users(pid),
                None if patient is None else self._users(patient),
                purpose,
                decision,
            )
        )

    def user(self, pid: str) -> str:
        return self._users(pid)

    def add(self, event: AuditEvent) -> None:
        waiting = len(self._waiting)
        if waiting >= _WAKE_AT:
            self._wake.set()
            if waiting >= _MAX_WAITING:
                self._lost += 1
                return
        self._waiting.append(event)

    def flush(self) -> None:
        """Seals and writes every queued event now (tests, and close)."""
        with self._drain_lock:
            self._drain()

    def close(self) -> None:
        """Records `trail.closed`, writes everything still queued and closes the sink; idempotent."""
        if self._closed:
            return
        self.add(AuditEvent(now_ns(), "trail.closed", outcome="OK"))
        self._closed = True
        self._wake.set()
        self._writer.join(timeout=10)
        self.flush()
        self._sink.close()
        if self._otel is not None:
            self._otel.close()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            self.flush()

    def _drain(self) -> None:
        if self._sink_failed and not self._write(""):
            return  # still failing: the events wait in the (bounded) queue, not as sealed text
        events = []
        if self._lost:
            lost, self._lost = self._lost, 0
            events.append(
                AuditEvent(now_ns(), "trail.lost", outcome="LOST", detail=f"{lost} events not kept")
            )
        waiting = self._waiting
        while waiting:
            events.append(waiting.popleft())
        lines = []
        for event in events:
            self._seq += 1
            line, self._prev = seal_members(
                members_of(event, seq=self._seq, instance=self.instance), self._prev
            )
            lines.append(line)
            if self._otel is not None:
                fields = fields_of(event, seq=self._seq, instance=self.instance)
                self._otel.emit(event.time_ns, line[:-1], fields)
        self._write("".join(lines))

    def _write(self, text: str) -> bool:
        try:
            self._sink.write(text)
        except OSError as exc:
            if not self._sink_failed:
                _log.error("cannot write the audit trail (%s); records wait in memory", exc.strerror)
            self._sink_failed = True
            return False
        if self._sink_failed:
            _log.warning("the audit trail is written again")
            self._sink_failed = False
        return True
