"""Every metric and span name of the broker, in one place (OpenTelemetry).

The cache-hit path only adds one to a plain integer: the served-token counts are exported by an observable
counter that reads them at collection time, so telemetry costs the hot path nothing measurable. Names and
label values never contain a token, an assertion, a proof or a key; tenants and targets are configuration
names, not secrets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

METER_NAME = "broker"
TRACER_NAME = "broker"

# Where a served token came from.
SOURCE_MEMORY = "memory"
SOURCE_STORE = "redis"
SOURCE_STS = "sts"

tracer = trace.get_tracer(TRACER_NAME)


class Metrics:
    """The broker's instruments. One instance per process; `NOOP` before telemetry is configured."""

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter(METER_NAME)
        self._served: Counter[tuple[str, str]] = Counter()
        self._failed: Counter[str] = Counter()
        meter.create_observable_counter(
            "broker.token.served",
            callbacks=[self._observe_served],
            unit="{token}",
            description="Tokens served to callers, by RPC and by where the token came from",
        )
        meter.create_observable_counter(
            "broker.request.failed",
            callbacks=[self._observe_failed],
            unit="{request}",
            description="Calls answered with an error, by ErrorInfo reason",
        )
        self._sts_latency = meter.create_histogram(
            "broker.sts.duration", unit="s", description="Duration of token requests to the STS, by outcome"
        )
        self._refreshes = meter.create_counter(
            "broker.token.refresh", unit="{refresh}", description="Background refreshes, by outcome"
        )
        self._nonce_retries = meter.create_counter(
            "broker.dpop.nonce_retry", unit="{retry}", description="Token requests retried for a DPoP nonce"
        )
        self._time_to_expiry = meter.create_histogram(
            "broker.token.time_to_expiry",
            unit="s",
            description="Remaining lifetime of tokens when they are fetched or renewed",
        )
        self._lease_contention = meter.create_counter(
            "broker.lease.contention",
            unit="{wait}",
            description="Fetches that waited for another replica's lease",
        )
        self._store_errors = meter.create_counter(
            "broker.cache.errors", unit="{error}", description="Failed operations on the shared store (Redis)"
        )
        self._breaker = meter.create_counter(
            "broker.sts.circuit", unit="{transition}", description="Circuit-breaker transitions per STS"
        )

    # hot path: a dict increment, nothing else
    def served(self, rpc: str, source: str) -> None:
        self._served[(rpc, source)] += 1

    def failed(self, reason: str) -> None:
        self._failed[reason] += 1

    def sts_request(self, seconds: float, outcome: str) -> None:
        self._sts_latency.record(seconds, {"outcome": outcome})

    def refresh(self, outcome: str) -> None:
        self._refreshes.add(1, {"outcome": outcome})

    def nonce_retry(self) -> None:
        self._nonce_retries.add(1)

    def time_to_expiry(self, seconds: float) -> None:
        self._time_to_expiry.record(seconds)

    def lease_contention(self) -> None:
        self._lease_contention.add(1)

    def store_error(self, operation: str) -> None:
        self._store_errors.add(1, {"operation": operation})

    def breaker(self, issuer: str, state: str) -> None:
        self._breaker.add(1, {"issuer": issuer, "state": state})

    def _observe_served(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"rpc": rpc, "source": source}) for (rpc, source), n in self._served.items()]

    def _observe_failed(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"reason": reason}) for reason, n in self._failed.items()]
