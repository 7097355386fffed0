"""A circuit breaker per STS: after repeated outages the broker stops asking for a while, then tries once.

closed    requests flow; `threshold` consecutive outage failures open the circuit
open      requests fail at once with IdpUnavailableError (RetryInfo = time left) until `cool_down` passes
half-open one trial request is let through; success closes the circuit, failure opens it again

Only outages count (network faults, timeouts, 5xx, 429). An OAuth error such as invalid_client is an answer,
not an outage, and does not open the circuit. A request its caller gave up on (cancelled at the caller's
deadline) counts as neither: the caller's patience says nothing about the STS, and a cancelled half-open
trial frees the circuit for the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from broker.errors import IdpUnavailableError

_log = logging.getLogger(__name__)


class CircuitBreaker:
    def __init__(
        self,
        issuer: str,
        *,
        threshold: int = 5,
        cool_down: timedelta = timedelta(seconds=5),
        monotonic: Callable[[], float] = time.monotonic,
        on_transition: Callable[[str, str], None] | None = None,
    ) -> None:
        self.issuer = issuer
        self._threshold = threshold
        self._cool_down = cool_down.total_seconds()
        self._monotonic = monotonic
        self._on_transition = on_transition
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._monotonic() - self._opened_at >= self._cool_down else "open"

    @property
    def failures(self) -> int:
        """Outages in a row since the last answer."""
        return self._failures

    def raise_if_open(self) -> None:
        """Raises IdpUnavailableError while the circuit is open, or while the half-open trial runs."""
        if self._opened_at is None:
            return
        left = self._cool_down - (self._monotonic() - self._opened_at)
        if left > 0 or self._trial_running:
            wait = timedelta(seconds=max(left, 0.5))
            raise IdpUnavailableError(
                "the STS is failing; the broker waits before asking again",
                issuer=self.issuer,
                retry_after=wait,
            )

    def before_request(self) -> bool:
        """Lets a request through or raises like raise_if_open; True when it is the half-open trial."""
        self.raise_if_open()
        if self._opened_at is None:
            return False
        self._trial_running = True
        return True

    def succeeded(self) -> None:
        if self._opened_at is not None:
            self._transition("closed")
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def abandoned(self, trial: bool) -> None:
        """The request ended without an answer (cancelled): if it was the half-open trial, another may try.

        Other requests leave the trial alone: one that began while the circuit was closed and is cancelled
        now must not let a second trial start beside the running one."""
        if trial:
            self._trial_running = False

    def failed(self) -> None:
        self._trial_running = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self._threshold:
            if self._opened_at is None:
                _log.warning("circuit to %s opened after %d failures", self.issuer, self._failures)
            self._opened_at = self._monotonic()
            self._transition("open")

    def _transition(self, state: str) -> None:
        if self._on_transition is not None:
            self._on_transition(self.issuer, state)
