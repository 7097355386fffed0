"""How a client reaches a broker: its address, TLS (with a client certificate for mTLS) and a caller
credential sent as `authorization: Bearer <credential>` metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the broker is and how to prove who calls; secrets stay out of the repr."""

    address: str
    credential: str | None = field(default=None, repr=False)
    # TLS with the system's roots unless `ca` is given; a certificate and key add mTLS.
    tls: bool = False
    ca: bytes | None = field(default=None, repr=False)
    certificate: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    # The name the server's certificate must carry, when the address uses another (an IP, a tunnel).
    server_name: str | None = None

    def channel(self) -> grpc.aio.Channel:
        if not self.tls:
            return grpc.aio.insecure_channel(self.address)
        credentials = grpc.ssl_channel_credentials(self.ca, self.private_key, self.certificate)
        options = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return grpc.aio.secure_channel(self.address, credentials, options=options)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.credential}"),) if self.credential else ()
