"""A budget of requests per second toward the STS for background work (warm-up and refreshes).

Only requests that really go to the STS spend it, nearly: a refresh whose token another replica renewed
first (its notice brings the token) is never started, so replicas that all schedule the same warm tenants
do not starve each other; only a refresh racing another replica's write spends it for nothing. Callers
that wait for a token never wait for the budget.
"""

from __future__ import annotations

import asyncio
import math
import time


class RequestBudget:
    """A token bucket: at most `rate` starts per second on average, bursts up to `burst`.

    A caller that finds the bucket empty reserves the next free instant and sleeps until then, once: a
    thousand waiters cost a thousand wake-ups, not a thousand for every request granted (as when each woke to
    look again whenever one might be free: with the budget below the renewals due, that polling took most
    of a replica's CPU)."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("the budget must be above zero requests per second")
        self._rate = rate
        # A tenth of a second's worth at once: a whole second's (the bucket full after a lull) made the STS's
        # busiest second over twice its mean (10,000 tenants on 2 replicas).
        self._burst = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self._burst  # below zero: reservations of the waiting callers
        self._stamp = time.monotonic()

    @property
    def waiting(self) -> int:
        """Callers holding a reservation they wait for."""
        return max(0, -math.floor(self._tokens))

    def give_back(self) -> None:
        """Returns a request's worth that was taken and not spent (the work was done elsewhere meanwhile)."""
        self._tokens = min(self._burst, self._tokens + 1)

    async def take(self, within: float | None = None) -> bool:
        """Takes one request's worth; True when it had to wait for it (the world may have moved on).

        `within`: the most seconds this caller may wait (a token about to run out). It goes then, and its
        reservation stays: the callers behind it wait the longer, so the average rate still holds."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= 1
        if self._tokens >= 0:
            return False
        wait = -self._tokens / self._rate
        if within is not None:
            wait = min(wait, max(0.0, within))
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            self._tokens += 1  # the reservation goes back: a cancelled refresh spends nothing
            raise
        return True
