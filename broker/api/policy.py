"""Who may call the broker, and for what: callers present a secret (`authorization: Bearer <secret>`), and
each caller may use only the tenants and targets the configuration lists for it (default deny).

With no callers configured the broker serves anyone who reaches it; the configuration allows that only on a
loopback address (the embedded defaults, a sidecar).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

import grpc

from broker.errors import PermissionDeniedError, Reason, UnauthenticatedError
from broker.model import Caller

_SCHEME = "bearer "


class CallerPolicy:
    def __init__(self, callers: Mapping[str, Caller]) -> None:
        self.open = not callers
        self._callers = list(callers.values())
        # Header values already matched: a known caller costs one dict lookup, not a hash per call. Only
        # matched values are kept, so unknown guesses cannot grow it.
        self._known: dict[str, Caller] = {}

    def caller(self, context: grpc.aio.ServicerContext[object, object]) -> Caller | None:
        """The authenticated caller (None when the broker is open); UnauthenticatedError otherwise."""
        if self.open:
            return None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                known = self._known.get(value)
                return known if known is not None else self._match(value)
        raise UnauthenticatedError("present the caller's credential as 'authorization: Bearer <secret>'")

    def check(
        self,
        context: grpc.aio.ServicerContext[object, object],
        *,
        tenant: str | None = None,
        targets: Iterable[str] = (),
        sessions: bool = False,
    ) -> None:
        caller = self.caller(context)
        if caller is None:
            return
        if tenant is not None and caller.tenants is not None and tenant not in caller.tenants:
            raise _denied(caller, f"tenant {tenant!r}")
        for target in targets:
            if caller.targets is not None and target not in caller.targets:
                raise _denied(caller, f"target {target!r}")
        if sessions and not caller.sessions:
            raise _denied(caller, "user sessions")

    def _match(self, value: str) -> Caller:
        if not value[: len(_SCHEME)].lower() == _SCHEME:
            raise UnauthenticatedError("the authorization metadata must use the Bearer scheme")
        digest = hashlib.sha256(value[len(_SCHEME) :].strip().encode()).digest()
        for caller in self._callers:
            if hmac.compare_digest(digest, caller.credential_sha256):
                self._known[value] = caller
                return caller
        raise UnauthenticatedError("unknown caller credential")


def _denied(caller: Caller, what: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"caller {caller.name!r} may not use {what}", reason=Reason.CALLER_NOT_ALLOWED, caller=caller.name
    )
