"""Hands the memory that closed streams freed back to the system (glibc's `malloc_trim`).

A WatchToken stream holds about 25 KB while open, most of it gRPC core's per-call memory, which gRPC's
threads allocate from glibc arenas of their own. When the stream closes that memory is freed, but glibc keeps
it in those arenas: the process's resident memory stays where the most streams took it (only new streams
reuse it; Python's own objects of a closed stream are gone, under 1 KB per stream remains). After many
streams have closed, `malloc_trim(0)` returns the free pages of every arena. It runs on a thread of the
default executor (a foreign call releases the GIL), so the event loop is not held while glibc walks its
arenas; it waits a second for a burst of closes to end, and runs at most every `every_s` seconds. Where
there is no `malloc_trim` (not glibc), nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from collections.abc import Callable

_log = logging.getLogger(__name__)
_SETTLE_S = 1.0  # after the closes that reach the threshold: the rest of a burst of closes comes first


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter is linked with
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrim:
    """Counts closed streams; after `after` of them, trims the heap (at most every `every_s` seconds)."""

    def __init__(self, *, after: int = 1000, every_s: float = 2.0) -> None:
        self._trim = _malloc_trim()
        self._after = after
        self._every_s = every_s
        self._closed = 0
        self._pending = False
        self._last = float("-inf")
        self.trims = 0  # trims done, since the start

    @property
    def available(self) -> bool:
        return self._trim is not None

    def closed(self, count: int = 1) -> None:
        if self._trim is None:
            return
        self._closed += count
        if self._closed < self._after or self._pending:
            return
        self._pending = True
        delay = max(_SETTLE_S, self._last + self._every_s - time.monotonic())
        asyncio.get_running_loop().call_later(delay, self._start)

    def _start(self) -> None:
        assert self._trim is not None
        self._closed = 0
        self._last = time.monotonic()
        done = asyncio.get_running_loop().run_in_executor(None, self._trim, 0)
        done.add_done_callback(self._done)

    def _done(self, done: asyncio.Future[int]) -> None:
        self._pending = False
        if done.cancelled():
            return
        failure = done.exception()
        if failure is not None:
            _log.warning("malloc_trim failed: %s", failure)
            return
        self.trims += 1
