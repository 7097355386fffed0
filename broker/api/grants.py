"""What an authenticated caller may touch: its tenants, its targets, user sessions and the AdminService
(default deny).

A caller that is not granted a tenant gets the same answer whether the tenant exists or not, so the
refusal tells it nothing about other tenants.
"""

from __future__ import annotations

from collections.abc import Iterable

from broker.errors import PermissionDeniedError, Reason
from broker.model import Caller


def check(
    caller: Caller | None,
    *,
    tenant: str | None = None,
    targets: Iterable[str] = (),
    sessions: bool = False,
    admin: bool = False,
) -> None:
    """Raises PermissionDeniedError (CALLER_NOT_ALLOWED) for the first thing the caller may not use."""
    if caller is None:  # the broker has no callers: loopback only, everything allowed
        return
    if admin and not caller.admin:
        raise _denied(caller, "the AdminService")
    if sessions and not caller.sessions:
        raise _denied(caller, "user sessions")
    if tenant is not None and caller.tenants is not None and tenant not in caller.tenants:
        raise _denied(caller, "this tenant")
    if caller.targets is not None:
        for target in targets:
            if target not in caller.targets:
                raise _denied(caller, "this target")


def _denied(caller: Caller, what: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"caller {caller.name!r} may not use {what}", reason=Reason.CALLER_NOT_ALLOWED, caller=caller.name
    )
