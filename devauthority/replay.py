"""Single-use identifiers (`jti`) for client assertions and DPoP proofs."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable


class ReplayCache:
    """Remembers identifiers until they could no longer be accepted anyway, then forgets them.

    An identifier only has to be remembered while the object carrying it would still pass its time
    checks; after that the time checks reject a replay on their own. So the cache stays as small as
    the traffic of the last minute or two, however long the authority runs.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._expiry: dict[Hashable, float] = {}
        self._queue: list[tuple[float, int, Hashable]] = []
        self._counter = 0  # tie-breaker, so the heap never compares two identifiers

    def seen(self, identifier: Hashable) -> bool:
        """Whether the identifier was used and is still remembered."""
        self._forget_expired()
        return identifier in self._expiry

    def remember(self, identifier: Hashable, until: float) -> None:
        """Mark the identifier used; it is remembered at least until ``until`` (epoch seconds)."""
        self._forget_expired()
        self._expiry[identifier] = max(until, self._expiry.get(identifier, until))
        self._counter += 1
        heapq.heappush(self._queue, (self._expiry[identifier], self._counter, identifier))

    def __len__(self) -> int:
        self._forget_expired()
        return len(self._expiry)

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._queue and self._queue[0][0] < now:
            expiry, _, identifier = heapq.heappop(self._queue)
            # A later remember() may have pushed the expiry out; only the newest entry counts.
            if self._expiry.get(identifier) == expiry:
                del self._expiry[identifier]
