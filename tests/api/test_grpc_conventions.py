"""The standard gRPC services tools and platforms expect: server reflection (v1 and v1alpha) and health.

A real broker (`serve`, as `python -m broker run` starts it) answers over a real channel; the reflection
client is the one tools use: it lists the services, then asks for the file of each and builds its methods.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as reflection

from broker.api.health import HealthServicer
from broker.api.server import ADMIN_SERVICE, HEALTH_SERVICE_NAME, SERVICE, SERVICE_NAME
from tests.fixtures.broker_server import broker_config, running_broker, sfm_clients

V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
EVERY_SERVICE = {SERVICE_NAME, ADMIN_SERVICE.full_name, HEALTH_SERVICE_NAME, V1, V1ALPHA}


@pytest.fixture
async def address() -> AsyncIterator[str]:
    # No token is asked for: the authority is never reached.
    async with running_broker(broker_config("https://sts.invalid", sfm_clients())) as running:
        yield running


async def _ask(
    channel: grpc.aio.Channel, service: str, requests: list[reflection.ServerReflectionRequest]
) -> list[reflection.ServerReflectionResponse]:
    # v1's messages are v1alpha's, field for field, under another package: the same bytes on the wire.
    info = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection.ServerReflectionResponse.FromString,
    )
    call = info(iter(requests), timeout=10)
    return [response async for response in call]


async def _describe(
    channel: grpc.aio.Channel, service: str
) -> tuple[set[str], descriptor_pool.DescriptorPool]:
    """What a reflection client sees through `service`: the listed names, and a pool of their files."""
    (listing,) = await _ask(channel, service, [reflection.ServerReflectionRequest(list_services="")])
    names = {entry.name for entry in listing.list_services_response.service}
    asks = [reflection.ServerReflectionRequest(file_containing_symbol=name) for name in sorted(names)]
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    for answer in await _ask(channel, service, asks):
        assert not answer.HasField("error_response"), answer.error_response.error_message
        # Each answer holds the file and its dependencies; a pool takes a dependency before its user.
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in answer.file_descriptor_response.file_descriptor_proto
        ]
        for file in reversed(files):
            if file.name not in added:
                pool.Add(file)
                added.add(file.name)
    return names, pool


async def test_reflection_v1_and_v1alpha_list_and_describe_every_service(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        described = {version: await _describe(channel, version) for version in (V1, V1ALPHA)}
    for names, _ in described.values():
        assert names == EVERY_SERVICE
    for _, pool in described.values():
        broker = pool.FindServiceByName(SERVICE_NAME)
        assert {method.name for method in broker.methods} == set(SERVICE.methods_by_name)
        admin = pool.FindServiceByName(ADMIN_SERVICE.full_name)
        assert {method.name for method in admin.methods} == set(ADMIN_SERVICE.methods_by_name)
        assert {method.name for method in pool.FindServiceByName(HEALTH_SERVICE_NAME).methods} >= {
            "Check",
            "Watch",
            "List",
        }
        v1 = pool.FindServiceByName(V1).methods_by_name["ServerReflectionInfo"]
        assert v1.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
        assert v1.output_type.full_name == "grpc.reflection.v1.ServerReflectionResponse"
        assert v1.client_streaming
        assert v1.server_streaming
        assert not v1.containing_service.file.GetOptions().deprecated  # v1alpha's file is deprecated
    print(
        f"reflection: v1 listed {len(described[V1][0])} services, v1alpha {len(described[V1ALPHA][0])}; "
        f"{len(SERVICE.methods_by_name)} broker methods described through each"
    )


async def test_reflection_v1_answers_an_unknown_symbol_with_not_found(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        ask = reflection.ServerReflectionRequest(file_containing_symbol="no.such.Service")
        (answer,) = await _ask(channel, V1, [ask])
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


async def test_health_list_answers_every_service_with_its_status_and_logs_no_error(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        listed = await health.List(health_pb2.HealthListRequest(), timeout=10)
        checked = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
    statuses = {name: response.status for name, response in listed.statuses.items()}
    serving = health_pb2.HealthCheckResponse.SERVING
    assert statuses == {"": serving, SERVICE_NAME: serving}
    assert checked.status == serving
    problems = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not problems, [record.getMessage() for record in problems]
    print(f"health List: {len(statuses)} services, {len(problems)} warnings or errors in the log")


async def test_health_list_answers_not_serving_once_a_graceful_shutdown_began() -> None:
    health = HealthServicer()
    await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    await health.enter_graceful_shutdown()
    await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)  # ignored while stopping
    listed = await health.List(health_pb2.HealthListRequest(), None)  # type: ignore[arg-type]
    statuses = {name: response.status for name, response in listed.statuses.items()}
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert statuses == {"": not_serving, SERVICE_NAME: not_serving}
