"""Whether the shared store answers: one log line when it goes, one when it returns, and "back" is sticky.

Every replica logs a Redis outage once. A store that just came back can still fail a call or two (a
connection opened before the restart, a script not yet loaded); those are counted by the caller but are
not a second outage. Only a failure `settle` or more after the return marks the store down again, so a
real new outage is logged at most `settle` late and a restart's stragglers never.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

_log = logging.getLogger("broker.tokens.engine")  # the engine's logger: operators filter on it

SETTLE_S = 10.0


class StoreHealth:
    def __init__(self, *, settle_s: float = SETTLE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._settle_s = settle_s
        self._clock = clock
        self._down = False
        self._back_at = float("-inf")

    @property
    def down(self) -> bool:
        return self._down

    def failed(self, reason: str) -> None:
        if self._down:
            return
        if self._clock() - self._back_at < self._settle_s:
            _log.debug("shared store failed right after it came back (%s); not a new outage", reason)
            return
        self._down = True
        _log.warning("shared store unavailable, going on with process memory and the STS: %s", reason)

    def answered(self) -> None:
        if self._down:
            self._down = False
            self._back_at = self._clock()
            _log.info("shared store is back")
