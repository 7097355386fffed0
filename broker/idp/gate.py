"""The one door to an STS: every request (discovery, JWKS, token, PAR, revocation) passes its breaker.

Outcomes, as the breaker counts them:
- an answer (a token, a document, or an OAuth refusal: any BrokerError but IdpUnavailableError) closes it;
- an outage (IdpUnavailableError: network fault, timeout, 5xx, 429) counts toward opening it;
- a cancellation (the caller's deadline ran out, or the broker stops) counts as nothing, and frees the
  half-open trial if it was one.
While the circuit is open a request fails at once, before it waits for one of the slots that cap requests
in flight (slots held by requests to a hung STS would otherwise make every caller wait its deadline).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from broker.errors import BrokerError, IdpUnavailableError
from broker.idp.breaker import CircuitBreaker
from broker.telemetry import Metrics, tracer

T = TypeVar("T")


def _no_record(seconds: float, outcome: str) -> None:
    return None


class StsGate:
    """Breakers per issuer (issuers come from the configuration, so the map is bounded) and a slot cap."""

    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        breaker_factory: Callable[[str], CircuitBreaker] | None = None,
        max_concurrent_requests: int = 32,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._breaker_factory = breaker_factory or (
            lambda issuer: CircuitBreaker(issuer, on_transition=self._metrics.breaker)
        )
        self._breakers: dict[str, CircuitBreaker] = {}
        # Requests beyond this wait here, in order, instead of piling up in the HTTP client's pool, whose
        # bookkeeping grows with its queue (httpcore's connection assignment) until a replica stalls.
        self._in_flight = asyncio.Semaphore(max_concurrent_requests)

    def breaker(self, issuer: str) -> CircuitBreaker:
        breaker = self._breakers.get(issuer)
        if breaker is None:
            breaker = self._breakers[issuer] = self._breaker_factory(issuer)
        return breaker

    async def call(
        self, issuer: str, span: str, request: Callable[[], Awaitable[T]], *, token_request: bool = False
    ) -> T:
        """Runs `request` (one exchange with the STS, nonce retry included) behind the issuer's breaker.

        Token requests are timed in `broker.sts.duration`, which counts token requests only."""
        breaker = self.breaker(issuer)
        record = self._metrics.sts_request if token_request else _no_record
        breaker.raise_if_open()
        async with self._in_flight:
            trial = breaker.before_request()
            started = time.monotonic()
            with tracer.start_as_current_span(span, attributes={"broker.issuer": issuer}):
                try:
                    result = await request()
                except IdpUnavailableError:
                    breaker.failed()
                    record(time.monotonic() - started, "unavailable")
                    raise
                except BrokerError:
                    breaker.succeeded()  # the STS answered; a refusal is not an outage
                    record(time.monotonic() - started, "rejected")
                    raise
                except BaseException:
                    breaker.abandoned(trial)  # cancelled: says nothing about the STS
                    raise
        breaker.succeeded()
        record(time.monotonic() - started, "ok")
        return result
