"""A small client of the HelseID token broker: a local token source, HTTP auth for httpx and requests.

``TokenSource`` / ``SyncTokenSource`` keep a target's token locally, fed by WatchToken. ``BrokerAuth``
(httpx, extra ``[httpx]``) and ``BrokerRequestsAuth`` (requests, extra ``[requests]``) authorize each HTTP
request with AuthorizeRequest, DPoP nonce retry included. ``Broker`` says where the broker is and how to
reach it; ``BrokerError`` carries the broker's reason (or ``INSUFFICIENT_AUTHORIZATION_DETAILS`` for an
API's 403 that asks for the trust framework's attest). The generated messages and stubs are in
``helseid_broker_client.v1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._authorize import INSUFFICIENT_AUTHORIZATION_DETAILS, NonceMemory, is_nonce_challenge, origin_of
from ._gen.broker.v1.token_broker_service_pb2 import CareContext, CareRelationship, Practitioner
from ._version import __version__
from .connection import ADDRESS_ENV, CREDENTIAL_ENV, Broker
from .errors import ERROR_DOMAIN, BrokerError
from .token_source import SyncTokenSource, Token, TokenSource

if TYPE_CHECKING:
    from .httpx_auth import BrokerAuth
    from .requests_auth import BrokerRequestsAuth

__all__ = [
    "ADDRESS_ENV",
    "CREDENTIAL_ENV",
    "ERROR_DOMAIN",
    "INSUFFICIENT_AUTHORIZATION_DETAILS",
    "Broker",
    "BrokerAuth",
    "BrokerError",
    "BrokerRequestsAuth",
    "CareContext",
    "CareRelationship",
    "NonceMemory",
    "Practitioner",
    "SyncTokenSource",
    "Token",
    "TokenSource",
    "__version__",
    "is_nonce_challenge",
    "origin_of",
]


def __getattr__(name: str) -> Any:
    # The HTTP auth classes load their HTTP library only when asked for (both are optional extras).
    if name == "BrokerAuth":
        from .httpx_auth import BrokerAuth  # noqa: PLC0415

        return BrokerAuth
    if name == "BrokerRequestsAuth":
        from .requests_auth import BrokerRequestsAuth  # noqa: PLC0415

        return BrokerRequestsAuth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
