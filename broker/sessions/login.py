"""Starting and completing a user's login: PAR with PKCE, then the callback's code redeemed into a session.

The `state` is single-use and short-lived; the callback's `iss` must be the client's issuer (RFC 9207), and
the ID token must carry the nonce this login sent. Org details travel in a request object at PAR for
multi-tenant clients; on code redemption HelseID refuses them (HID-1009), so they go on refresh grants.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import KeySet

from broker import audit
from broker.errors import BrokerError, InvalidRequestError, PermissionDeniedError, ProtocolError, Reason
from broker.model import Client, PendingLogin, Session, TokenType, UserIdentity
from broker.protocol import oidc, rfc7636
from broker.sessions.ports import LoginEndpoints, SessionStore, TokenEndpoint
from broker.tokens.routes import Route, RouteTable

LOGIN_LIFETIME = timedelta(minutes=10)
# When the STS does not say how long the refresh token lives (rt_expires_in), a session lasts this long.
DEFAULT_SESSION_LIFETIME = timedelta(hours=8)


@dataclass(frozen=True, slots=True)
class LoginStart:
    authorization_url: str
    state: str
    # The URL (its PAR request_uri) must be opened before this instant.
    url_expires_at: datetime


@dataclass(frozen=True, slots=True)
class NewSession:
    session_id: str
    session: Session


def session_key(session_id: str) -> str:
    """The name a session is stored under: a hash, so the store never holds the caller's credential."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:40]


