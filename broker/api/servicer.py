"""The gRPC servicer of broker.v1.TokenBrokerService: proto in, model calls, proto out.

It is the only module that converts between the generated messages and the domain model.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from broker import __version__
from broker.api import status
from broker.api.policy import CallerPolicy
from broker.errors import BrokerError, InvalidRequestError, PermissionDeniedError, Reason
from broker.model import AccessToken, Session, TokenType
from broker.sessions.exchange import TokenExchanger
from broker.sessions.login import LoginService
from broker.sessions.tokens import SessionTokens
from broker.tokens.authorize import RequestAuthorizer, check_request, headers_for
from broker.tokens.engine import TokenEngine
from broker.tokens.scheduler import RefreshScheduler
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc

T = TypeVar("T")

_TOKEN_TYPES = {TokenType.DPOP: pb.TOKEN_TYPE_DPOP, TokenType.BEARER: pb.TOKEN_TYPE_BEARER}
_INFO = pb.GetBrokerInfoResponse(version=__version__)
_MAX_REMEMBERED_RESPONSES = 50_000


@dataclass(frozen=True, slots=True)
class UserServices:
    """What the user-session RPCs call; absent, they answer FAILED_PRECONDITION."""

    login: LoginService
    tokens: SessionTokens
    exchanger: TokenExchanger


class TokenBrokerServicer(pb_grpc.TokenBrokerServiceServicer):
    def __init__(
        self,
        engine: TokenEngine,
        scheduler: RefreshScheduler | None = None,
        users: UserServices | None = None,
        policy: CallerPolicy | None = None,
    ) -> None:
        self._engine = engine
        self._policy = policy or CallerPolicy({})
        self._scheduler = scheduler
        self._users = users
        self._authorizer = RequestAuthorizer(engine)
        self._metrics = engine.metrics
        self._responses: dict[str, pb.GetTokenResponse] = {}

    async def GetToken(  # noqa: N802 - the name is the RPC's
        self, request: pb.GetTokenRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetTokenResponse:
        # The hot path: no closure, and the response message is built once per token, not once per call.
        try:
            if not self._policy.open:
                self._policy.check(context, tenant=request.tenant, targets=(request.target,))
            _require(request.tenant, "tenant")
            _require(request.target, "target")
            token = await self._engine.get_token(
                request.tenant, request.target, _min_remaining(request.min_remaining_lifetime)
            )
        except BrokerError as exc:
            self._metrics.failed(exc.reason)
            rich = status.to_status(exc)
            await context.abort(rich.code, rich.details, rich.trailing_metadata)
        response = self._responses.get(token.value)
        if response is None:
            response = self._remember_response(token)
        return response

    def _remember_response(self, token: AccessToken) -> pb.GetTokenResponse:
        if len(self._responses) >= _MAX_REMEMBERED_RESPONSES:
            self._responses.clear()  # renewed tokens leave old entries behind; start over now and then
        response = pb.GetTokenResponse(access_token=_access_token(token))
        self._responses[token.value] = response
        return response

    async def AuthorizeRequest(  # noqa: N802
        self, request: pb.AuthorizeRequestRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.AuthorizeRequestResponse:
        async def call() -> pb.AuthorizeRequestResponse:
            if not self._policy.open:
                self._policy.check(context, tenant=request.tenant, targets=(request.target,))
            _require(request.tenant, "tenant")
            _require(request.target, "target")
            _require(request.http_method, "http_method")
            _require(request.url, "url")
            result = await self._authorizer.authorize(
                request.tenant,
                request.target,
                http_method=request.http_method,
                url=request.url,
                dpop_nonce=request.dpop_nonce or None,
                min_remaining=_min_remaining(request.min_remaining_lifetime),
            )
            return pb.AuthorizeRequestResponse(
                authorization=result.authorization,
                dpop=result.dpop or "",
                token_type=_TOKEN_TYPES[result.token.token_type],
                expire_time=_expire_time(result.token),
            )

        return await _answer(call, context, self._metrics.failed)

    async def WatchToken(  # noqa: N802
        self, request: pb.WatchTokenRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.WatchTokenResponse]:
        try:
            self._policy.check(context, tenant=request.tenant, targets=(request.target,))
            _require(request.tenant, "tenant")
            _require(request.target, "target")
            route = self._engine.routes.resolve(request.tenant, request.target)
        except BrokerError as exc:
            self._metrics.failed(exc.reason)
            rich = status.to_status(exc)
            await context.abort(rich.code, rich.details, rich.trailing_metadata)
        if self._scheduler is not None:
            self._scheduler.keep(route)
        try:
            async for token in self._engine.watch(route):
                yield pb.WatchTokenResponse(access_token=_access_token(token))
        except BrokerError as exc:
            self._metrics.failed(exc.reason)
            rich = status.to_status(exc)
            await context.abort(rich.code, rich.details, rich.trailing_metadata)
        finally:
            if self._scheduler is not None:
                self._scheduler.release(route)

    async def ExchangeToken(  # noqa: N802
        self, request: pb.ExchangeTokenRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ExchangeTokenResponse:
        async def call() -> pb.ExchangeTokenResponse:
            self._policy.check(context, tenant=request.tenant, targets=(request.target,))
            _require(request.tenant, "tenant")
            _require(request.target, "target")
            _require(request.subject_token, "subject_token")
            token = await self._user_services().exchanger.exchange(
                request.tenant,
                request.target,
                request.subject_token,
                _min_remaining(request.min_remaining_lifetime),
            )
            return pb.ExchangeTokenResponse(access_token=_access_token(token))

        return await _answer(call, context, self._metrics.failed)

    async def StartLogin(  # noqa: N802
        self, request: pb.StartLoginRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.StartLoginResponse:
        async def call() -> pb.StartLoginResponse:
            self._policy.check(context, tenant=request.tenant, targets=request.targets, sessions=True)
            _require(request.tenant, "tenant")
            start = await self._user_services().login.start(
                request.tenant,
                list(request.targets),
                redirect_uri=request.redirect_uri or None,
                login_hint=request.login_hint or None,
            )
            return pb.StartLoginResponse(
                authorization_url=start.authorization_url,
                state=start.state,
                expire_time=_stamp(start.url_expires_at),
            )

        return await _answer(call, context, self._metrics.failed)

    async def CompleteLogin(  # noqa: N802
        self, request: pb.CompleteLoginRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.CompleteLoginResponse:
        async def call() -> pb.CompleteLoginResponse:
            self._policy.check(context, sessions=True)
            _require(request.state, "state")
            _require(request.code, "code")
            _require(request.issuer, "issuer")
            created = await self._user_services().login.complete(
                state=request.state, code=request.code, issuer=request.issuer
            )
            return pb.CompleteLoginResponse(session=_user_session(created.session_id, created.session))

        return await _answer(call, context, self._metrics.failed)

    async def GetSessionToken(  # noqa: N802
        self, request: pb.GetSessionTokenRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetSessionTokenResponse:
        async def call() -> pb.GetSessionTokenResponse:
            self._policy.check(context, targets=(request.target,), sessions=True)
            _require(request.session_id, "session_id")
            _require(request.target, "target")
            token = await self._user_services().tokens.token(
                request.session_id, request.target, _min_remaining(request.min_remaining_lifetime)
            )
            return pb.GetSessionTokenResponse(access_token=_access_token(token))

        return await _answer(call, context, self._metrics.failed)

    async def AuthorizeSessionRequest(  # noqa: N802
        self, request: pb.AuthorizeSessionRequestRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.AuthorizeSessionRequestResponse:
        async def call() -> pb.AuthorizeSessionRequestResponse:
            self._policy.check(context, targets=(request.target,), sessions=True)
            _require(request.session_id, "session_id")
            _require(request.target, "target")
            _require(request.http_method, "http_method")
            _require(request.url, "url")
            token, route = await self._user_services().tokens.token_and_route(
                request.session_id, request.target
            )
            result = headers_for(
                route,
                token,
                http_method=request.http_method,
                htu=check_request(route, request.http_method, request.url),
                nonce=request.dpop_nonce or None,
                now=self._engine.clock(),
            )
            return pb.AuthorizeSessionRequestResponse(
                authorization=result.authorization,
                dpop=result.dpop or "",
                token_type=_TOKEN_TYPES[token.token_type],
                expire_time=_expire_time(token),
            )

        return await _answer(call, context, self._metrics.failed)

    async def EndSession(  # noqa: N802
        self, request: pb.EndSessionRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.EndSessionResponse:
        async def call() -> pb.EndSessionResponse:
            self._policy.check(context, sessions=True)
            _require(request.session_id, "session_id")
            return pb.EndSessionResponse(revoked=await self._user_services().tokens.end(request.session_id))

        return await _answer(call, context, self._metrics.failed)

    def _user_services(self) -> UserServices:
        if self._users is None:
            raise PermissionDeniedError(
                "user sessions are not enabled on this broker", reason=Reason.SESSIONS_DISABLED
            )
        return self._users

    async def GetBrokerInfo(  # noqa: N802
        self, request: pb.GetBrokerInfoRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetBrokerInfoResponse:
        return _INFO


async def _answer(
    call: Callable[[], Awaitable[T]],
    context: grpc.aio.ServicerContext[object, object],
    failed: Callable[[str], None],
) -> T:
    try:
        return await call()
    except BrokerError as exc:
        failed(exc.reason)
        rich = status.to_status(exc)
    except Exception as exc:  # every other fault becomes INTERNAL with an incident id
        failed("INTERNAL")
        rich = status.internal_status(exc)
    await context.abort(rich.code, rich.details, rich.trailing_metadata)
    raise AssertionError("unreachable: abort raises")


def _require(value: str, field: str) -> None:
    if not value:
        raise InvalidRequestError(field, "is required")


def _min_remaining(duration: duration_pb2.Duration) -> timedelta:
    if duration.seconds < 0 or duration.nanos < 0:
        raise InvalidRequestError("min_remaining_lifetime", "must not be negative")
    return timedelta(seconds=duration.seconds, microseconds=duration.nanos // 1000)


def _timestamp(token: AccessToken) -> timestamp_pb2.Timestamp:
    return _stamp(token.expires_at)


@functools.lru_cache(maxsize=4096)  # the same token's expiry is sent with every proof for it
def _expire_time(token: AccessToken) -> timestamp_pb2.Timestamp:
    return _stamp(token.expires_at)


def _stamp(instant: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(instant)
    return stamp


def _user_session(session_id: str, session: Session) -> pb.UserSession:
    user = session.user
    return pb.UserSession(
        session_id=session_id,
        tenant=session.tenant,
        targets=session.targets,
        user=pb.User(
            subject=user.subject,
            pid=user.pid or "",
            hpr_number=user.hpr_number or "",
            security_level=user.security_level or "",
            assurance_level=user.assurance_level or "",
            name=user.name or "",
            given_name=user.given_name or "",
            family_name=user.family_name or "",
        ),
        expire_time=_stamp(session.expires_at),
    )


def _access_token(token: AccessToken) -> pb.AccessToken:
    return pb.AccessToken(
        token=token.value,
        token_type=_TOKEN_TYPES[token.token_type],
        expire_time=_timestamp(token),
        scopes=token.scopes,
        audiences=token.audience,
        rejected_scopes=token.rejected_scopes,
        dpop_jkt=token.jkt or "",
    )
