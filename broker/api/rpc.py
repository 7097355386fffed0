"""The one wrapper every RPC of the broker passes: identity, input limits, grants, deadline, errors, audit.

The gRPC service is built from the proto's descriptor and a table of handlers, and every method of the
descriptor is served through `Guard`, so no handler can forget a step; a method without a handler stops the
start. In order, for each call:

1. the request is decoded (an undecodable one is INVALID_ARGUMENT; gRPC has already refused one over
   `MAX_REQUEST_BYTES`);
2. the caller is authenticated (`CallerPolicy`);
3. every field is checked against its size and shape (`fields.py`), before anything parses it;
4. the caller's grants are checked against the tenant, targets, sessions and service (admin) the request
   names (what a session or pending login turns out to touch is checked by the handler through `Call.allow`);
5. the handler runs, bounded by the caller's deadline;
6. a `BrokerError` becomes its status (`status.py`); anything else is INTERNAL with an incident id that is
   also in the log, never the exception's text;
7. one audit event records the outcome, refusals included;
8. the call's duration is recorded by method and status (`grpc.server.call.duration`, gRFC A66).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from broker.api import fields, grants, status
from broker.api.policy import CallerPolicy
from broker.api.ratelimit import StsTrafficLimiter
from broker.audit import AuditTrail
from broker.errors import BrokerError, InvalidRequestError, Reason
from broker.model import Caller
from broker.telemetry import MethodCalls, Metrics

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(slots=True)
class Call(Generic[Req]):
    """One call in flight: the checked request, who makes it, and what its audit event will name."""

    rpc: str
    request: Req
    caller: Caller | None
    limiter: StsTrafficLimiter | None
    event: str | None
    tenant: str | None = None
    target: str | None = None
    token: str | None = field(default=None, repr=False)
    session_key: str | None = None
    pid: str | None = field(default=None, repr=False)
    patient: str | None = field(default=None, repr=False)  # a care context's national id
    purpose: str | None = None  # its purpose of use
    decision: str | None = None  # its access decision's reference

    @property
    def caller_name(self) -> str | None:
        return None if self.caller is None else self.caller.name

    def allow(self, tenant: str, targets: Sequence[str] = ()) -> None:
        """Checks what a session or pending login turned out to touch; handlers call it before any work."""
        self.tenant = tenant
        grants.check(self.caller, tenant=tenant, targets=targets, sessions=True)

    def charge_sts(self) -> None:
        """Spends one unit of the caller's STS budget (RateLimitedError when it is empty)."""
        if self.limiter is not None:
            self.limiter.charge(self.caller_name)


@dataclass(frozen=True, slots=True)
class Unary(Generic[Req, Resp]):
    handler: Callable[[Call[Req]], Awaitable[Resp]]
    event: str | None  # the audit event of a success; None: not audited (GetBrokerInfo)
    sessions: bool = False
    admin: bool = False  # the AdminService: callers granted `admin = true` only


@dataclass(frozen=True, slots=True)
class Stream(Generic[Req, Resp]):
    handler: Callable[[Call[Req]], AsyncIterator[Resp]]
    event: str | None
    sessions: bool = False
    admin: bool = False


Handler = Unary[Any, Any] | Stream[Any, Any]


@dataclass(frozen=True, slots=True)
class _Rules:
    """What the guard checks for one method, compiled once at start."""

    rpc: str
    calls: MethodCalls  # A66's grpc.server.call.* of this method ("broker.v1.TokenBrokerService/GetToken")
    event: str | None
    sessions: bool
    admin: bool
    check_fields: fields.Check
    # Whether the request has a `tenant`, a `target` and a `targets` field: what grants it names.
    names: tuple[bool, bool, bool]

    @classmethod
    def of(cls, method: MethodDescriptor, spec: Handler, metrics: Metrics) -> _Rules:
        fields_by_name = method.input_type.fields_by_name
        names = ("tenant" in fields_by_name, "target" in fields_by_name, "targets" in fields_by_name)
        calls = metrics.rpc_method(f"{method.containing_service.full_name}/{method.name}")
        check_fields = fields.validator(method.input_type)
        return cls(method.name, calls, spec.event, spec.sessions, spec.admin, check_fields, names)


