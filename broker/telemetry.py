"""Every metric and span name of the broker, in one place (OpenTelemetry).

The cache-hit path only adds one to a plain integer: the served-token counts are exported by an observable
counter that reads them at collection time, so telemetry costs the hot path nothing measurable. Names and
label values never contain a token, an assertion, a proof or a key; tenants and targets are configuration
names, not secrets.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

METER_NAME = "broker"
TRACER_NAME = "broker"

# Where a served token came from.
SOURCE_MEMORY = "memory"
SOURCE_STORE = "redis"
SOURCE_STS = "sts"

tracer = trace.get_tracer(TRACER_NAME)

# The gRPC server metrics of gRFC A66 and OpenTelemetry's gRPC semantic conventions, by these names and
# attributes, so dashboards made for any gRPC server read the broker's too.
RPC_DURATION = "grpc.server.call.duration"
RPC_STARTED = "grpc.server.call.started"
RPC_METHOD = "grpc.method"  # "broker.v1.TokenBrokerService/GetToken"
RPC_STATUS = "grpc.status"  # the status code's name: "OK", "UNAVAILABLE"
# From a cache hit (tens of microseconds) to an STS call (seconds, up to a caller's deadline).
RPC_DURATION_BUCKETS_S = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
)  # fmt: skip


@dataclass(slots=True)
class RpcDurationSeries:
    """The histogram of one method and status: counts per bucket (the last one past every boundary)."""

    method: str
    status: str
    boundaries: tuple[float, ...]
    bucket_counts: list[int]
    total: float = 0.0
    min: float = float("inf")
    max: float = 0.0

    # hot path
    def record(self, seconds: float) -> None:
        # OpenTelemetry's explicit buckets hold (previous boundary, boundary]: bisect_left finds that one.
        self.bucket_counts[bisect_left(self.boundaries, seconds)] += 1
        self.total += seconds
        # Comparisons, not min()/max(): a builtin call costs more on this path than the test it makes.
        if seconds < self.min:  # noqa: PLR1730
            self.min = seconds
        if seconds > self.max:  # noqa: PLR1730
            self.max = seconds


class RpcDurations:
    """Cumulative call-duration histograms, kept outside the OpenTelemetry SDK.

    The SDK's `Histogram.record` costs about 10 us per call in Python (attribute hashing, locks, exemplars),
    more than a whole cache hit; a series here costs a bisect and a few additions. `broker.observability`
    adds the series to what each of its readers collects, as the SDK's own histograms would be.
    """

    def __init__(self, boundaries: tuple[float, ...] = RPC_DURATION_BUCKETS_S) -> None:
        self.boundaries = boundaries
        self.start_time_ns = time.time_ns()
        self._series: dict[tuple[str, str], RpcDurationSeries] = {}

    def series(self, method: str, status: str) -> RpcDurationSeries:
        """The series of `method` and `status`, made at its first call."""
        found = self._series.get((method, status))
        if found is None:
            found = RpcDurationSeries(method, status, self.boundaries, [0] * (len(self.boundaries) + 1))
            self._series[(method, status)] = found
        return found

    def record(self, method: str, status: str, seconds: float) -> None:
        self.series(method, status).record(seconds)

    def snapshot(self) -> list[RpcDurationSeries]:
        """Copies of every series with calls (collection runs on an exporter's thread while calls go on
        recording; a method's OK series exists, empty, from the start)."""
        return [
            RpcDurationSeries(s.method, s.status, s.boundaries, list(s.bucket_counts), s.total, s.min, s.max)
            for s in list(self._series.values())
            if any(s.bucket_counts)
        ]


class MethodCalls:
    """One method's gRPC server metrics, bound once by the guard: calls started, and their durations.

    The guard adds to `started`, and records a call's duration through `ok` (a unary success, the hit path)
    or `ended` (any status): the series of a success is looked up once, here, so a cache hit pays no
    dictionary lookup for it.
    """

    __slots__ = ("_durations", "method", "ok", "started")

    def __init__(self, method: str, durations: RpcDurations) -> None:
        self.method = method
        self.started = 0
        self._durations = durations
        self.ok = durations.series(method, "OK").record

    def ended(self, status: str, seconds: float) -> None:
        self._durations.series(self.method, status).record(seconds)


# One per process, like the OpenTelemetry providers the readers belong to.
PROCESS_RPC_DURATIONS = RpcDurations()


class Metrics:
    """The broker's instruments. One instance per process; `NOOP` before telemetry is configured."""

    def __init__(self, meter: metrics.Meter | None = None, rpc_durations: RpcDurations | None = None) -> None:
        meter = meter or metrics.get_meter(METER_NAME)
        self._served: Counter[tuple[str, str]] = Counter()
        self._failed: Counter[str] = Counter()
        self._methods: list[MethodCalls] = []
        self.rpc_durations = rpc_durations or PROCESS_RPC_DURATIONS
        meter.create_observable_counter(
            RPC_STARTED,
            callbacks=[self._observe_started],
            unit="{call}",
            description="Calls the server started, by method (gRFC A66)",
        )
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
        self._reloads = meter.create_counter(
            "broker.config.reloads",
            unit="{reload}",
            description="Configuration reloads while running, by outcome: applied, or invalid (old one kept)",
        )
        # Client keys: how long each registered key has left (from Selvbetjening's expiration), each rotation
        # step, and whether a client's rotation is failing (1 until a rotation succeeds: alert on it).
        self._key_expiries: dict[tuple[str, str], float] = {}
        self._rotation_failing: dict[str, int] = {}
        meter.create_observable_gauge(
            "broker.client_key.remaining_lifetime",
            callbacks=[self._observe_key_lifetimes],
            unit="s",
            description="Seconds until each registered client key expires in HelseID, by client and kid",
        )
        meter.create_observable_gauge(
            "broker.key_rotation.failing",
            callbacks=[self._observe_rotation_failing],
            unit="1",
            description="1 while a client's key rotation is failing (the old key stays in use), else 0",
        )
        self._rotation_steps = meter.create_counter(
            "broker.key_rotation.steps",
            unit="{step}",
            description="Key rotation steps, by client, step and outcome",
        )

    # hot path: a dict increment, nothing else
    def served(self, rpc: str, source: str) -> None:
        self._served[(rpc, source)] += 1

    def failed(self, reason: str) -> None:
        self._failed[reason] += 1

    def rpc_method(self, method: str) -> MethodCalls:
        """The counters of one gRPC method (`grpc.server.call.started` and `.duration`), for the guard."""
        calls = MethodCalls(method, self.rpc_durations)
        self._methods.append(calls)
        return calls

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

    def config_reload(self, outcome: str) -> None:
        self._reloads.add(1, {"outcome": outcome})

    def key_expiry(self, client: str, kid: str, expires_at_epoch: float | None) -> None:
        """Remembers when a registered key expires (None: forget it, the key was dropped)."""
        if expires_at_epoch is None:
            self._key_expiries.pop((client, kid), None)
        else:
            self._key_expiries[(client, kid)] = expires_at_epoch

    def rotation_step(self, client: str, step: str, outcome: str) -> None:
        self._rotation_steps.add(1, {"client": client, "step": step, "outcome": outcome})

    def rotation_failing(self, client: str, failing: bool) -> None:
        self._rotation_failing[client] = int(failing)

    def _observe_key_lifetimes(self, options: CallbackOptions) -> Iterable[Observation]:
        now = time.time()
        return [
            Observation(expires - now, {"client": client, "kid": kid})
            for (client, kid), expires in self._key_expiries.items()
        ]

    def _observe_rotation_failing(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(failing, {"client": client}) for client, failing in self._rotation_failing.items()
        ]

    def _observe_served(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"rpc": rpc, "source": source}) for (rpc, source), n in self._served.items()]

    def _observe_started(self, options: CallbackOptions) -> Iterable[Observation]:
        started: Counter[str] = Counter()
        for calls in self._methods:  # a method served by more than one guard (the bench) is summed
            started[calls.method] += calls.started
        return [Observation(n, {RPC_METHOD: method}) for method, n in started.items() if n]

    def _observe_failed(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"reason": reason}) for reason, n in self._failed.items()]
