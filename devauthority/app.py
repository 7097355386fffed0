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

from .answers import Answer
from .authority import Authority
from .demo_api import BEARER_PATH, DPOP_PATH
from .discovery import AUTHORIZE_PATH, DISCOVERY_PATH, JWKS_PATH, PAR_PATH, REVOCATION_PATH, TOKEN_PATH
from .registry import RegisteredClient
from .selvbetjening import CLIENT_SECRET_PATH, JsonAnswer
from .users import TestUser

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
    app.router.add_route("*", PAR_PATH, routes.par)
    app.router.add_route("*", REVOCATION_PATH, routes.revocation)
    app.router.add_get(AUTHORIZE_PATH, routes.authorize)
    app.router.add_post(AUTHORIZE_PATH, routes.authorize)  # OIDC allows a form post too
    app.router.add_get("/dev/stats", routes.stats)
    app.router.add_post("/dev/reset-stats", routes.reset_stats)
    app.router.add_get("/dev/faults", routes.get_faults)
    app.router.add_post("/dev/faults", routes.set_faults)
    app.router.add_post("/dev/clients", routes.register_client)
    app.router.add_post("/dev/test-users", routes.register_test_user)
    app.router.add_route("*", DPOP_PATH + "{tail:.*}", routes.demo_api)
    app.router.add_route("*", BEARER_PATH + "{tail:.*}", routes.demo_bearer)
    app.router.add_post("/dev/demo-api/rotate-nonce", routes.rotate_demo_nonce)
    app.router.add_get(CLIENT_SECRET_PATH, routes.list_client_keys)
    app.router.add_post(CLIENT_SECRET_PATH, routes.register_client_key)
    app.router.add_delete(CLIENT_SECRET_PATH + "/{kid}", routes.remove_client_key)
    app.router.add_get("/dev/selvbetjening/faults", routes.selvbetjening_settings)
    app.router.add_post("/dev/selvbetjening/faults", routes.set_selvbetjening_faults)
    app.router.add_post("/dev/selvbetjening/key-lifetime", routes.set_selvbetjening_key_lifetime)
    return app


class _Routes:
    def __init__(self, authority: Authority) -> None:
        self._authority = authority

    async def discovery(self, _: web.Request) -> web.Response:
        return web.json_response(self._authority.discovery())

    async def jwks(self, _: web.Request) -> web.Response:
        return web.json_response(self._authority.tokens.jwks())

    async def token(self, request: web.Request) -> web.Response:
        answer = await self._authority.token_endpoint.handle(
            method=request.method,
            form=await _form(request),
            dpop_headers=request.headers.getall("DPoP", []),
        )
        return _reply(answer)

    async def par(self, request: web.Request) -> web.Response:
        answer = self._authority.par_endpoint.handle(
            method=request.method,
            form=await _form(request),
            dpop_headers=request.headers.getall("DPoP", []),
        )
        return _reply(answer)

    async def authorize(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            params = dict(await _form(request) or ())
        else:
            # Only the first of a repeated parameter counts; a PAR-only authorize needs just two.
            params = {name: request.query.getone(name) for name in request.query}
        return _reply(self._authority.authorize_endpoint.handle(params))

    async def revocation(self, request: web.Request) -> web.Response:
        answer = self._authority.revocation_endpoint.handle(method=request.method, form=await _form(request))
        return _reply(answer)

    # --- the Selvbetjening-like key API (selvbetjening.py) ---------------------------------------------

    async def list_client_keys(self, request: web.Request) -> web.Response:
        answer = self._authority.selvbetjening.list_keys(url=str(request.url), headers=_auth_headers(request))
        return _json_reply(answer)

    async def register_client_key(self, request: web.Request) -> web.Response:
        answer = self._authority.selvbetjening.register_key(
            url=str(request.url), headers=_auth_headers(request), body=await request.read()
        )
        return _json_reply(answer)

    async def remove_client_key(self, request: web.Request) -> web.Response:
        answer = self._authority.selvbetjening.remove_key(
            kid=request.match_info["kid"], url=str(request.url), headers=_auth_headers(request)
        )
        return _json_reply(answer)

    # --- dev-only hooks -------------------------------------------------------------------------------

    async def selvbetjening_settings(self, _: web.Request) -> web.Response:
        return web.json_response(self._authority.selvbetjening.settings())

    async def set_selvbetjening_faults(self, request: web.Request) -> web.Response:
        try:
            self._authority.selvbetjening.faults.update(await _json_body(request))
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        log.warning("selvbetjening faults set to %s", self._authority.selvbetjening.settings())
        return web.json_response(self._authority.selvbetjening.settings())

    async def set_selvbetjening_key_lifetime(self, request: web.Request) -> web.Response:
        try:
            self._authority.selvbetjening.set_key_lifetime(await _json_body(request))
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        return web.json_response(self._authority.selvbetjening.settings())

    async def demo_api(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = self._authority.demo_api.dpop(
            method=request.method,
            url=str(request.url),
            path=request.path,
            headers=_auth_headers(request),
            body_bytes=len(body),
        )
        return _reply(answer)

    async def demo_bearer(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = self._authority.demo_api.bearer(
            method=request.method, path=request.path, headers=_auth_headers(request), body_bytes=len(body)
        )
        return _reply(answer)

    async def rotate_demo_nonce(self, _: web.Request) -> web.Response:
        self._authority.demo_api.rotate_nonce()
        return web.json_response({"rotated": True})

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response(self._authority.snapshot())

    async def reset_stats(self, _: web.Request) -> web.Response:
        self._authority.reset_stats()
        return web.json_response(self._authority.snapshot())

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

    async def register_test_user(self, request: web.Request) -> web.Response:
        """Add one test user at run time (same JSON as in the --test-users file)."""
        try:
            user = TestUser.from_json(await _json_body(request))
            self._authority.users.register(user)
        except (ValueError, TypeError) as exc:
            return _error(400, "invalid_request", str(exc))
        return web.json_response({"id": user.id})


def _auth_headers(request: web.Request) -> dict[str, list[str]]:
    return {name: list(request.headers.getall(name, [])) for name in ("Authorization", "DPoP")}


async def _form(request: web.Request) -> list[tuple[str, str]] | None:
    """The form fields of a form-encoded POST, in order; None for any other request."""
    if request.method != "POST" or request.content_type != FORM_CONTENT_TYPE:
        return None
    posted = await request.post()
    return [(name, value) for name, value in posted.items() if isinstance(value, str)]


def _reply(answer: Answer) -> web.Response:
    if answer.body is None:
        return web.Response(status=answer.status, headers=dict(answer.headers))
    return web.json_response(dict(answer.body), status=answer.status, headers=dict(answer.headers))


def _json_reply(answer: JsonAnswer) -> web.Response:
    headers = dict(answer.headers)
    if answer.body is None:
        return web.Response(status=answer.status, headers=headers)
    content_type = headers.pop("Content-Type", "application/json")
    return web.json_response(answer.body, status=answer.status, headers=headers, content_type=content_type)


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
