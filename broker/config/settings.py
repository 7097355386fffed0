"""What the rest of the broker reads: frozen settings, built from a validated file by `domain.py`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from broker.audit import AuditSettings
from broker.model import Caller, Client, ServiceAccountIssuer, Target, Tenant
from broker.store.redis_client import RedisAddress

DEFAULT_LISTEN = "127.0.0.1:50051"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    listen: str = DEFAULT_LISTEN
    workers: int = 1
    # PEM; with a certificate the server speaks TLS only; with a client CA it demands client certificates.
    tls_certificate: bytes | None = field(default=None, repr=False)
    tls_private_key: bytes | None = field(default=None, repr=False)
    tls_client_ca: bytes | None = field(default=None, repr=False)
    # Whose Kubernetes service-account tokens identify callers (`service_account = "ns:name"`).
    service_account_tokens: ServiceAccountIssuer | None = None
    # WatchToken streams one broker process holds; one more is refused (TOO_MANY_STREAMS), not queued.
    max_watch_streams: int = 10_000


@dataclass(frozen=True, slots=True)
class StoreSettings:
    kind: str = "memory"
    url: str | None = field(default=None, repr=False)  # may hold the Redis password
    # AES-256-GCM key for values at rest in Redis; required with kind = "redis".
    encryption_key: bytes | None = field(default=None, repr=False)
    # Redis Sentinel: (host, port) of each sentinel, and the service name of the master they watch.
    sentinels: tuple[tuple[str, int], ...] = ()
    service_name: str | None = None
    # Redis Cluster: (host, port) of some of its nodes.
    nodes: tuple[tuple[str, int], ...] = ()

    @property
    def address(self) -> RedisAddress:
        return RedisAddress(
            url=self.url, sentinels=self.sentinels, service_name=self.service_name, nodes=self.nodes
        )


DEFAULT_EXPIRY_SKEW = timedelta(seconds=30)
DEFAULT_CONNECT_TIMEOUT = timedelta(seconds=3)
DEFAULT_REQUEST_TIMEOUT = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    # A token is never served later than its expiry minus this skew.
    expiry_skew: timedelta = DEFAULT_EXPIRY_SKEW
    # Stale (served, and refreshed in the background) from this fraction of the lifetime, +/- jitter.
    refresh_fraction: float = 0.5
    jitter_fraction: float = 0.1
    # How long a replica may hold a key's fetch lease before it must renew it.
    lease_ttl: timedelta = timedelta(seconds=10)
    # Background requests per second toward the STS (warm-up and refreshes), per replica.
    refresh_budget_per_s: float = 20.0


@dataclass(frozen=True, slots=True)
class StsSettings:
    connect_timeout: timedelta = DEFAULT_CONNECT_TIMEOUT
    request_timeout: timedelta = DEFAULT_REQUEST_TIMEOUT
    # The circuit opens after this many outage failures in a row and stays open for the cool-down.
    breaker_threshold: int = 5
    breaker_cool_down: timedelta = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    # STS requests a caller may drive (StartLogin, CompleteLogin, EndSession, exchange misses), per broker
    # process: the average rate and the burst. A login is two (PAR, then the code); 5/s is 2.5 logins a
    # second for one front end, and 50 covers a shift change's logins at once.
    sts_requests_per_caller_per_s: float = 5.0
    sts_burst: int = 50
    # Per-caller rates (`[callers.<name>] sts_requests_per_s`) that differ from the default.
    caller_rates: Mapping[str, float] = field(default_factory=dict)


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    log_format: str = "text"
    log_level: str = "INFO"
    # "host:port" of the Prometheus scrape endpoint; worker N of a multi-process broker serves on port + N.
    prometheus_listen: str | None = None
    # Base URL of an OTLP/HTTP receiver (the collector's :4318); /v1/traces and /v1/metrics are appended.
    otlp_endpoint: str | None = None
    trace_sample_ratio: float = 1.0
    # A server span for every RPC (the root of "RPC -> cache -> STS" traces). Off, only cache misses have
    # spans; on by default when traces are exported at all. It costs the hit path some microseconds.
    trace_rpcs: bool | None = None

    @property
    def traces_rpcs(self) -> bool:
        return self.otlp_endpoint is not None if self.trace_rpcs is None else self.trace_rpcs


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    clients: Mapping[str, Client]
    targets: Mapping[str, Target]
    tenants: Mapping[str, Tenant]
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    cache: CacheSettings = CacheSettings()
    sts: StsSettings = StsSettings()
    limits: LimitsSettings = LimitsSettings()
    # No callers: the broker serves anyone who reaches it, which it allows only on a loopback address.
    callers: Mapping[str, Caller] = field(default_factory=dict)
    telemetry: TelemetrySettings = TelemetrySettings()
    audit: AuditSettings = field(default_factory=AuditSettings)
    # Where some tenants come from, one file each (`tenants_directory`); watched for changes while running.
    tenants_directory: Path | None = None
