"""The [telemetry] section: defaults, every field read, and a mistake names its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.config import BrokerConfig, TelemetrySettings, parse_config
from broker.errors import ConfigurationError


def parse(telemetry: dict[str, Any] | None, tmp_path: Path) -> BrokerConfig:
    raw: dict[str, Any] = {"clients": {}, "targets": {}, "tenants": {}}
    if telemetry is not None:
        raw["telemetry"] = telemetry
    return parse_config(raw, base_dir=tmp_path, environ={})


def test_telemetry_is_text_logs_at_info_and_no_exporters_when_the_section_is_absent(tmp_path: Path) -> None:
    assert parse(None, tmp_path).telemetry == TelemetrySettings(
        log_format="text",
        log_level="INFO",
        prometheus_listen=None,
        otlp_endpoint=None,
        trace_sample_ratio=1.0,
    )


def test_every_telemetry_field_is_read_when_all_are_given(tmp_path: Path) -> None:
    telemetry = {
        "log_format": "json",
        "log_level": "debug",
        "prometheus_listen": "0.0.0.0:9464",
        "otlp_endpoint": "http://otel-collector:4318",
        "trace_sample_ratio": 0,
    }
    assert parse(telemetry, tmp_path).telemetry == TelemetrySettings(
        log_format="json",
        log_level="DEBUG",
        prometheus_listen="0.0.0.0:9464",
        otlp_endpoint="http://otel-collector:4318",
        trace_sample_ratio=0.0,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("log_format", "xml"),
        ("log_level", "LOUD"),
        ("log_level", 10),
        ("prometheus_listen", "9464"),
        ("prometheus_listen", ":9464"),
        ("prometheus_listen", "localhost:http"),
        ("prometheus_listen", "localhost:70000"),
        ("prometheus_listen", 9464),
        ("otlp_endpoint", "otel-collector:4318"),
        ("otlp_endpoint", "grpc://otel-collector:4317"),
        ("otlp_endpoint", 4318),
        ("trace_sample_ratio", 1.5),
        ("trace_sample_ratio", -0.1),
        ("trace_sample_ratio", "1"),
        ("trace_sample_ratio", True),
        ("exporter", "zipkin"),
    ],
)
def test_start_stops_with_the_field_named_when_a_telemetry_value_is_wrong(
    name: str, value: object, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse({name: value}, tmp_path)
    assert raised.value.field == f"telemetry.{name}"
