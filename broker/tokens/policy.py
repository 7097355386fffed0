"""When a token is fresh, stale or no longer servable (pure; the clock is passed in).

- fresh:  now < refresh_at                      serve it
- stale:  refresh_at <= now < usable_until      serve it, and refresh it once in the background
- gone:   now >= usable_until                   wait for one fetch

`refresh_at` is a fraction of the lifetime plus jitter, so thousands of tenants fetched in the same second
do not all renew in the same second later. The jitter is derived from the cache key and the issue time, so
every replica computes the same instant for the same token and they contend for one renewal, not many.
`usable_until` is the expiry minus the skew (at most half the lifetime, so a short-lived token is useful).
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


def _unit(cache_key: str, issued_at: datetime) -> float:
    """A number in [0, 1) that is the same on every replica for the same token."""
    digest = hashlib.blake2b(f"{cache_key}|{issued_at.timestamp()}".encode(), digest_size=8).digest()
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
