"""A port the broker cannot bind is the user's to fix: one line, not gRPC's RuntimeError or a traceback from
every worker process."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from broker.cli_errors import CommandError


def _cannot_listen(listen: str) -> CommandError:
    return CommandError(f"cannot listen on {listen}: the address is in use or not available here")


@contextlib.contextmanager
def bind_failures(listen: str) -> Iterator[None]:
    """gRPC reports a port it cannot bind as a RuntimeError (no errno to tell it by; its message says so)."""
    try:
        yield
    except RuntimeError as exc:
        if "Failed to bind" not in str(exc):
            raise
        raise _cannot_listen(listen) from None


def probe_shared_port(listen: str) -> None:
    """Binds `listen` as the workers will (SO_REUSEPORT) and lets go: each worker binds in its own process,
    where a port in use would be one traceback per worker and a parent that exits 0."""
    host, _, port = listen.rpartition(":")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: TIME_WAIT is no conflict
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind(address)
    except (OSError, ValueError):
        raise _cannot_listen(listen) from None
