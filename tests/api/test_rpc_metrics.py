"""`grpc.server.call.duration` and `grpc.server.call.started` as the guard records them, over real gRPC.

The export (Prometheus scrape, OTLP) is tested on a whole broker process in tests/observability/; here a
server in the test's loop shows what the guard records for each outcome: unary and stream, OK and refused.
"""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from broker.api.server import create_server
from broker.app import build_broker
from broker.telemetry import Metrics, RpcDurations
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import broker_config, sfm_clients

SERVICE = "broker.v1.TokenBrokerService"


async def test_guard_records_each_calls_duration_by_full_method_and_status_name() -> None:
    durations = RpcDurations()
    # A provider of the test's own (the global one is never installed in the test process).
    reader = InMemoryMetricReader()
    metrics = Metrics(MeterProvider(metric_readers=[reader]).get_meter("broker"), rpc_durations=durations)
    # No token is asked for: the authority is never reached.
    broker = build_broker(broker_config("https://sts.invalid", sfm_clients()), metrics=metrics)
    server, port, _ = create_server(broker.engine, "127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
            for _ in range(3):
                await stub.GetBrokerInfo(pb.GetBrokerInfoRequest(), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await stub.GetToken(pb.GetTokenRequest(tenant="nobody", target="sfm"), timeout=10)
            watch = stub.WatchToken(pb.WatchTokenRequest(tenant="nobody", target="sfm"), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as unwatched:
                await watch.read()
    finally:
        await server.stop(grace=None)
        await broker.engine.close()
        await broker.sts.close()
    assert unknown.value.code() == unwatched.value.code() == grpc.StatusCode.NOT_FOUND
    series = {(s.method, s.status): s for s in durations.snapshot()}
    counts = {key: sum(s.bucket_counts) for key, s in series.items()}
    assert counts == {
        (f"{SERVICE}/GetBrokerInfo", "OK"): 3,
        (f"{SERVICE}/GetToken", "NOT_FOUND"): 1,
        (f"{SERVICE}/WatchToken", "NOT_FOUND"): 1,
    }
    info = series[(f"{SERVICE}/GetBrokerInfo", "OK")]
    assert 0 < info.min <= info.max < 1  # seconds, not milliseconds
    assert 3 * info.min <= info.total <= 3 * info.max
    collected = reader.get_metrics_data()
    assert collected is not None
    started = {
        point.attributes["grpc.method"]: point.value  # type: ignore[index, union-attr]
        for resource in collected.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "grpc.server.call.started"
        for point in metric.data.data_points
    }
    assert started == {f"{SERVICE}/GetBrokerInfo": 3, f"{SERVICE}/GetToken": 1, f"{SERVICE}/WatchToken": 1}
    print(f"guard recorded: {counts}; started: {started}; GetBrokerInfo max {info.max * 1e6:.0f} us")


def test_a_duration_on_a_boundary_counts_in_the_bucket_it_closes() -> None:
    durations = RpcDurations((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.01, 0.02):
        durations.record("s/M", "OK", seconds)
    (series,) = durations.snapshot()
    # OpenTelemetry's explicit buckets: (-inf, 0.001], (0.001, 0.01], (0.01, +inf)
    assert series.bucket_counts == [2, 1, 1]
    assert series.total == pytest.approx(0.0315)
    assert (series.min, series.max) == (0.0005, 0.02)
