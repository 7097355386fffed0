"""The HTTP face of the dev authority (aiohttp): routes, and the dev-only test hooks under ``/dev/``.

The ``/dev/`` routes exist for tests and local development only; HelseID has nothing like them. They
are unauthenticated by design, so a dev authority must never listen where untrusted callers reach it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .authority import Authority
from .discovery import AUTHORIZE_PATH, DISCOVERY_PATH, JWKS_PATH, PAR_PATH, REVOCATION_PATH, TOKEN_PATH
from .registry import RegisteredClient

log = logging.getLogger(__name__)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(authority: Authority) -> web.Application:
    routes = _Routes(authority)
    app = web.Application(middlewares=[_json_server_errors])
    app.router.add_get(DISCOVERY_PATH, routes.discovery)
    app.router.add_get(JWKS_PATH, routes.jwks)
    # Every method reaches the handler, so a GET gets HelseID's invalid_request rather than a bare 405.
    app.router.add_route("*", TOKEN_PATH, routes.token)
    for path in (PAR_PATH, AUTHORIZE_PATH, REVOCATION_PATH):
        app.router.add_route("*", path, routes.not_implemented)
    app.router.add_get("/dev/stats", routes.stats)
    app.router.add_post("/dev/reset-stats", routes.reset_stats)
    app.router.add_get("/dev/faults", routes.get_faults)
    app.router.add_post("/dev/faults", routes.set_faults)
    app.router.add_post("/dev/clients", routes.register_client)
    return app


class _Routes:
    def __init__(self, authority: Authority) -> None:
        self._authority = authority

    async def discovery(self, _: web.Request) -> web.Response:
        return web.json_response(self._authority.discovery())

    async def jwks(self, _: web.Request) -> web.Response:
        return web.json_response(self._authority.tokens.jwks())

    async def token(self, request: web.Request) -> web.Response:
        form: list[tuple[str, str]] | None = None
        if request.method == "POST" and request.content_type == FORM_CONTENT_TYPE:
            posted = await request.post()
            form = [(name, value) for name, value in posted.items() if isinstance(value, str)]
        answer = await self._authority.token_endpoint.handle(
            method=request.method,
            form=form,
            dpop_headers=request.headers.getall("DPoP", []),
        )
        return web.json_response(dict(answer.body), status=answer.status, headers=dict(answer.headers))

    async def not_implemented(self, request: web.Request) -> web.Response:
        return _error(501, "invalid_request", f"{request.path} is not implemented by the dev authority yet")

    # --- dev-only hooks -------------------------------------------------------------------------------

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response(self._authority.stats.snapshot())

    async def reset_stats(self, _: web.Request) -> web.Response:
        self._authority.stats.reset()
        return web.json_response(self._authority.stats.snapshot())

    async def get_faults(self, _: web.Request) -> web.Response:
        return web.json_response(self._authority.faults.snapshot())

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            self._authority.faults.update(await _json_body(request))
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        log.warning("token endpoint faults set to %s", self._authority.faults.snapshot())
        return web.json_response(self._authority.faults.snapshot())

    async def register_client(self, request: web.Request) -> web.Response:
        """Register (or replace) one client at run time, for a dev authority running as a subprocess."""
        try:
            client = RegisteredClient.from_json(await _json_body(request))
        except (ValueError, TypeError) as exc:
            return _error(400, "invalid_request", str(exc))
        self._authority.registry.register(client)
        return web.json_response({"client_id": client.client_id})


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except json.JSONDecodeError as exc:
        raise ValueError("the body must be JSON") from exc


def _error(status: int, error: str, description: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description},
        status=status,
        headers={"Cache-Control": "no-store"},
    )


@web.middleware
async def _json_server_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    # An unexpected failure still answers in the OAuth shape, and the log gets the type, not the data
    # (an exception's message could quote a request field).
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.error("unexpected %s while serving %s %s", type(exc).__name__, request.method, request.path)
        log.debug("traceback of the unexpected error", exc_info=True)
        return _error(500, "server_error", "unexpected error in the dev authority")
