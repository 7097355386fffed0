"""Running a dev authority inside a process: bind, serve, register clients, stop."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

from aiohttp import web

from .app import build_app
from .authority import Authority
from .registry import RegisteredClient
from .timing import Clock
from .users import TestUser

DEFAULT_TOKEN_LIFETIME = timedelta(seconds=300)
DEFAULT_NONCE_PERIOD = timedelta(seconds=300)
DEFAULT_REFRESH_TOKEN_LIFETIME = timedelta(hours=8)
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names the wildcards, binds nothing


class RunningAuthority:
    """A dev authority serving on ``issuer``. Use ``await stop()`` or ``async with`` to shut it down."""

    def __init__(self, *, authority: Authority, runner: web.AppRunner, host: str, port: int) -> None:
        self._authority = authority
        self._runner = runner
        self.host = host
        self.port = port

    @property
    def issuer(self) -> str:
        return self._authority.issuer

    @property
    def token_endpoint(self) -> str:
        return self._authority.token_url

    def register(self, client: RegisteredClient) -> None:
        """Add a client, or replace the one with the same client_id (e.g. to rotate its keys)."""
        self._authority.registry.register(client)

    def register_test_user(self, user: TestUser) -> None:
        """Add a test user a PAR ``login_hint`` can name (its id or pid must be new)."""
        self._authority.users.register(user)

    def stats(self) -> dict[str, Any]:
        """The same counters as ``GET /dev/stats``."""
        return self._authority.snapshot()

    def jwks(self) -> dict[str, Any]:
        """The authority's public JWKS."""
        return self._authority.tokens.jwks()

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningAuthority:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_dev_authority(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clients: Sequence[RegisteredClient] = (),
    token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
    nonce_period: timedelta = DEFAULT_NONCE_PERIOD,
    issuer: str | None = None,
    clock: Clock = time.time,
    test_users: Sequence[TestUser] = (),
    refresh_token_lifetime: timedelta = DEFAULT_REFRESH_TOKEN_LIFETIME,
) -> RunningAuthority:
    """Start a dev authority on ``host``:``port`` (0 picks a free port) and return once it listens.

    ``issuer`` defaults to ``http://<host>:<port>``; pass it when clients reach the authority under
    another name (a container name, a proxy). ``clock`` is for tests that need to move time.
    ``test_users`` are logged in when a PAR ``login_hint`` names them; the default test user (Kari
    Nordmann) is always there. ``refresh_token_lifetime`` is absolute: counted from the login, not
    extended by refreshing.
    """
    # Bind first, so the issuer (which is in every token and every check of aud/htu) knows the port
    # that port=0 picked before the app is built.
    sock = _bind(host, port)
    bound_port = int(sock.getsockname()[1])
    authority = Authority(
        issuer=issuer or f"http://{_url_host(host)}:{bound_port}",
        clients=clients,
        token_lifetime_s=_whole_seconds(token_lifetime, "token_lifetime"),
        nonce_period_s=nonce_period.total_seconds(),
        clock=clock,
        test_users=test_users,
        refresh_token_lifetime_s=_whole_seconds(refresh_token_lifetime, "refresh_token_lifetime"),
    )
    runner = web.AppRunner(build_app(authority))
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        sock.close()
        raise
    return RunningAuthority(authority=authority, runner=runner, host=host, port=bound_port)


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    if host in _WILDCARD_HOSTS:
        return "127.0.0.1"  # a wildcard is no address to call; pass issuer= for anything else
    return f"[{host}]" if ":" in host else host


def _whole_seconds(value: timedelta, name: str) -> int:
    seconds = value.total_seconds()
    # expires_in is an integer in the token response, so a fractional lifetime would be misreported.
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"{name} must be a whole number of seconds, at least 1")
    return int(seconds)