class LoginService:
    def __init__(
        self,
        routes: RouteTable,
        endpoints: LoginEndpoints,
        token_endpoint: TokenEndpoint,
        store: SessionStore,
        clock: Callable[[], datetime],
    ) -> None:
        self._routes = routes
        self._endpoints = endpoints
        self._token_endpoint = token_endpoint
        self._store = store
        self._clock = clock

    async def start(
        self,
        tenant: str,
        targets: Sequence[str],
        *,
        redirect_uri: str | None = None,
        login_hint: str | None = None,
        caller: str | None = None,
        attest: Mapping[str, Any] | None = None,
    ) -> LoginStart:
        """Pushes the authorization request; an `attest` (the trust framework's) rides in its request
        object, so every token of the session carries it."""
        routes = self._login_routes(tenant, targets)
        client = routes[0].client
        redirect = _redirect_uri(client, redirect_uri)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = rfc7636.code_verifier(secrets.token_bytes(48))
        scopes = dict.fromkeys([*oidc.LOGIN_SCOPES, *(s for r in routes for s in r.target.scopes)])
        parameters: dict[str, str | tuple[str, ...]] = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect,
            "scope": " ".join(scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": rfc7636.code_challenge(verifier),
            "code_challenge_method": rfc7636.CODE_CHALLENGE_METHOD,
        }
        resources = tuple(dict.fromkeys(r.target.resource for r in routes if r.target.resource))
        if resources:
            parameters["resource"] = resources
        if any(r.target.token_type is TokenType.DPOP for r in routes):
            # RFC 9449 §10: the code is bound to our DPoP key, so only this broker can redeem it.
            parameters["dpop_jkt"] = client.dpop_key.thumbprint
        if login_hint:
            parameters["login_hint"] = login_hint
        details = routes[0].details if attest is None else (*routes[0].details, dict(attest))
        url, url_expires_at = await self._endpoints.push_authorization(client, parameters, details)
        # The URL must be opened before url_expires_at (about a minute), but the user may then take minutes
        # at HelseID before the callback comes: the pending login keeps its own, longer lifetime.
        expires_at = max(self._clock() + LOGIN_LIFETIME, url_expires_at)
        pending = PendingLogin(
            tenant,
            tuple(r.target.name for r in routes),
            redirect,
            verifier,
            nonce,
            expires_at,
            caller,
            attested=attest is not None,
        )
        await self._store.put_pending(state, pending, expires_at - self._clock())
        return LoginStart(url, state, url_expires_at)

    async def complete(
        self,
        *,
        state: str,
        code: str,
        issuer: str,
        caller: str | None = None,
        allow: Callable[[str, Sequence[str]], None] | None = None,
    ) -> NewSession:
        """Redeems the callback's code. Only the caller that started the login may complete it, and only
        while it may still use the login's tenant and targets (`allow` raises otherwise). A login tried by
        another caller is spent: its state has leaked, so nobody completes it."""
        pending = await self._store.take_pending(state)
        if pending is None or pending.expires_at <= self._clock():
            raise InvalidRequestError(
                "state", "unknown, expired or already used login state", reason=Reason.LOGIN_STATE_UNKNOWN
            )
        if pending.caller != caller:
            raise PermissionDeniedError(
                "the login was started by another caller", reason=Reason.CALLER_NOT_ALLOWED
            )
        if allow is not None:
            allow(pending.tenant, pending.targets)
        first = self._routes.resolve(pending.tenant, pending.targets[0])
        client = first.client
        # RFC 9207: the authorization response names its issuer; a mix-up attack would name another.
        if issuer.rstrip("/") != client.issuer.rstrip("/"):
            raise InvalidRequestError(
                "issuer", "the callback comes from another issuer", reason=Reason.ISSUER_MISMATCH
            )
        tokens = await self._token_endpoint.redeem_code(
            client,
            code=code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
            resource=first.target.resource,
            dpop=first.target.token_type is TokenType.DPOP,
        )
        if tokens.refresh_token is None:
            raise ProtocolError(
                "the STS issued no refresh token (is offline_access granted?)", issuer=client.issuer
            )
        if tokens.id_token is None:
            raise ProtocolError("the STS issued no ID token", issuer=client.issuer)
        user = await self._identity(client, tokens.id_token, pending.nonce)
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        session = Session(
            session_key=session_key(session_id),
            tenant=pending.tenant,
            targets=pending.targets,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.refresh_expires_at or now + DEFAULT_SESSION_LIFETIME,
            user=user,
            created_at=now,
            owner=caller,
            attested=pending.attested,
        )
        await self._store.create(session, session.expires_at - now)
        token = tokens.access_token
        await self._store.put_token(session.session_key, first.target.name, token, token.expires_at - now)
        audit.record(
            "session.created",
            tenant=session.tenant,
            target=first.target.name,
            session=session.session_key[:16],
            token_sha256=audit.token_id(token.value),
        )
        return NewSession(session_id, session)

    async def _identity(self, client: Client, id_token: str, nonce: str) -> UserIdentity:
        def validate(keys: KeySet) -> dict[str, Any]:
            return oidc.validate_id_token(
                id_token,
                keys,
                issuer=client.issuer,
                client_id=client.client_id,
                nonce=nonce,
                now=self._clock(),
            )

        try:
            claims = validate(await self._endpoints.id_token_keys(client.issuer))
        except BrokerError:
            # The STS may have rotated its signing key since the JWKS was cached: read it once more.
            claims = validate(await self._endpoints.id_token_keys(client.issuer, refresh=True))
        return oidc.identity_from_claims(claims)

    def _login_routes(self, tenant: str, targets: Sequence[str]) -> list[Route]:
        if not targets:
            raise InvalidRequestError("targets", "name at least one target")
        routes = [self._routes.resolve(tenant, target) for target in dict.fromkeys(targets)]
        if len({route.client.name for route in routes}) != 1:
            raise InvalidRequestError("targets", "all targets of one login must use the tenant's client")
        return routes


def _redirect_uri(client: Client, asked: str | None) -> str:
    if not client.redirect_uris:
        raise PermissionDeniedError(
            f"client {client.name!r} has no redirect_uris configured for logins",
            reason=Reason.LOGIN_NOT_CONFIGURED,
            client=client.name,
        )
    if not asked:
        return client.redirect_uris[0]
    if asked not in client.redirect_uris:
        raise InvalidRequestError(
            "redirect_uri", "is not one of the client's redirect_uris", reason=Reason.REDIRECT_URI_NOT_ALLOWED
        )
    return asked
