"""Where the broker's telemetry goes: the OpenTelemetry SDK behind `broker.telemetry`, and the logs.

`broker/telemetry.py` declares every instrument and span on the OpenTelemetry API; until an SDK is installed
they are no-ops. `configure_telemetry` installs one, per the `[telemetry]` settings:

- a Prometheus scrape endpoint (`prometheus_listen`; worker N of a multi-process broker serves on port + N),
- OTLP over HTTP/protobuf (`otlp_endpoint`) for metrics and for the spans of the slow path.

Both readers add `grpc.server.call.duration` to what they collect: the broker aggregates it outside the SDK
(`broker.telemetry.RpcDurations`, cheap enough for a cache hit) and hands it over as the SDK's own
cumulative histogram data, so Prometheus and OTLP see one more histogram like any other.

With neither set nothing is installed: the API stays a no-op and nothing is collected.

`configure_logging` sets up the root logger: text or one JSON object per line, always through
`SecretMaskingFilter`, which masks anything shaped like a JWT, a PEM private key or a private JWK member.
The broker never logs a secret; the filter is defence in depth, not the mechanism.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from wsgiref.simple_server import WSGIServer

from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from broker import __version__
from broker.config import TelemetrySettings
from broker.errors import ConfigurationError
from broker.telemetry import (
    METER_NAME,
    PROCESS_RPC_DURATIONS,
    RPC_DURATION,
    RPC_METHOD,
    RPC_STATUS,
    RpcDurations,
)

__all__ = [
    "SERVICE",
    "JSONFormatter",
    "SecretMaskingFilter",
    "Telemetry",
    "configure_logging",
    "configure_telemetry",
    "mask_secrets",
    "process_instance_id",
]

SERVICE = "helseid-token-broker"

_log = logging.getLogger(__name__)

# The SDK's default buckets are made for milliseconds; the broker's histograms are in seconds.
_STS_DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_TIME_TO_EXPIRY_BUCKETS_S = (0, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)


@dataclass
class Telemetry:
    """What `configure_telemetry` installed; `shutdown()` flushes the exporters and stops the endpoint."""

    meter_provider: MeterProvider | None = None
    tracer_provider: TracerProvider | None = None
    # The port the Prometheus endpoint listens on (the chosen one if the setting said port 0).
    prometheus_port: int | None = None
    _server: WSGIServer | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


class _Process:
    """OpenTelemetry's global providers can be set once per process; this remembers that we did."""

    lock: ClassVar[threading.Lock] = threading.Lock()
    installed: ClassVar[bool] = False


def process_instance_id() -> str:
    """`service.instance.id`: host name and process id, unique among the broker's running processes."""
    return f"{socket.gethostname()}-{os.getpid()}"


def configure_telemetry(settings: TelemetrySettings, *, service_instance: str, worker: int = 0) -> Telemetry:
    """Installs the SDK's meter and tracer providers with the configured exporters, once per process.

    Raises ConfigurationError if the Prometheus endpoint cannot listen, and RuntimeError if this process
    has installed providers before (OpenTelemetry would silently keep the first ones).
    """
    if settings.prometheus_listen is None and settings.otlp_endpoint is None:
        return Telemetry()
    with _Process.lock:
        if _Process.installed:
            raise RuntimeError("OpenTelemetry providers can be installed only once per process")
        resource = Resource.create(
            {SERVICE_NAME: SERVICE, SERVICE_VERSION: __version__, SERVICE_INSTANCE_ID: service_instance}
        )
        readers: list[MetricReader] = []
        server: WSGIServer | None = None
        if settings.prometheus_listen is not None:
            reader, server = _prometheus(settings.prometheus_listen, worker)
            readers.append(reader)
        if settings.otlp_endpoint is not None:
            exporter = OTLPMetricExporter(endpoint=_signal_url(settings.otlp_endpoint, "metrics"))
            readers.append(_PeriodicReader(exporter))
        meter_provider = MeterProvider(resource=resource, metric_readers=readers, views=_views())
        metrics.set_meter_provider(meter_provider)
        tracer_provider = None
        if settings.otlp_endpoint is not None:
            tracer_provider = _tracer_provider(resource, settings.otlp_endpoint, settings.trace_sample_ratio)
            trace.set_tracer_provider(tracer_provider)
        _Process.installed = True
    port = server.server_port if server is not None else None
    if port is not None:
        _log.info("prometheus metrics on port %d, path /metrics", port)
    return Telemetry(meter_provider, tracer_provider, port, server)


def _prometheus(listen: str, worker: int) -> tuple[PrometheusMetricReader, WSGIServer]:
    host, _, port_text = listen.rpartition(":")
    # Worker N listens on port + N; port 0 (any free port, logged below) stays 0 for every worker.
    port = int(port_text) + worker if int(port_text) else 0
    # A registry of our own: the broker's metrics and the process's, nothing a library registered globally.
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    reader = _PrometheusReader(registry=registry)
    try:
        server, _ = start_http_server(port, addr=host.strip("[]"), registry=registry)
    except OSError as exc:
        raise ConfigurationError(
            "telemetry.prometheus_listen", f"cannot listen on {host}:{port} ({exc.strerror})"
        ) from exc
    return reader, server


