"""``/connect/authorize``: redeem a pushed request's ``request_uri``, log a test user in, redirect.

There is no login page. The user named by the PAR ``login_hint`` (or the default test user) is logged
in at once and the browser is sent back with ``302`` to ``redirect_uri?code=..&state=..&iss=..``
(``iss`` per RFC 9207). Errors about the request itself (unknown, used or expired ``request_uri``, a
``client_id`` that does not match) are answered here with 400 JSON and never redirected, since the
redirect URI of such a request cannot be trusted.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from urllib.parse import urlencode

from .answers import NO_STORE, Answer, error_answer
from .errors import INVALID_REQUEST, INVALID_REQUEST_URI, OAuthError
from .registry import AUTHORIZATION_CODE, ClientRegistry
from .sessions import LoginStore
from .stats import Stats
from .timing import Clock

log = logging.getLogger(__name__)

CODE_LIFETIME_S = 60


class AuthorizeEndpoint:
    def __init__(
        self,
        *,
        issuer: str,
        registry: ClientRegistry,
        store: LoginStore,
        stats: Stats,
        clock: Clock,
        code_lifetime_s: float = CODE_LIFETIME_S,
    ) -> None:
        self._issuer = issuer
        self._registry = registry
        self._store = store
        self._stats = stats
        self._clock = clock
        self._code_lifetime_s = code_lifetime_s

    def handle(self, params: Mapping[str, str]) -> Answer:
        try:
            client_id = params.get("client_id")
            request_uri = params.get("request_uri")
            if not client_id:
                raise OAuthError(INVALID_REQUEST, "client_id is required")
            if not request_uri:
                raise OAuthError(INVALID_REQUEST, "request_uri is required: push the request to /connect/par")
            pushed = self._store.pushed(request_uri)
            if pushed is None:
                raise OAuthError(INVALID_REQUEST_URI, "request_uri is unknown, used or expired")
            if pushed.client_id != client_id:
                raise OAuthError(INVALID_REQUEST, "client_id is not the client that pushed the request")
            client = self._registry.get(client_id)
            if client is None or AUTHORIZATION_CODE not in client.grant_types:
                raise OAuthError(INVALID_REQUEST, f"client {client_id!r} may not log users in")
        except OAuthError as error:
            self._stats.errors_by_code[error.error] += 1
            log.info("authorization request refused: %s", error)
            return error_answer(error)

        self._store.take_pushed(request_uri)  # single-use
        auth_time = int(self._clock())
        code = self._store.new_code(
            pushed, sid=secrets.token_hex(16), auth_time=auth_time, lifetime_s=self._code_lifetime_s
        )
        self._stats.logins += 1
        log.info("test user %s logged in for client %s", pushed.user.id, client_id)
        answer: dict[str, str] = {"code": code}
        if pushed.state is not None:
            answer["state"] = pushed.state
        answer["iss"] = self._issuer
        separator = "&" if "?" in pushed.redirect_uri else "?"
        location = pushed.redirect_uri + separator + urlencode(answer)
        return Answer(302, None, {**NO_STORE, "Location": location})
