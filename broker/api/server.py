"""Builds the gRPC server: the broker service, the admin service, standard health checking and server
reflection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from broker.api import fields
from broker.api.admin import Administration, AdminServicer
from broker.api.fanout import DEFAULT_MAX_STREAMS
from broker.api.health import HealthServicer
from broker.api.policy import caller_policy
from broker.api.ratelimit import StsTrafficLimiter
from broker.api.reflection import enable_reflection
from broker.api.rpc import Guard
from broker.api.servicer import TokenBrokerServicer, UserServices
from broker.audit import AuditTrail
from broker.model import Caller, ServiceAccountIssuer
from broker.tokens.engine import TokenEngine
from broker.tokens.scheduler import RefreshScheduler
from broker.v1 import admin_service_pb2 as admin_pb
from broker.v1 import token_broker_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class ServerTls:
    """PEM material; with a client CA, callers must present a certificate it signed (mTLS)."""

    certificate: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)


SERVICE = pb.DESCRIPTOR.services_by_name["TokenBrokerService"]
SERVICE_NAME = SERVICE.full_name
ADMIN_SERVICE = admin_pb.DESCRIPTOR.services_by_name["AdminService"]
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
_CORE_PENDING_REQUESTS = 1000  # gRPC core's own default of grpc.server.max_pending_requests


def create_server(
    engine: TokenEngine,
    listen: str,
    *,
    reuse_port: bool = False,
    scheduler: RefreshScheduler | None = None,
    users: UserServices | None = None,
    trace_rpcs: bool = False,
    callers: Mapping[str, Caller] | None = None,
    tls: ServerTls | None = None,
    service_accounts: ServiceAccountIssuer | None = None,
    audit: AuditTrail | None = None,
    limiter: StsTrafficLimiter | None = None,
    administration: Administration | None = None,
    max_watch_streams: int = DEFAULT_MAX_STREAMS,
) -> tuple[grpc.aio.Server, int, HealthServicer]:
    """Returns the server (not started), the port it bound and its health servicer.

    Every RPC of the broker's service and of the admin service (served with an `administration`) passes
    `rpc.Guard`; health checking and reflection are open, like the probes and tools that use them expect
    (they reveal no tenant, token or caller).
    """
    options = [
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # A larger request is refused by gRPC before it is decoded (RESOURCE_EXHAUSTED).
        ("grpc.max_receive_message_length", fields.MAX_REQUEST_BYTES),
        # Calls that arrived but that the event loop has not taken up yet wait in gRPC core. Beyond 1,000 of
        # them core refuses a growing share of new calls (all beyond 3,000), as CANCELLED with nothing
        # logged: that was what a burst of WatchToken streams met. A burst as large as the stream limit
        # now waits its turn; a stream beyond the limit is refused by the broker, with a reason and a log.
        ("grpc.server.max_pending_requests", max(_CORE_PENDING_REQUESTS, max_watch_streams)),
        ("grpc.server.max_pending_requests_hard_limit", 2 * max(_CORE_PENDING_REQUESTS, max_watch_streams)),
    ]
    # The OpenTelemetry interceptor makes each RPC a server span, parent of the cache and STS spans, and
    # continues a caller's trace (W3C traceparent in the metadata).
    interceptors = [aio_server_interceptor()] if trace_rpcs else []  # type: ignore[no-untyped-call]
    # Callers known by a service-account token need the issuer's keys fetched before the handler runs.
    policy, key_fetch = caller_policy(callers or {}, service_accounts)
    interceptors += key_fetch
    server = grpc.aio.server(options=options, interceptors=interceptors)
    guard = Guard(policy, engine.metrics, audit=audit, limiter=limiter)
    servicer = TokenBrokerServicer(engine, scheduler, users, max_watch_streams=max_watch_streams)
    services = [guard.service(SERVICE, servicer.handlers())]
    names = [SERVICE_NAME, HEALTH_SERVICE_NAME]
    if administration is not None:
        services.append(guard.service(ADMIN_SERVICE, AdminServicer(administration).handlers()))
        names.append(ADMIN_SERVICE.full_name)
    server.add_generic_rpc_handlers(tuple(services))
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # Reflection lists every service the server has (v1 and v1alpha, for old and new tools).
    enable_reflection(server, tuple(names))
    if tls is None:
        port = server.add_insecure_port(listen)
    else:
        credentials = grpc.ssl_server_credentials(
            [(tls.private_key, tls.certificate)],
            root_certificates=tls.client_ca,
            require_client_auth=tls.client_ca is not None,
        )
        port = server.add_secure_port(listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return server, port, health_servicer


async def mark_serving(health_servicer: HealthServicer) -> None:
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
