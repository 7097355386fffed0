"""The call durations the broker aggregates itself, handed to the SDK's readers as histogram data."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    MetricsData,
    ResourceMetrics,
)
from opentelemetry.sdk.resources import Resource

from broker.observability import with_rpc_durations
from broker.telemetry import RpcDurations


def _collected() -> MetricsData:
    resource = Resource.create({"service.name": "test"})
    return MetricsData(resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[], schema_url="")])


def test_collected_metrics_gain_the_call_duration_histogram_when_calls_were_recorded() -> None:
    durations = RpcDurations((0.001, 0.01))
    durations.record("broker.v1.TokenBrokerService/GetToken", "OK", 0.0002)
    durations.record("broker.v1.TokenBrokerService/GetToken", "OK", 0.004)
    durations.record("broker.v1.TokenBrokerService/GetToken", "UNAVAILABLE", 1.5)
    collected = _collected()
    (resource,) = with_rpc_durations(collected, durations).resource_metrics
    assert resource.resource is collected.resource_metrics[0].resource
    (scope,) = resource.scope_metrics
    (metric,) = scope.metrics
    assert (metric.name, metric.unit, scope.scope.name) == ("grpc.server.call.duration", "s", "broker")
    assert metric.data.aggregation_temporality == AggregationTemporality.CUMULATIVE  # type: ignore[union-attr]
    points: list[HistogramDataPoint] = list(metric.data.data_points)  # type: ignore[arg-type]
    by_status = {point.attributes["grpc.status"]: point for point in points}  # type: ignore[index]
    ok = by_status["OK"]
    assert ok.attributes["grpc.method"] == "broker.v1.TokenBrokerService/GetToken"  # type: ignore[index]
    assert (ok.count, list(ok.bucket_counts), list(ok.explicit_bounds)) == (2, [1, 1, 0], [0.001, 0.01])
    assert ok.start_time_unix_nano == durations.start_time_ns < ok.time_unix_nano
    assert (by_status["UNAVAILABLE"].count, by_status["UNAVAILABLE"].max) == (1, 1.5)
    print(f"exported {len(points)} series of grpc.server.call.duration")


def test_collected_metrics_stay_as_they_are_when_no_call_was_recorded() -> None:
    collected = _collected()
    assert with_rpc_durations(collected, RpcDurations()) is collected