class _PrometheusReader(PrometheusMetricReader):
    # `_receive_metrics` is the one method a MetricReader implements: what every collection hands over.
    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        super()._receive_metrics(with_rpc_durations(metrics_data), timeout_millis, **kwargs)


class _PeriodicReader(PeriodicExportingMetricReader):
    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        super()._receive_metrics(with_rpc_durations(metrics_data), timeout_millis, **kwargs)


def with_rpc_durations(data: MetricsData, durations: RpcDurations = PROCESS_RPC_DURATIONS) -> MetricsData:
    """`data` and, in the broker's scope, `grpc.server.call.duration` as a cumulative histogram."""
    points = [
        HistogramDataPoint(
            attributes={RPC_METHOD: series.method, RPC_STATUS: series.status},
            start_time_unix_nano=durations.start_time_ns,
            time_unix_nano=time.time_ns(),
            count=sum(series.bucket_counts),  # the buckets, not a count of its own: they must agree
            sum=series.total,
            bucket_counts=series.bucket_counts,
            explicit_bounds=durations.boundaries,
            min=series.min,
            max=series.max,
        )
        for series in durations.snapshot()
    ]
    if not points:
        return data
    histogram = HistogramData(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE)
    description = "Duration of calls to the broker's service, by method and status (gRFC A66)"
    metric = Metric(name=RPC_DURATION, description=description, unit="s", data=histogram)
    scope = ScopeMetrics(scope=InstrumentationScope(METER_NAME), metrics=[metric], schema_url="")
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=resource.resource,
                scope_metrics=[*resource.scope_metrics, scope],
                schema_url=resource.schema_url,
            )
            for resource in data.resource_metrics
        ]
    )


def _signal_url(endpoint: str, signal: str) -> str:
    # As OTEL_EXPORTER_OTLP_ENDPOINT: the base URL of the receiver; each signal has its own path.
    return f"{endpoint.rstrip('/')}/v1/{signal}"


def _tracer_provider(resource: Resource, endpoint: str, ratio: float) -> TracerProvider:
    # Parent-based: a caller's sampled trace context decides first; the ratio applies to new traces.
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(ratio)))
    exporter = OTLPSpanExporter(endpoint=_signal_url(endpoint, "traces"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _views() -> list[View]:
    def buckets(name: str, boundaries: tuple[float, ...]) -> View:
        aggregation = ExplicitBucketHistogramAggregation(boundaries)
        return View(instrument_type=Histogram, instrument_name=name, aggregation=aggregation)

    return [
        buckets("broker.sts.duration", _STS_DURATION_BUCKETS_S),
        buckets("broker.token.time_to_expiry", _TIME_TO_EXPIRY_BUCKETS_S),
    ]


# --- logs ------------------------------------------------------------------------------------------------

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_TEXT_FORMAT_WORKER = "%(asctime)s %(processName)s %(levelname)s %(name)s %(message)s"
# One line per HTTP request to the STS is noise unless DEBUG is asked for.
_NOISY_LOGGERS = ("httpx", "httpcore", "aiohttp.access")


def configure_logging(settings: TelemetrySettings, *, worker: bool = False) -> None:
    """Replaces the root logger's handlers by one on stderr, in the configured format, masking secrets."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT_WORKER if worker else _TEXT_FORMAT))
    handler.addFilter(SecretMaskingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    logging.captureWarnings(True)  # so that warnings, too, come out in the configured format


_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,4}")
# Raw or inside a JSON string (escaped newlines); a cut-off key is masked to its last base64 character.
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
    r"(?:[A-Za-z0-9+/=\s]|\\[nr])*"
    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----)?"
)
# The private members of a JWK (RFC 7518 section 6: EC and OKP "d"; RSA "d" "p" "q" "dp" "dq" "qi";
# symmetric "k"), in JSON or in a Python dict's repr.
_JWK_PRIVATE_MEMBER = re.compile(r"""(["'])(d|p|q|dp|dq|qi|k)\1(\s*:\s*)(["'])[A-Za-z0-9_\-+/=]+\4""")


def mask_secrets(text: str) -> str:
    """`text` with JWTs, PEM private keys and private JWK members replaced by markers."""
    if "eyJ" in text:
        text = _JWT.sub("[redacted jwt]", text)
    if "PRIVATE KEY-----" in text:
        text = _PEM_PRIVATE_KEY.sub("[redacted private key]", text)
    return _JWK_PRIVATE_MEMBER.sub(r"\1\2\1\3\4[redacted]\4", text)


_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }


class SecretMaskingFilter(logging.Filter):
    """Masks secrets in a record's message (after its arguments are merged in), traceback and extras."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = None  # a broken format string: logging reports it when the record is emitted
        if message is not None:
            masked = mask_secrets(message)
            if masked != message:
                record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        for key, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, key, mask_secrets(value))
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id/span_id inside a span, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = trace.format_trace_id(context.trace_id)
            entry["span_id"] = trace.format_span_id(context.span_id)
        if record.processName not in {None, "MainProcess"}:
            entry["process"] = record.processName
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        # Extras may be structures the filter does not look into; mask the whole line once more.
        return mask_secrets(json.dumps(entry, default=str, ensure_ascii=False))
