"""The handlers of broker.v1.TokenBrokerService: proto in, model calls, proto out.

It is the only module that converts between the generated messages and the domain model. Handlers see only
calls that `rpc.Guard` admitted (caller authenticated, fields checked, grants on the named tenant and
targets checked); what a session or pending login turns out to touch they check through `call.allow`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2

from broker import __version__
from broker.api import fields, rpc
from broker.api.fanout import DEFAULT_MAX_STREAMS, WatchHub
from broker.errors import PermissionDeniedError, Reason
from broker.model import AccessToken, CareContext, CareRelationship, Practitioner, Session, TokenType
from broker.protocol.care import check_care_context
from broker.protocol.tillitsrammeverk import render_attest
from broker.sessions.exchange import TokenExchanger
from broker.sessions.login import LoginService, session_key
from broker.sessions.tokens import SessionTokens
from broker.tokens.authorize import RequestAuthorizer, care_headers, check_request, headers_for
from broker.tokens.engine import TokenEngine
from broker.tokens.scheduler import RefreshScheduler
from broker.v1 import token_broker_service_pb2 as pb

_TOKEN_TYPES = {TokenType.DPOP: pb.TOKEN_TYPE_DPOP, TokenType.BEARER: pb.TOKEN_TYPE_BEARER}
_INFO = pb.GetBrokerInfoResponse(version=__version__)
_MAX_REMEMBERED_RESPONSES = 50_000


@dataclass(frozen=True, slots=True)
class UserServices:
    """What the user-session RPCs call; absent, they answer PERMISSION_DENIED (SESSIONS_DISABLED)."""

    login: LoginService
    tokens: SessionTokens
    exchanger: TokenExchanger


class TokenBrokerServicer:
    def __init__(
        self,
        engine: TokenEngine,
        scheduler: RefreshScheduler | None = None,
        users: UserServices | None = None,
        *,
        max_watch_streams: int = DEFAULT_MAX_STREAMS,
    ) -> None:
        self._engine = engine
        self._scheduler = scheduler
        self._users = users
        self._watchers = WatchHub(engine, _watch_response, scheduler=scheduler, max_streams=max_watch_streams)
        self._authorizer = RequestAuthorizer(engine)
        self._responses: dict[str, pb.GetTokenResponse] = {}

    def handlers(self) -> dict[str, rpc.Handler]:
        """Every RPC of the service, with the audit event a success records."""
        return {
            "GetToken": rpc.Unary(self.get_token, event="served"),
            "AuthorizeRequest": rpc.Unary(self.authorize_request, event="proof"),
            "WatchToken": rpc.Stream(self.watch_token, event="served"),
            "ExchangeToken": rpc.Unary(self.exchange_token, event="exchanged"),
            "StartLogin": rpc.Unary(self.start_login, event="login.started", sessions=True),
            "CompleteLogin": rpc.Unary(self.complete_login, event="login.completed", sessions=True),
            "GetSessionToken": rpc.Unary(self.get_session_token, event="session.token", sessions=True),
            "AuthorizeSessionRequest": rpc.Unary(
                self.authorize_session_request, event="session.proof", sessions=True
            ),
            "EndSession": rpc.Unary(self.end_session, event="session.ended", sessions=True),
            "GetBrokerInfo": rpc.Unary(self.get_broker_info, event=None),
        }

    async def get_token(self, call: rpc.Call[pb.GetTokenRequest]) -> pb.GetTokenResponse:
        # The hot path: the response message is built once per token, not once per call.
        request = call.request
        token = await self._engine.get_token(
            request.tenant, request.target, fields.duration(request.min_remaining_lifetime)
        )
        call.token = token.value
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

    async def authorize_request(
        self, call: rpc.Call[pb.AuthorizeRequestRequest]
    ) -> pb.AuthorizeRequestResponse:
        request = call.request
        result = await self._authorizer.authorize(
            request.tenant,
            request.target,
            http_method=request.http_method,
            url=request.url,
            dpop_nonce=request.dpop_nonce or None,
            min_remaining=fields.duration(request.min_remaining_lifetime),
            care=_care_context(call, request),
        )
        call.token = result.token.value
        return pb.AuthorizeRequestResponse(
            authorization=result.authorization,
            dpop=result.dpop or "",
            token_type=_TOKEN_TYPES[result.token.token_type],
            expire_time=_expire_time(result.token),
            headers=_headers(result.headers),
        )

    async def watch_token(self, call: rpc.Call[pb.WatchTokenRequest]) -> AsyncIterator[pb.WatchTokenResponse]:
        # Every stream of a key sends the one message built for its token (fanout.py); the guard audits each
        # message as a token served to this caller.
        route = self._engine.routes.resolve(call.request.tenant, call.request.target)
        async for token, message in self._watchers.watch(route):
            call.token = token.value
            yield message

    async def exchange_token(self, call: rpc.Call[pb.ExchangeTokenRequest]) -> pb.ExchangeTokenResponse:
        request = call.request
        token = await self._user_services().exchanger.exchange(
            request.tenant,
            request.target,
            request.subject_token,
            fields.duration(request.min_remaining_lifetime),
            charge=call.charge_sts,  # only an exchange that reaches the STS costs the caller's rate
        )
        call.token = token.value
        return pb.ExchangeTokenResponse(access_token=_access_token(token))

    async def start_login(self, call: rpc.Call[pb.StartLoginRequest]) -> pb.StartLoginResponse:
        request = call.request
        users = self._user_services()
        attest = _attest(_care_context(call, request))  # checked before the STS hears of it
        call.charge_sts()  # one PAR request
        start = await users.login.start(
            request.tenant,
            list(request.targets),
            redirect_uri=request.redirect_uri or None,
            login_hint=request.login_hint or None,
            caller=call.caller_name,
            attest=attest,
        )
        return pb.StartLoginResponse(
            authorization_url=start.authorization_url,
            state=start.state,
            expire_time=_stamp(start.url_expires_at),
        )

    async def complete_login(self, call: rpc.Call[pb.CompleteLoginRequest]) -> pb.CompleteLoginResponse:
        request = call.request
        users = self._user_services()
        call.charge_sts()  # one token request (and the STS's keys, when they are not cached)
        created = await users.login.complete(
            state=request.state,
            code=request.code,
            issuer=request.issuer,
            caller=call.caller_name,
            allow=call.allow,
        )
        call.session_key = created.session.session_key
        call.pid = created.session.user.pid
        return pb.CompleteLoginResponse(session=_user_session(created.session_id, created.session))

    async def get_session_token(
        self, call: rpc.Call[pb.GetSessionTokenRequest]
    ) -> pb.GetSessionTokenResponse:
        request = call.request
        users = self._user_services()
        call.session_key = session_key(request.session_id)
        attest = _attest(_care_context(call, request))  # a bad context costs no refresh
        token = await users.tokens.token(
            request.session_id,
            request.target,
            fields.duration(request.min_remaining_lifetime),
            allow=functools.partial(_allow_target, call, request.target),
            attest=attest,
        )
        call.token = token.value
        return pb.GetSessionTokenResponse(access_token=_access_token(token))

    async def authorize_session_request(
        self, call: rpc.Call[pb.AuthorizeSessionRequestRequest]
    ) -> pb.AuthorizeSessionRequestResponse:
        request = call.request
        users = self._user_services()
        call.session_key = session_key(request.session_id)
        care = _care_context(call, request)
        attest = _attest(care)
        token, route = await users.tokens.token_and_route(
            request.session_id,
            request.target,
            allow=functools.partial(_allow_target, call, request.target),
            attest=attest,
        )
        result = headers_for(
            route,
            token,
            http_method=request.http_method,
            htu=check_request(route, request.http_method, request.url),
            nonce=request.dpop_nonce or None,
            now=self._engine.clock(),
            extra=care_headers(route, care),
        )
        call.token = token.value
        return pb.AuthorizeSessionRequestResponse(
            authorization=result.authorization,
            dpop=result.dpop or "",
            token_type=_TOKEN_TYPES[token.token_type],
            expire_time=_expire_time(token),
            headers=_headers(result.headers),
        )

    async def end_session(self, call: rpc.Call[pb.EndSessionRequest]) -> pb.EndSessionResponse:
        users = self._user_services()
        call.session_key = session_key(call.request.session_id)
        call.charge_sts()  # one revocation request
        revoked = await users.tokens.end(call.request.session_id, allow=call.allow)
        return pb.EndSessionResponse(revoked=revoked)

    async def get_broker_info(self, call: rpc.Call[pb.GetBrokerInfoRequest]) -> pb.GetBrokerInfoResponse:
        return _INFO

    def _user_services(self) -> UserServices:
        if self._users is None:
            raise PermissionDeniedError(
                "user sessions are not enabled on this broker", reason=Reason.SESSIONS_DISABLED
            )
        return self._users


def _allow_target(call: rpc.Call[Any], target: str, tenant: str) -> None:
    call.allow(tenant, (target,))


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


def _watch_response(token: AccessToken) -> pb.WatchTokenResponse:
    return pb.WatchTokenResponse(access_token=_access_token(token))


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


def _attest(care: CareContext | None) -> dict[str, Any] | None:
    """The trust-framework attest a session token carries for this care context (checked first)."""
    if care is None:
        return None
    check_care_context(care)
    return render_attest(care)


def _care_context(
    call: rpc.Call[Any],
    request: pb.AuthorizeRequestRequest
    | pb.AuthorizeSessionRequestRequest
    | pb.GetSessionTokenRequest
    | pb.StartLoginRequest,
) -> CareContext | None:
    """The request's care context in the model, or None; its patient is what the call's audit event
    records (as a keyed hash, never the id)."""
    if not request.HasField("care_context"):
        return None
    given = request.care_context
    practitioner, relationship = given.practitioner, given.care_relationship
    care = CareContext(
        patient_id=given.patient_id,
        practitioner=Practitioner(
            hpr_number=practitioner.hpr_number,
            authorization=practitioner.authorization,
            legal_entity=practitioner.legal_entity,
            point_of_care=practitioner.point_of_care,
            department=practitioner.department,
        ),
        care_relationship=CareRelationship(
            healthcare_service=relationship.healthcare_service,
            purpose_of_use=relationship.purpose_of_use,
            purpose_of_use_details=relationship.purpose_of_use_details,
            decision_ref=relationship.decision_ref,
            user_selected=relationship.user_selected,
        ),
        access_basis=given.access_basis,
        event_id=given.event_id,
        source_system=given.source_system,
    )
    if care.patient_id:
        call.patient = care.patient_id
    call.purpose = care.care_relationship.purpose_of_use or None
    call.decision = care.care_relationship.decision_ref or None
    return care


def _headers(headers: tuple[tuple[str, str], ...]) -> list[pb.HttpHeader]:
    return [pb.HttpHeader(name=name, value=value) for name, value in headers]
