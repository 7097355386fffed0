"""What the HTTP wrappers share: one AuthorizeRequest per request, the nonce memory, the challenge test."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc
from google.protobuf import duration_pb2

from ._gen.broker.v1 import token_broker_service_pb2 as pb
from .connection import Broker
from .errors import BrokerError

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A challenge's scheme: a token at the start or after a comma, followed by a space and its parameters.
_CHALLENGE = re.compile(r'(?:^|,)\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)(?=\s+[^\s,=]+\s*=|\s*(?:,|$))')
_ERROR_PARAM = re.compile(r'(?:^|[\s,])error\s*=\s*(?:"([^"]*)"|([^\s,]+))', re.IGNORECASE)
_DESCRIPTION_PARAM = re.compile(r'(?:^|[\s,])error_description\s*=\s*(?:"([^"]*)"|([^\s,]+))', re.IGNORECASE)
#: The BrokerError reason the HTTP wrappers raise for a resource server's 403
#: ``insufficient_authorization_details`` challenge (the token lacks the trust framework's attest).
INSUFFICIENT_AUTHORIZATION_DETAILS = "INSUFFICIENT_AUTHORIZATION_DETAILS"


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a URL, lower case, with the scheme's default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _challenges(header: str) -> Iterator[tuple[str, str]]:
    """Each challenge of one ``WWW-Authenticate`` value: its scheme (lower case) and its parameters' text."""
    schemes = list(_CHALLENGE.finditer(header))
    for index, match in enumerate(schemes):
        end = schemes[index + 1].start() if index + 1 < len(schemes) else len(header)
        yield match.group(1).lower(), header[match.end() : end]


def _param(pattern: re.Pattern[str], params: str) -> str | None:
    found = pattern.search(params)
    return None if found is None else (found.group(1) if found.group(1) is not None else found.group(2))


def is_nonce_challenge(status: int, www_authenticate: Iterable[str]) -> bool:
    """Whether an answer is a DPoP challenge with ``error="use_dpop_nonce"`` (RFC 9449, sections 8 and 9)."""
    if status not in (400, 401):
        return False
    for header in www_authenticate:
        for scheme, params in _challenges(header):
            if scheme == "dpop" and _param(_ERROR_PARAM, params) == "use_dpop_nonce":
                return True
    return False


def insufficient_authorization_details(status: int, www_authenticate: Iterable[str]) -> tuple[str, str] | None:
    """For a ``403`` whose DPoP or Bearer challenge has ``error="insufficient_authorization_details"``: the
    challenge's scheme and its ``error_description`` (empty when none); None for any other answer."""
    if status != 403:
        return None
    for header in www_authenticate:
        for scheme, params in _challenges(header):
            if scheme in ("dpop", "bearer") and _param(_ERROR_PARAM, params) == "insufficient_authorization_details":
                return ("DPoP" if scheme == "dpop" else "Bearer"), _param(_DESCRIPTION_PARAM, params) or ""
    return None


def insufficient_authorization_error(
    status: int, www_authenticate: Iterable[str], method: str, url: str
) -> BrokerError | None:
    """The BrokerError (reason ``INSUFFICIENT_AUTHORIZATION_DETAILS``) for a resource server's 403
    ``insufficient_authorization_details`` challenge, or None for any other answer."""
    challenge = insufficient_authorization_details(status, www_authenticate)
    if challenge is None:
        return None
    scheme, description = challenge
    url = url.partition("?")[0].partition("#")[0]  # the query may name a patient: leave it out
    message = (
        f"{method} {url} answered 403 insufficient_authorization_details"
        f"{' (' + description + ')' if description else ''}: the request needs a care context with the trust "
        "framework's attest in the token: a session token made with a care context (GetSessionToken or "
        "AuthorizeSessionRequest with care_context; here session_id=... with care_context=... or "
        "with_care_context(...))"
    )
    metadata = {"status": "403", "method": method, "url": url, "scheme": scheme}
    if description:
        metadata["error_description"] = description
    return BrokerError(
        grpc.StatusCode.PERMISSION_DENIED, message, reason=INSUFFICIENT_AUTHORIZATION_DETAILS, metadata=metadata
    )


