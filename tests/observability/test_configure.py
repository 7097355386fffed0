"""configure_telemetry: what it installs, once per process, and where each worker's scrape endpoint is.

Only the tests that install nothing run in this process; the others run a Python or a broker of their own.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from opentelemetry import metrics, trace

from broker.config import TelemetrySettings
from broker.errors import ConfigurationError
from broker.observability import configure_telemetry
from tests.fixtures.broker_server import sfm_clients
from tests.fixtures.redis_server import free_port
from tests.observability.broker_process import broker_process, wait_until, write_config


def test_nothing_is_installed_when_no_exporter_is_configured() -> None:
    telemetry = configure_telemetry(TelemetrySettings(log_format="json"), service_instance="test")
    assert telemetry.meter_provider is None
    assert telemetry.tracer_provider is None
    assert telemetry.prometheus_port is None
    assert type(metrics.get_meter_provider()).__module__.startswith("opentelemetry.metrics")
    assert type(trace.get_tracer_provider()).__module__.startswith("opentelemetry.trace")
    telemetry.shutdown()


def test_start_stops_with_the_field_named_when_the_prometheus_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = TelemetrySettings(prometheus_listen=f"127.0.0.1:{port}")
        with pytest.raises(ConfigurationError) as raised:
            configure_telemetry(settings, service_instance="test")
    assert raised.value.field == "telemetry.prometheus_listen"
    # Refused before anything was installed: this process's providers are still the API's.
    assert type(metrics.get_meter_provider()).__module__.startswith("opentelemetry.metrics")


SECOND_INSTALL = """
from broker.config import TelemetrySettings
from broker.observability import configure_telemetry
settings = TelemetrySettings(prometheus_listen="127.0.0.1:0")
first = configure_telemetry(settings, service_instance="first")
try:
    configure_telemetry(settings, service_instance="second")
except RuntimeError as exc:
    print("refused:", exc)
first.shutdown()
"""


def test_second_installation_is_refused_when_this_process_has_installed_providers() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SECOND_INSTALL], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: OpenTelemetry providers can be installed only once per process")


def two_free_ports() -> int:
    """A port P such that P and P + 1 are both free now."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


def _scrape(metrics_port: int) -> str | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
    except httpx.TransportError:
        return None
    return response.text if response.status_code == 200 else None


def test_each_worker_serves_metrics_on_port_plus_its_index_when_the_broker_runs_two_workers(
    tmp_path: Path,
) -> None:
    base = two_free_ports()
    telemetry = f'prometheus_listen = "127.0.0.1:{base}"'
    # No STS is asked: nothing is warmed and no call is made.
    config = write_config(tmp_path, "https://helseid-sts.test.nhn.no", sfm_clients(), telemetry, workers=2)
    # SIGINT: the workers' parent stops them before it exits.
    with broker_process(config, free_port(), stop_signal=signal.SIGINT) as broker:
        wait_until(broker, lambda: None not in (_scrape(base), _scrape(base + 1)), "two scrape endpoints")
        scrapes = [_scrape(base), _scrape(base + 1)]
        assert broker.stop() == 0, broker.output()
    for scrape in scrapes:
        assert scrape is not None
        assert "process_resident_memory_bytes" in scrape
    lines = broker.output().splitlines()
    for index, port in enumerate((base, base + 1)):
        assert any(f"broker-worker-{index} " in line and f"on port {port}," in line for line in lines)
