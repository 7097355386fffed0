"""``BrokerRequestsAuth``: a ``requests`` auth that authorizes every request through the broker
(pip extra ``[requests]``)."""

from __future__ import annotations

from typing import Any

import requests
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar

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

_RETRIED = "_helseid_nonce_retried"
_CONTEXT = "_helseid_care_context"


class BrokerRequestsAuth(AuthBase):
    """Authorizes each request of ``requests`` (``session.auth = BrokerRequestsAuth(...)``) for one target.

    As BrokerAuth for httpx: AuthorizeRequest per request with the origin's last nonce, the headers set, and
    exactly one retry (from a response hook) on a ``use_dpop_nonce`` challenge; a streamed or file body is
    read into memory first, so it can be sent again. Broker failures raise BrokerError, and so does a ``403``
    whose DPoP or Bearer challenge has ``error="insufficient_authorization_details"`` (reason
    ``INSUFFICIENT_AUTHORIZATION_DETAILS``: the API needs the trust framework's attest, from a care context).
    """

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

    def with_care_context(self, care_context: pb.CareContext | None) -> BrokerRequestsAuth:
        """The same auth (broker, nonce memory) with another care context, for ``requests.get(url, auth=...)``."""
        other = object.__new__(BrokerRequestsAuth)
        other.authorizer, other.nonces, other.care_context = self.authorizer, self.nonces, care_context
        return other

    @staticmethod
    def _apply(request: requests.PreparedRequest, authorization: Authorization) -> None:
        if not authorization.dpop:
            request.headers.pop("DPoP", None)
        for name, value in authorization.items():
            request.headers[name] = value

    @staticmethod
    def _buffer(request: requests.PreparedRequest) -> None:
        body: Any = request.body
        if body is None or isinstance(body, (bytes, str)):
            return
        if hasattr(body, "read"):
            data = body.read()
        else:
            data = b"".join(chunk.encode() if isinstance(chunk, str) else chunk for chunk in body)
        request.body = data.encode() if isinstance(data, str) else data
        request.headers.pop("Transfer-Encoding", None)
        request.headers["Content-Length"] = str(len(request.body))

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        self._buffer(request)
        url = request.url or ""
        setattr(request, _CONTEXT, self.care_context)
        nonce = self.nonces.get(origin_of(url))
        self._apply(request, self.authorizer.authorize(request.method or "GET", url, nonce, self.care_context))
        request.register_hook("response", self._on_response)
        return request

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        url = request.url or ""
        origin = origin_of(url)
        nonce = response.headers.get("DPoP-Nonce")
        self.nonces.remember(origin, nonce)
        if getattr(request, _RETRIED, False) or not nonce:
            return self._refuse_without_attest(response)
        challenges = [response.headers.get("WWW-Authenticate", "")]
        if not is_nonce_challenge(response.status_code, challenges):
            return self._refuse_without_attest(response)
        response.content  # noqa: B018 - read the answer, so its connection can be reused
        response.close()
        retry = request.copy()
        setattr(retry, _RETRIED, True)
        jar: Any = getattr(retry, "_cookies", None)
        if jar is not None:
            extract_cookies_to_jar(jar, request, response.raw)
            retry.prepare_cookies(jar)
        context = getattr(request, _CONTEXT, self.care_context)
        self._apply(retry, self.authorizer.authorize(retry.method or "GET", url, nonce, context))
        connection: Any = response.connection
        again: requests.Response = connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        self.nonces.remember(origin, again.headers.get("DPoP-Nonce"))
        return self._refuse_without_attest(again)

    @staticmethod
    def _refuse_without_attest(response: requests.Response) -> requests.Response:
        """The response, or BrokerError(INSUFFICIENT_AUTHORIZATION_DETAILS) for a 403 asking for the attest."""
        request = response.request
        challenges = [response.headers.get("WWW-Authenticate", "")]
        error = insufficient_authorization_error(
            response.status_code, challenges, request.method or "GET", request.url or ""
        )
        if error is None:
            return response
        response.content  # noqa: B018 - read the answer, so its connection goes back to the pool
        response.close()
        raise error