class NonceMemory:
    """The last ``DPoP-Nonce`` seen per origin (bounded; safe across threads and tasks)."""

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit
        self._nonces: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, origin: str) -> str:
        return self._nonces.get(origin, "")

    def remember(self, origin: str, nonce: str | None) -> None:
        if not nonce or self._nonces.get(origin) == nonce:
            return
        with self._lock:
            self._nonces[origin] = nonce
            self._nonces.move_to_end(origin)
            while len(self._nonces) > self._limit:
                self._nonces.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Authorization:
    """The headers of one request: ``Authorization``, ``DPoP`` (empty for bearer) and the API's others."""

    authorization: str
    dpop: str
    headers: tuple[tuple[str, str], ...]

    def items(self) -> list[tuple[str, str]]:
        items = [("Authorization", self.authorization)]
        if self.dpop:
            items.append(("DPoP", self.dpop))
        items.extend(self.headers)
        return items


class Authorizer:
    """Calls AuthorizeRequest (or AuthorizeSessionRequest with a session id) for one target."""

    def __init__(
        self,
        broker: Broker | None,
        target: str,
        *,
        tenant: str | None = None,
        session_id: str | None = None,
        min_remaining_lifetime: float | None = None,
        timeout: float = 10.0,
    ) -> None:
        if (tenant is None) == (session_id is None):
            raise ValueError("give either a tenant or a session_id")
        self.broker = broker if broker is not None else Broker()
        self.target, self.tenant, self.session_id = target, tenant, session_id
        self.timeout = timeout
        self._lifetime: duration_pb2.Duration | None = None
        if min_remaining_lifetime:
            self._lifetime = duration_pb2.Duration()
            self._lifetime.FromNanoseconds(int(min_remaining_lifetime * 1e9))
        #: How many authorize RPCs were made (for tests and the benchmark).
        self.calls = 0

    def _request(self, method: str, url: str, nonce: str, care_context: pb.CareContext | None) -> Any:
        if self.session_id is not None:
            return pb.AuthorizeSessionRequestRequest(
                session_id=self.session_id, target=self.target, http_method=method, url=url,
                dpop_nonce=nonce, care_context=care_context,
            )  # fmt: skip
        return pb.AuthorizeRequestRequest(
            tenant=self.tenant, target=self.target, http_method=method, url=url, dpop_nonce=nonce,
            min_remaining_lifetime=self._lifetime, care_context=care_context,
        )  # fmt: skip

    @staticmethod
    def _answer(response: Any) -> Authorization:
        headers = tuple((header.name, header.value) for header in response.headers)
        return Authorization(response.authorization, response.dpop, headers)

    def authorize(self, method: str, url: str, nonce: str, care_context: pb.CareContext | None) -> Authorization:
        stub = self.broker.stub()
        call = stub.AuthorizeSessionRequest if self.session_id is not None else stub.AuthorizeRequest
        self.calls += 1
        try:
            response = call(
                self._request(method, url, nonce, care_context), metadata=self.broker.metadata, timeout=self.timeout
            )
        except grpc.RpcError as exc:
            raise BrokerError.from_rpc_error(exc) from None
        return self._answer(response)

    async def aauthorize(
        self, method: str, url: str, nonce: str, care_context: pb.CareContext | None
    ) -> Authorization:
        stub = self.broker.aio_stub()
        call = stub.AuthorizeSessionRequest if self.session_id is not None else stub.AuthorizeRequest
        self.calls += 1
        try:
            response = await call(
                self._request(method, url, nonce, care_context), metadata=self.broker.metadata, timeout=self.timeout
            )
        except grpc.RpcError as exc:
            raise BrokerError.from_rpc_error(exc) from None
        return self._answer(response)
