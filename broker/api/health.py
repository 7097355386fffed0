"""Standard gRPC health checking (`grpc.health.v1.Health`): Check, Watch and List.

`List` joined health.proto in 2024 and the generated stubs route it, but grpcio-health-checking's aio
servicer does not implement it: a call would end in the base class's NotImplementedError, an ERROR with a
traceback in the broker's log. This servicer answers it from the statuses it was given.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio  # grpc_health exposes it as health.aio at run time
from grpc_health.v1 import health_pb2

ServingStatus = int  # health_pb2.HealthCheckResponse.ServingStatus


class HealthServicer(health_aio.HealthServicer):  # type: ignore[misc]  # grpc_health is untyped
    def __init__(self) -> None:
        super().__init__()
        # What List answers: every service ever set, as Check answers it (the base class starts with "").
        self._statuses: dict[str, ServingStatus] = {"": health_pb2.HealthCheckResponse.SERVING}
        self._stopping = False

    async def set(self, service: str, status: ServingStatus) -> None:
        await super().set(service, status)
        if not self._stopping:  # after a graceful shutdown began, the base class ignores a set, too
            self._statuses[service] = status

    async def enter_graceful_shutdown(self) -> None:
        self._stopping = True
        await super().enter_graceful_shutdown()
        for service in self._statuses:
            self._statuses[service] = health_pb2.HealthCheckResponse.NOT_SERVING

    async def List(  # noqa: N802  # the name of the RPC
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        """A snapshot of every service's status (the broker has a handful, far from any limit)."""
        response = health_pb2.HealthListResponse()
        for service, status in self._statuses.items():
            response.statuses[service].status = status
        return response
