"""How a client reaches the broker: the address, TLS and the caller's credential."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import threading
from collections.abc import Sequence
from typing import Any

import grpc

from ._gen.broker.v1 import token_broker_service_pb2_grpc as pb_grpc

#: The environment variable with the broker's address (``host:port``).
ADDRESS_ENV = "HELSEID_BROKER_ADDR"
#: The environment variable with the caller's credential, sent as ``authorization: Bearer <credential>``.
CREDENTIAL_ENV = "HELSEID_BROKER_CREDENTIAL"
DEFAULT_ADDRESS = "127.0.0.1:50051"


def is_loopback(address: str) -> bool:
    """Whether a gRPC target (``host:port``, ``[v6]:port``, ``unix:...``) stays on this machine."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    for prefix in ("dns:///", "ipv4:", "ipv6:"):
        if address.startswith(prefix):
            address = address[len(prefix) :]
    if address.startswith("["):
        host = address[1 : address.find("]")] if "]" in address else address[1:]
    elif address.count(":") == 1:
        host = address.rsplit(":", 1)[0]
    else:
        host = address  # no port, or a bare IPv6 address
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Broker:
    """Where the broker is and how to call it; holds one channel per kind (sync, and asyncio per loop).

    The address defaults to ``$HELSEID_BROKER_ADDR`` (else ``127.0.0.1:50051``), the credential to
    ``$HELSEID_BROKER_CREDENTIAL``. TLS is on when ``tls=True`` or any certificate is given (the system's
    roots unless ``root_certificates``; ``certificate_chain`` and ``private_key`` add mTLS). A credential is
    never sent in plaintext to an address that is not loopback: that is refused with ValueError.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        credential: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        server_name: str | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
        if credential is None:
            credential = os.environ.get(CREDENTIAL_ENV) or None
        self.tls = bool(tls or root_certificates or certificate_chain or private_key)
        if credential and not self.tls and not is_loopback(self.address):
            raise ValueError(
                f"refusing to send the broker credential in plaintext to {self.address}: "
                "use tls=True (or a loopback address)"
            )
        self._credential = credential
        self._root_certificates = root_certificates
        self._certificate_chain = certificate_chain
        self._private_key = private_key
        options = list(channel_options)
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        self._options = tuple(options)
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {credential}"),) if credential else ()
        )
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.TokenBrokerServiceStub | None = None
        self._aio: tuple[asyncio.AbstractEventLoop, grpc.aio.Channel, pb_grpc.TokenBrokerServiceStub] | None = None

    def __repr__(self) -> str:
        credential = ", credential=..." if self._credential else ""
        return f"Broker({self.address!r}, tls={self.tls}{credential})"

    def _credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self._root_certificates, self._private_key, self._certificate_chain)

    def stub(self) -> pb_grpc.TokenBrokerServiceStub:
        """The generated stub on this broker's (shared, thread-safe) sync channel."""
        stub = self._stub
        if stub is None:
            with self._lock:
                if self._stub is None:
                    if self.tls:
                        channel = grpc.secure_channel(self.address, self._credentials(), options=self._options)
                    else:
                        channel = grpc.insecure_channel(self.address, options=self._options)
                    self._channel = channel
                    self._stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
                stub = self._stub
        return stub

    def aio_stub(self) -> pb_grpc.TokenBrokerServiceStub:
        """The generated stub on an asyncio channel of the running event loop (made once per loop)."""
        loop = asyncio.get_running_loop()
        aio = self._aio
        if aio is None or aio[0] is not loop:
            if self.tls:
                channel = grpc.aio.secure_channel(self.address, self._credentials(), options=self._options)
            else:
                channel = grpc.aio.insecure_channel(self.address, options=self._options)
            aio = (loop, channel, pb_grpc.TokenBrokerServiceStub(channel))  # type: ignore[no-untyped-call]
            self._aio = aio
        return aio[2]

    def close(self) -> None:
        """Closes the sync channel (an asyncio channel closes with ``aclose``)."""
        with self._lock:
            channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()

    async def aclose(self) -> None:
        """Closes the asyncio channel of the running loop and the sync channel."""
        aio, self._aio = self._aio, None
        if aio is not None and aio[0] is asyncio.get_running_loop():
            await aio[1].close(None)
        self.close()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def __aenter__(self) -> Broker:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
