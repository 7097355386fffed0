"""What the engine needs from the outside, as structural types: `idp/` and `store/` implement them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


class Lease(Protocol):
    """The right to fetch one key's token, proven by a fencing number that only grows."""

    @property
    def key(self) -> str: ...

    @property
    def fencing(self) -> int: ...


class LeaseAttempt(Protocol):
    """One try for a key's lease, answered with the token the store held at that moment: a renewal that
    finds a fresh one (another replica's) needs no second read, and waits for no one."""

    @property
    def lease(self) -> Lease | None:
        """None while another holder has it."""
        ...

    @property
    def stored(self) -> AccessToken | None: ...


RenewalCallback = Callable[[str, AccessToken | None], None]


class Coordinator(Protocol):
    """Cross-replica single-flight: leases with fencing, compare-and-set writes, renewal notices.

    Every method raises StoreUnavailableError when the shared store cannot answer.
    """

    async def try_lease(self, key: str, ttl: timedelta) -> LeaseAttempt:
        """A lease (or none while another holder has one), and the token stored for the key."""
        ...

    async def renew(self, lease: Lease, ttl: timedelta) -> bool:
        """False when the lease was lost (expired and maybe taken by another)."""
        ...

    async def put_if_holder(self, lease: Lease, token: AccessToken, ttl: timedelta) -> bool:
        """Stores the token, releases the lease and tells every replica, only if the lease still holds."""
        ...

    async def release(self, lease: Lease) -> None: ...

    async def lease_held(self, key: str) -> bool: ...

    def on_renewal(self, callback: RenewalCallback) -> None:
        """`callback(cache_key, token)` runs, in the event loop, when another replica stored a new token for
        a key; `token` is that token, or None when the notice did not carry one the store could open."""
        ...