class _Undecodable:
    """What the deserializer hands over for bytes that are not a valid request message."""


_UNDECODABLE = _Undecodable()


class Guard:
    def __init__(
        self,
        policy: CallerPolicy,
        metrics: Metrics,
        *,
        audit: AuditTrail | None = None,
        limiter: StsTrafficLimiter | None = None,
    ) -> None:
        self._policy = policy
        self._metrics = metrics
        self._audit = audit  # None: calls are not audited (tests, the benchmark's bare handlers)
        self._limiter = limiter

    def service(
        self, descriptor: ServiceDescriptor, handlers: Mapping[str, Handler]
    ) -> grpc.GenericRpcHandler[Any, Any]:
        """The gRPC handler of a whole service; every method of the descriptor must have a handler."""
        missing = sorted(set(descriptor.methods_by_name) - set(handlers))
        extra = sorted(set(handlers) - set(descriptor.methods_by_name))
        if missing or extra:
            raise LookupError(f"{descriptor.full_name}: no handler for {missing}, no method for {extra}")
        methods = {
            name: self._method(descriptor.methods_by_name[name], handler)
            for name, handler in handlers.items()
        }
        return grpc.method_handlers_generic_handler(descriptor.full_name, methods)

    def unary(
        self, method: MethodDescriptor, spec: Unary[Req, Resp]
    ) -> Callable[[Req | _Undecodable, Context], Awaitable[Resp]]:
        """The guarded coroutine of one unary method (also what the benchmark's hit path times)."""
        rules = _Rules.of(method, spec, self._metrics)

        async def guarded(request: Req | _Undecodable, context: Context) -> Resp:
            started = time.perf_counter()
            rules.calls.started += 1
            call: Call[Req] | None = None
            deadline: asyncio.Timeout | None = None
            try:
                call = self._authenticate(rules, request, context)
                self._admit(rules, call)
                remaining = context.time_remaining()
                if remaining is None:
                    response = await spec.handler(call)
                else:
                    # The caller stops waiting at its deadline; so does the broker on its behalf (a shared
                    # fetch others wait for goes on: the engine shields it from one waiter's cancellation).
                    deadline = asyncio.timeout(remaining)
                    async with deadline:
                        response = await spec.handler(call)
            except Exception as exc:  # every fault becomes a status; an unknown one INTERNAL
                expired = deadline is not None and deadline.expired()
                rich = self._failure(rules, call, exc, deadline_expired=expired)
            else:
                self._served(call)
                rules.calls.ok(time.perf_counter() - started)
                return response
            rules.calls.ended(rich.code.name, time.perf_counter() - started)
            await context.abort(rich.code, rich.details, rich.trailing_metadata)
            raise AssertionError("unreachable: abort raises")

        return guarded

    def stream(
        self, method: MethodDescriptor, spec: Stream[Req, Resp]
    ) -> Callable[[Req | _Undecodable, Context], AsyncIterator[Resp]]:
        rules = _Rules.of(method, spec, self._metrics)

        async def guarded(request: Req | _Undecodable, context: Context) -> AsyncIterator[Resp]:
            started = time.perf_counter()
            rules.calls.started += 1
            # A stream left by its caller ends at a yield, cancelled: that is how gRPC reports it too.
            code = grpc.StatusCode.CANCELLED.name
            call: Call[Req] | None = None
            try:
                call = self._authenticate(rules, request, context)
                self._admit(rules, call)
                async for response in spec.handler(call):
                    self._served(call)
                    call.token = None
                    yield response
                code = grpc.StatusCode.OK.name
                return
            except Exception as exc:  # every fault becomes a status; an unknown one INTERNAL
                rich = self._failure(rules, call, exc, deadline_expired=False)
                code = rich.code.name
            finally:
                rules.calls.ended(code, time.perf_counter() - started)
            await context.abort(rich.code, rich.details, rich.trailing_metadata)

        return guarded

    def _authenticate(self, rules: _Rules, request: Req | _Undecodable, context: Context) -> Call[Req]:
        """The call of an authenticated caller; its fields and grants are not checked yet (`_admit`)."""
        caller = self._policy.caller(context)
        return Call(rules.rpc, request, caller, self._limiter, rules.event)  # type: ignore[arg-type]

    def _admit(self, rules: _Rules, call: Call[Req]) -> None:
        """Checks the fields, then the grants on the tenant, targets and sessions the request names."""
        request = call.request
        if isinstance(request, _Undecodable):
            raise InvalidRequestError("request", f"is not a valid {rules.rpc} request message")
        rules.check_fields(request)
        has_tenant, has_target, has_targets = rules.names
        targets: tuple[str, ...] = ()
        if has_tenant:
            call.tenant = getattr(request, "tenant")  # noqa: B009
        if has_target:
            call.target = target = getattr(request, "target")  # noqa: B009
            targets = (target,) if target else ()
        elif has_targets:
            targets = tuple(getattr(request, "targets"))  # noqa: B009
        grants.check(
            call.caller, tenant=call.tenant, targets=targets, sessions=rules.sessions, admin=rules.admin
        )

    def _failure(
        self,
        rules: _Rules,
        call: Call[Any] | None,
        exc: Exception,
        *,
        deadline_expired: bool,
    ) -> grpc.Status:
        """The status a fault answers with, counted and audited as a refusal."""
        if isinstance(exc, TimeoutError) and deadline_expired:
            reason, rich = Reason.DEADLINE_EXCEEDED, status.deadline_status()
        elif isinstance(exc, BrokerError):
            reason, rich = exc.reason, status.to_status(exc)
        else:
            reason, rich = Reason.INTERNAL, status.internal_status(exc)
        self._refused(rules.rpc, call, reason)
        return rich

    def _served(self, call: Call[Any]) -> None:
        if call.event is None or self._audit is None:
            return
        self._audit.call(
            rpc=call.rpc,
            event=call.event,
            outcome="OK",
            caller=call.caller_name,
            tenant=call.tenant,
            target=call.target,
            token=call.token,
            session_key=call.session_key,
            pid=call.pid,
            patient=call.patient,
            purpose=call.purpose,
            decision=call.decision,
        )

    def _refused(self, rpc: str, call: Call[Any] | None, reason: str) -> None:
        """Counted and audited; `call` is None when the caller was not authenticated."""
        self._metrics.failed(reason)
        if self._audit is None:
            return
        if call is None:
            self._audit.call(rpc=rpc, event="refused", outcome=reason, caller=None)
            return
        self._audit.call(
            rpc=rpc,
            event="refused",
            outcome=reason,
            caller=call.caller_name,
            tenant=call.tenant,
            target=call.target,
            session_key=call.session_key,
        )

    def _method(self, method: MethodDescriptor, handler: Handler) -> grpc.RpcMethodHandler[Any, Any]:
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        deserialize = _deserializer(request_type)
        serialize = response_type.SerializeToString
        if isinstance(handler, Stream):
            if not method.server_streaming:
                raise LookupError(f"{method.full_name} is not a server stream")
            return grpc.unary_stream_rpc_method_handler(
                self.stream(method, handler), request_deserializer=deserialize, response_serializer=serialize
            )
        if method.server_streaming or method.client_streaming:
            raise LookupError(f"{method.full_name} is a stream")
        return grpc.unary_unary_rpc_method_handler(
            self.unary(method, handler), request_deserializer=deserialize, response_serializer=serialize
        )


def _deserializer(request_type: type[Message]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return request_type.FromString(data)
        except DecodeError:  # gRPC would answer INTERNAL; the guard answers INVALID_ARGUMENT instead
            return _UNDECODABLE

    return deserialize
