"""What the session service needs from a store; `store/` implements it in memory and in Redis.

Every method raises StoreUnavailableError when the store cannot answer. A refresh of one session is
serialised by a lease with a fencing number; `save_refreshed` writes the rotated refresh token and the new
access token in one step, and only while the lease holds, so a race can never lose the session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from joserfc.jwk import KeySet

from broker.model import AccessToken, Client, PendingLogin, Session, Target, TokenSet


class SessionLease(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def fencing(self) -> int: ...


class SessionStore(Protocol):
    async def put_pending(self, state: str, login: PendingLogin, ttl: timedelta) -> None: ...

    async def take_pending(self, state: str) -> PendingLogin | None:
        """The pending login, removed in the same step: a state is good for one callback only."""
        ...

    async def create(self, session: Session, ttl: timedelta) -> None: ...

    async def get(self, session_key: str) -> Session | None: ...

    async def delete(self, session_key: str) -> None:
        """Removes the session and every token cached for it."""
        ...

    async def get_token(self, session_key: str, target: str) -> AccessToken | None: ...

    async def put_token(self, session_key: str, target: str, token: AccessToken, ttl: timedelta) -> None: ...

    async def try_lease(self, session_key: str, ttl: timedelta) -> SessionLease | None: ...

    async def renew(self, lease: SessionLease, ttl: timedelta) -> bool: ...

    async def release(self, lease: SessionLease) -> None: ...

    async def save_refreshed(
        self,
        lease: SessionLease,
        *,
        session: Session,
        session_ttl: timedelta,
        target: str,
        token: AccessToken,
        token_ttl: timedelta,
    ) -> bool:
        """Stores the session (new refresh token) and the new token at once, if the lease still holds."""
        ...


class TokenEndpoint(Protocol):
    """The user grants at the STS's token endpoint (implemented by idp.sts.StsClient)."""

    async def redeem_code(
        self,
        client: Client,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        resource: str | None,
        dpop: bool,
    ) -> TokenSet: ...

    async def refresh(
        self, client: Client, *, refresh_token: str, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> TokenSet: ...

    async def exchange(
        self, client: Client, *, subject_token: str, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> AccessToken: ...


class LoginEndpoints(Protocol):
    """PAR, revocation and the ID-token keys (implemented by idp.endpoints.UserEndpoints)."""

    async def push_authorization(
        self,
        client: Client,
        parameters: Mapping[str, str | tuple[str, ...]],
        details: Sequence[Mapping[str, Any]],
    ) -> tuple[str, datetime]: ...

    async def revoke_refresh_token(self, client: Client, refresh_token: str) -> bool: ...

    async def id_token_keys(self, issuer: str, *, refresh: bool = False) -> KeySet: ...
