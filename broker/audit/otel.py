"""Audit records as OpenTelemetry log records, exported over OTLP/HTTP to `<endpoint>/v1/logs`.

The trail's own LoggerProvider, not the global one: the audit export does not depend on (or change) how
the process's telemetry is set up. Each log record's body is the sealed line, so a collector or a log store
downstream holds what `verify` checks; its attributes are the record's fields, for queries.
The SDK's logs API lives in `opentelemetry.sdk._logs`, still marked as in development upstream.
"""

from __future__ import annotations

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

SCOPE = "broker.audit"


class OtelExport:
    def __init__(self, endpoint: str, instance: str) -> None:
        resource = Resource.create({"service.name": "helseid-token-broker", "service.instance.id": instance})
        self._provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        exporter = OTLPLogExporter(endpoint=f"{endpoint.rstrip('/')}/v1/logs")
        self._provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        self._logger = self._provider.get_logger(SCOPE)

    def emit(self, time_ns: int, line: str, fields: list[tuple[str, str | int]]) -> None:
        attributes = {f"audit.{name}": value for name, value in fields}
        self._logger.emit(
            LogRecord(
                timestamp=time_ns,
                severity_number=SeverityNumber.INFO,
                severity_text="AUDIT",
                body=line,
                attributes=attributes,
            )
        )

    def close(self) -> None:
        self._provider.shutdown()  # flushes what the batch processor still holds
