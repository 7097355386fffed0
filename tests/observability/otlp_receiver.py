"""A tiny OTLP/HTTP receiver: accepts `POST /v1/traces` and `/v1/metrics` over real HTTP and keeps the
bodies, so a test can decode what the broker exported."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import HistogramDataPoint
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class OtlpReceiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, bytes]] = []  # (path, content type, body)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def record(self, path: str, content_type: str, body: bytes) -> None:
        with self._lock:
            self.requests.append((path, content_type, body))

    def bodies(self, path: str) -> list[bytes]:
        with self._lock:
            return [body for seen, _, body in self.requests if seen == path]

    def spans(self) -> list[Span]:
        return [
            span
            for body in self.bodies("/v1/traces")
            for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def metric_names(self) -> set[str]:
        names = set()
        for body in self.bodies("/v1/metrics"):
            for resource_metrics in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    names |= {metric.name for metric in scope_metrics.metrics}
        return names

    def last_histogram(self, name: str) -> list[HistogramDataPoint]:
        """The data points of histogram `name` in the last export that had it (cumulative: all so far)."""
        points: list[HistogramDataPoint] = []
        for body in self.bodies("/v1/metrics"):
            for resource_metrics in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if metric.name == name:
                            points = list(metric.histogram.data_points)
        return points


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver: OtlpReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.record(self.path, self.headers.get("Content-Type", ""), body)
            # An empty Export*ServiceResponse: full success.
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = OtlpReceiver(server)
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
