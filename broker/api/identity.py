"""Callers known by their client certificate: the SPIFFE ID or a DNS name among the certificate's SANs.

Only certificates the TLS handshake verified against `[server.tls] client_ca` reach here; grpc hands the
peer's PEM in the call's auth context. Parsing it costs far more than the hit path's budget, so what a
certificate names is cached by its PEM bytes in a bounded map.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from cryptography import x509

from broker.api.bounded import BoundedCache
from broker.errors import UnauthenticatedError
from broker.model import Caller

_PEM_PROPERTY = "x509_pem_cert"


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """What a client certificate says its holder is."""

    spiffe_id: str | None
    dns_names: frozenset[str]


def certificate_identity(pem: bytes) -> CertificateIdentity:
    """The SPIFFE ID and DNS names of a PEM certificate's subjectAltName."""
    certificate = x509.load_pem_x509_certificate(pem)
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return CertificateIdentity(None, frozenset())
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    # SPIFFE X.509-SVID §2: an SVID MUST contain exactly one URI SAN, and that is the SPIFFE ID.
    spiffe_id = uris[0] if len(uris) == 1 and uris[0].startswith("spiffe://") else None
    dns_names = frozenset(name.lower().rstrip(".") for name in names.get_values_for_type(x509.DNSName))
    return CertificateIdentity(spiffe_id, dns_names)


class CertificateCallers:
    """The caller a peer's client certificate names, if any; cached per certificate."""

    def __init__(self, callers: Iterable[Caller], *, capacity: int = 1024) -> None:
        callers = list(callers)
        self._by_spiffe_id = {caller.spiffe_id: caller for caller in callers if caller.spiffe_id}
        self._by_dns_name = {caller.dns_name: caller for caller in callers if caller.dns_name}
        # Without certificate callers the auth context is never read: secret callers pay nothing.
        self.enabled = bool(self._by_spiffe_id or self._by_dns_name)
        self._named: BoundedCache[bytes, tuple[Caller, ...]] = BoundedCache(capacity)

    @property
    def cached(self) -> int:
        return len(self._named)

    def caller(self, context: grpc.aio.ServicerContext[object, object]) -> Caller | None:
        """The caller the certificate names; None without a certificate or when it names no caller."""
        pems = context.auth_context().get(_PEM_PROPERTY)
        if not pems:
            return None
        pem = next(iter(pems))
        named = self._named.get(pem)
        if named is None:
            named = self._match(certificate_identity(pem))
            self._named.put(pem, named)
        if len(named) > 1:
            raise UnauthenticatedError(
                "the client certificate names more than one caller "
                f"({', '.join(sorted(caller.name for caller in named))})"
            )
        return named[0] if named else None

    def _match(self, identity: CertificateIdentity) -> tuple[Caller, ...]:
        found = {self._by_dns_name[name] for name in identity.dns_names if name in self._by_dns_name}
        if identity.spiffe_id in self._by_spiffe_id:
            found.add(self._by_spiffe_id[identity.spiffe_id])
        return tuple(found)
