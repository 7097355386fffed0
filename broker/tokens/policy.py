"""When a token is fresh, stale or no longer servable (pure; the clock is passed in).

- fresh:  now < refresh_at                      serve it
- stale:  refresh_at <= now < usable_until      serve it, and refresh it once in the background
- gone:   now >= usable_until                   wait for one fetch

`refresh_at` is a fraction of the lifetime plus jitter, so thousands of tenants fetched in the same second
do not all renew in the same second later. The jitter is derived from the cache key and the issue time, so
every replica computes the same instant for the same token and they contend for one renewal, not many.
`usable_until` is the expiry minus the skew (at most half the lifetime, so a short-lived token is useful).

Replicas sharing a store then each add a small delay of their own (`staggered`): the earliest renews, and
the others, whose turn comes later, have the token from its renewal notice by then, so only one replica
spends a lease, a fetch and the Redis round trips on a renewal, instead of all contending for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from broker.model import AccessToken


@dataclass(frozen=True, slots=True)
class FreshnessPolicy:
    refresh_fraction: float = 0.5
    jitter_fraction: float = 0.1
    expiry_skew: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if not 0 < self.refresh_fraction <= 1:
            raise ValueError("refresh_fraction must be in (0, 1]")
        if not 0 <= self.jitter_fraction < self.refresh_fraction:
            raise ValueError("jitter_fraction must be in [0, refresh_fraction)")

    def usable_until(self, token: AccessToken) -> datetime:
        return token.expires_at - min(self.expiry_skew, token.lifetime / 2)

    def refresh_at(self, token: AccessToken, cache_key: str) -> datetime:
        spread = (2 * _unit(cache_key, token.issued_at) - 1) * self.jitter_fraction
        at = token.issued_at + token.lifetime * (self.refresh_fraction + spread)
        return min(at, self.usable_until(token))


# A replica's own delay is at most this share of the lifetime (and MAX_STAGGER): a renewal notice needs
# milliseconds, and the token stays fresh far longer than that.
STAGGER_FRACTION = 0.05
MAX_STAGGER = timedelta(seconds=5)


def staggered(policy: FreshnessPolicy, token: AccessToken, cache_key: str, replica: bytes) -> datetime:
    """The token's `refresh_at`, delayed by this replica's share, never past half the way to `usable_until`.
    `replica` is random per process: the delay differs between replicas, and is the same each time this
    one looks at the same token (or a token it read back from the store would look fresh again)."""
    refresh_at = policy.refresh_at(token, cache_key)
    room = (policy.usable_until(token) - refresh_at) / 2
    most = min(token.lifetime * STAGGER_FRACTION, MAX_STAGGER, room)
    if most <= timedelta(0):
        return refresh_at
    return refresh_at + most * _unit(cache_key, token.issued_at, replica)


def _unit(cache_key: str, issued_at: datetime, salt: bytes = b"") -> float:
    """A number in [0, 1) that is the same on every replica for the same token (and salt)."""
    text = f"{cache_key}|{issued_at.timestamp()}".encode()
    digest = hashlib.blake2b(text, digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off with full jitter (a retry convoy is what MSAL's users reported)."""

    initial: timedelta = timedelta(milliseconds=500)
    maximum: timedelta = timedelta(seconds=30)

    def delay(self, attempt: int, unit: float) -> timedelta:
        """The pause before retry number `attempt` (0-based); `unit` is a random number in [0, 1)."""
        ceiling = min(self.maximum, self.initial * (2**attempt))
        return timedelta(seconds=ceiling.total_seconds() * (0.5 + unit / 2))
