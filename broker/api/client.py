"""A small gRPC client of the broker, for the CLI and for Python callers who want no stubs of their own."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from broker.api.connection import Connection
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc


@dataclass(frozen=True, slots=True)
class CallFailedError(Exception):
    """A failed call: the gRPC code name, the message and the ErrorInfo reason (if any)."""

    code: str
    message: str
    reason: str


async def get_token_json(connection: Connection, tenant: str, target: str, *, timeout_s: float = 30) -> str:
    request = pb.GetTokenRequest(tenant=tenant, target=target)
    async with connection.channel() as channel:
        stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            response = await stub.GetToken(request, metadata=connection.metadata(), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc) from None
    return json_format.MessageToJson(response, indent=2)


async def authorize_request_json(
    connection: Connection,
    tenant: str,
    target: str,
    *,
    http_method: str,
    url: str,
    dpop_nonce: str = "",
    timeout_s: float = 30,
) -> str:
    request = pb.AuthorizeRequestRequest(
        tenant=tenant, target=target, http_method=http_method, url=url, dpop_nonce=dpop_nonce
    )
    async with connection.channel() as channel:
        stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            response = await stub.AuthorizeRequest(request, metadata=connection.metadata(), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc) from None
    return json_format.MessageToJson(response, indent=2)


def _failure(exc: grpc.aio.AioRpcError) -> CallFailedError:
    reason = ""
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
    return CallFailedError(exc.code().name, exc.details() or "", reason)
