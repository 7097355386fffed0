"""``BrokerAuth``: an ``httpx.Auth`` that authorizes every request through the broker (pip extra ``[httpx]``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._authorize import (
    Authorization,
    Authorizer,
    NonceMemory,
    insufficient_authorization_error,
    is_nonce_challenge,
    origin_of,
)
from ._gen.broker.v1 import token_broker_service_pb2 as pb
from .connection import Broker

#: A request extension that gives one request its care context: ``client.get(url, extensions={...: ctx})``.
CARE_CONTEXT_EXTENSION = "helseid_care_context"


class BrokerAuth(httpx.Auth):
    """Authorizes each request of an ``httpx.Client`` or ``httpx.AsyncClient`` for one broker target.

    Per request it calls AuthorizeRequest (tenant, target, method, the absolute URL, the last ``DPoP-Nonce``
    seen for the URL's origin, the care context) and sets ``Authorization``, ``DPoP`` and the API's headers.
    A ``400``/``401`` DPoP challenge with ``error="use_dpop_nonce"`` and a ``DPoP-Nonce`` header is retried
    exactly once with that nonce (the body is buffered, so it can be sent again). With ``session_id`` instead
    of ``tenant`` it uses AuthorizeSessionRequest (a user's session). Broker failures raise BrokerError, and
    so does a ``403`` whose DPoP or Bearer challenge has ``error="insufficient_authorization_details"`` (reason
    ``INSUFFICIENT_AUTHORIZATION_DETAILS``: the API needs the trust framework's attest, from a care context).
    """

    requires_request_body = True

    def __init__(
        self,
        tenant: str | None = None,
        target: str = "",
        *,
        session_id: str | None = None,
        broker: Broker | None = None,
        care_context: pb.CareContext | None = None,
        min_remaining_lifetime: float | None = None,
        timeout: float = 10.0,
        nonces: NonceMemory | None = None,
    ) -> None:
        if not target:
            raise ValueError("a target is required")
        self.authorizer = Authorizer(
            broker, target, tenant=tenant, session_id=session_id,
            min_remaining_lifetime=min_remaining_lifetime, timeout=timeout,
        )  # fmt: skip
        self.care_context = care_context
        self.nonces = nonces if nonces is not None else NonceMemory()

    def with_care_context(self, care_context: pb.CareContext | None) -> BrokerAuth:
        """The same auth (broker, nonce memory) with another care context, for ``client.get(url, auth=...)``."""
        other = object.__new__(BrokerAuth)
        other.authorizer, other.nonces, other.care_context = self.authorizer, self.nonces, care_context
        return other

    def _context(self, request: httpx.Request) -> pb.CareContext | None:
        context: pb.CareContext | None = request.extensions.get(CARE_CONTEXT_EXTENSION, self.care_context)
        return context

    @staticmethod
    def _apply(request: httpx.Request, authorization: Authorization) -> None:
        if not authorization.dpop:
            request.headers.pop("DPoP", None)
        for name, value in authorization.items():
            request.headers[name] = value

    def _retry_nonce(self, origin: str, response: httpx.Response) -> str | None:
        """Remembers the answer's nonce; returns it when the answer asks for a retry with it."""
        nonce: str | None = response.headers.get("DPoP-Nonce")
        self.nonces.remember(origin, nonce)
        if nonce and is_nonce_challenge(response.status_code, response.headers.get_list("WWW-Authenticate")):
            return nonce
        return None

    @staticmethod
    def _refuse_without_attest(request: httpx.Request, response: httpx.Response) -> None:
        """Raises BrokerError(INSUFFICIENT_AUTHORIZATION_DETAILS) for a 403 asking for the attest."""
        error = insufficient_authorization_error(
            response.status_code, response.headers.get_list("WWW-Authenticate"), request.method, str(request.url)
        )
        if error is not None:
            raise error

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url, origin, context = str(request.url), origin_of(str(request.url)), self._context(request)
        nonce = self.nonces.get(origin)
        self._apply(request, self.authorizer.authorize(request.method, url, nonce, context))
        response = yield request
        retry = self._retry_nonce(origin, response)
        if retry is not None:
            self._apply(request, self.authorizer.authorize(request.method, url, retry, context))
            response = yield request
            self.nonces.remember(origin, response.headers.get("DPoP-Nonce"))
        self._refuse_without_attest(request, response)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        url, origin, context = str(request.url), origin_of(str(request.url)), self._context(request)
        nonce = self.nonces.get(origin)
        self._apply(request, await self.authorizer.aauthorize(request.method, url, nonce, context))
        response = yield request
        retry = self._retry_nonce(origin, response)
        if retry is not None:
            self._apply(request, await self.authorizer.aauthorize(request.method, url, retry, context))
            response = yield request
            self.nonces.remember(origin, response.headers.get("DPoP-Nonce"))
        self._refuse_without_attest(request, response)
