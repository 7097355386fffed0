"""What the engine needs from the outside, as structural types: `idp/` and `store/` implement them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from broker.model import AccessToken, Client, Target


class TokenSource(Protocol):
    """Gets new tokens from the STS."""

    async def fetch_client_credentials(
        self, client: Client, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> AccessToken: ...


class TokenStore(Protocol):
    """A store shared by replicas; it raises StoreUnavailableError when it cannot answer."""

    async def get(self, key: str) -> AccessToken | None: ...

    async def put(self, key: str, token: AccessToken, ttl: timedelta) -> None: ...

    async def close(self) -> None: ...
