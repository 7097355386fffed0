"""Callers known by a Kubernetes projected service-account token (`authorization: Bearer <jwt>`).

A token names a caller when it verifies against the cluster issuer's keys and its `sub` is the
`system:serviceaccount:<namespace>:<name>` a caller is configured with (`service_account = "ns:name"`).
Validated tokens are cached, in a bounded map, until they expire: the hit path checks one dict entry, not a
signature. Checking is synchronous; fetching the issuer's keys is not, so `KeyFetchInterceptor` fetches
them before the handler runs when a token names a `kid` not yet known (rate-limited in `IssuerKeys`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import grpc

from broker.api.bounded import BoundedCache
from broker.errors import UnauthenticatedError
from broker.idp.jwks import IssuerKeys
from broker.model import Caller, ServiceAccountIssuer
from broker.protocol.serviceaccount import is_jwt, key_id, validate_service_account_token

_SCHEME = "bearer "

if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[object, object]
else:  # generic only in the type stubs
    _Interceptor = grpc.aio.ServerInterceptor


class ServiceAccountCallers:
    """The caller a service-account token names; raises UnauthenticatedError for any token that does not."""

    def __init__(
        self,
        callers: Iterable[Caller],
        settings: ServiceAccountIssuer,
        keys: IssuerKeys,
        *,
        capacity: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._by_account = {caller.service_account: caller for caller in callers if caller.service_account}
        self._settings = settings
        self._keys = keys
        self._clock = clock
        # token -> (caller, valid until): only tokens that verified, so guesses cannot fill it.
        self._valid: BoundedCache[str, tuple[Caller, float]] = BoundedCache(capacity)

    @property
    def cached(self) -> int:
        return len(self._valid)

    def caller(self, token: str) -> Caller:
        hit = self._valid.get(token)
        if hit is not None and self._clock() < hit[1]:
            return hit[0]
        if not self._keys.loaded:
            raise UnauthenticatedError(
                "service-account token: the issuer's keys are not available; retry later"
            )
        settings = self._settings
        account = validate_service_account_token(
            token,
            self._keys.keys,
            issuer=settings.issuer,
            audience=settings.audience,
            now=datetime.fromtimestamp(self._clock(), UTC),
            leeway=settings.leeway,
        )
        caller = self._by_account.get(account.key)
        if caller is None:
            raise UnauthenticatedError(
                "service-account token: no caller is configured for its service account"
            )
        self._valid.put(token, (caller, (account.expires_at + settings.leeway).timestamp()))
        return caller

    async def prepare(self, token: str) -> None:
        """Fetches the issuer's keys first if this token needs keys the broker has not seen yet."""
        hit = self._valid.get(token)
        if hit is not None and self._clock() < hit[1]:
            return
        kid = key_id(token)
        if kid is not None and not self._keys.knows(kid):
            await self._keys.fetch_for(kid)


def bearer_value(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The value after `Bearer ` in the `authorization` metadata, if there is one."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            return value[len(_SCHEME) :].strip() if value[: len(_SCHEME)].lower() == _SCHEME else None
    return None


class KeyFetchInterceptor(_Interceptor):
    """Before a call that carries a service-account token with a new `kid`, fetches the issuer's keys."""

    def __init__(self, callers: ServiceAccountCallers) -> None:
        self._callers = callers

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[object, object]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[object, object]:
        token = bearer_value(handler_call_details.invocation_metadata)
        if token is not None and is_jwt(token):
            await self._callers.prepare(token)
        return await continuation(handler_call_details)
