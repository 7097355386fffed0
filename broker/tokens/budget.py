"""A budget of requests per second toward the STS for background work (warm-up and refreshes).

Only requests that really go to the STS spend it, nearly: a refresh whose token another replica renewed
first (its notice brings the token) is never started, so replicas that all schedule the same warm tenants
do not starve each other; only a refresh racing another replica's write spends it for nothing. Callers
that wait for a token never wait for the budget.
"""

from __future__ import annotations

import asyncio
import time


class RequestBudget:
    """A token bucket: at most `rate` starts per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("the budget must be above zero requests per second")
        self._rate = rate
        self._burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self._burst
        self._stamp = time.monotonic()

    async def take(self) -> bool:
        """Takes one request's worth; True when it had to wait for it (the world may have moved on)."""
        waited = False
        while True:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return waited
            waited = True
            await asyncio.sleep((1 - self._tokens) / self._rate)
