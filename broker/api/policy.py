"""Who calls the broker. A caller is known by any of:

- its client certificate (mTLS): the SPIFFE ID or a DNS name among the SANs (`api/identity.py`);
- a Kubernetes service-account token, `authorization: Bearer <jwt>` (`api/serviceaccounts.py`);
- a shared secret, `authorization: Bearer <secret>`.

When a certificate names a caller and a credential arrives too, both must name the same caller. A
certificate that names no caller (mTLS used only to encrypt) leaves the credential to decide. Each caller may
use only the tenants and targets the configuration lists for it (default deny); `api/grants.py` checks that.

With no callers configured the broker serves anyone who reaches it; the configuration allows that only on a
loopback address (the embedded defaults, a sidecar).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import grpc

from broker.api.bounded import BoundedCache
from broker.api.identity import CertificateCallers
from broker.api.serviceaccounts import KeyFetchInterceptor, ServiceAccountCallers
from broker.errors import UnauthenticatedError
from broker.idp.jwks import IssuerKeys
from broker.model import Caller, ServiceAccountIssuer
from broker.protocol.serviceaccount import is_jwt

_SCHEME = "bearer "


class CallerPolicy:
    def __init__(
        self, callers: Mapping[str, Caller], service_accounts: ServiceAccountCallers | None = None
    ) -> None:
        self.open = not callers
        self._secret_callers = [caller for caller in callers.values() if caller.credential_sha256 is not None]
        # Header values already matched: a known caller costs one dict lookup, not a hash per call. Only
        # matched values are kept, and at most a bounded number of spellings of them.
        self._known: BoundedCache[str, Caller] = BoundedCache(1024)
        self._certificates = CertificateCallers(callers.values())
        self._service_accounts = service_accounts

    def caller(self, context: grpc.aio.ServicerContext[object, object]) -> Caller | None:
        """The authenticated caller (None when the broker is open); UnauthenticatedError otherwise."""
        if self.open:
            return None
        by_certificate = self._certificates.caller(context) if self._certificates.enabled else None
        value = _authorization(context)
        if value is None:
            if by_certificate is not None:
                return by_certificate
            raise UnauthenticatedError(
                "present a caller's client certificate, or 'authorization: Bearer <secret or token>'"
            )
        by_credential = self._known.get(value) or self._match(value)
        if by_certificate is not None and by_certificate.name != by_credential.name:
            raise UnauthenticatedError(
                f"the client certificate names caller {by_certificate.name!r} and the credential names "
                f"caller {by_credential.name!r}: both must name the same caller"
            )
        return by_credential

    def _match(self, value: str) -> Caller:
        if not value[: len(_SCHEME)].lower() == _SCHEME:
            raise UnauthenticatedError("the authorization metadata must use the Bearer scheme")
        credential = value[len(_SCHEME) :].strip()
        if self._service_accounts is not None and is_jwt(credential):
            # Cached by the token itself until it expires, not here: a token's validity ends.
            return self._service_accounts.caller(credential)
        digest = hashlib.sha256(credential.encode()).digest()
        for caller in self._secret_callers:
            if hmac.compare_digest(digest, caller.credential_sha256 or b""):
                self._known.put(value, caller)
                return caller
        raise UnauthenticatedError("unknown caller credential")


def caller_policy(
    callers: Mapping[str, Caller], issuer: ServiceAccountIssuer | None
) -> tuple[CallerPolicy, list[grpc.aio.ServerInterceptor[object, object]]]:
    """The policy for `callers`, and the interceptors it needs on the server (the key fetch, if any)."""
    if issuer is None or not any(caller.service_account for caller in callers.values()):
        return CallerPolicy(callers), []
    service_accounts = ServiceAccountCallers(callers.values(), issuer, IssuerKeys(issuer))
    return CallerPolicy(callers, service_accounts), [KeyFetchInterceptor(service_accounts)]


def _authorization(context: grpc.aio.ServicerContext[object, object]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    return None
