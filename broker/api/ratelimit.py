"""A per-caller limit on the STS traffic callers drive: logins, code redemptions, session ends, exchanges.

Cached tokens cost HelseID nothing, but every `StartLogin` is a PAR request, every `CompleteLogin` a code
redemption, every `EndSession` a revocation and every exchange miss a token request. One runaway or hostile
caller must not make the broker hammer HelseID for all tenants (HelseID throttles the client, and so every
caller). So each caller has a token bucket: `rate` requests a second on average, bursts of up to `burst`.

Buckets exist only for callers named in the configuration, made up front, so no map grows with callers'
input; a broker without callers (loopback only) and any name it does not know share one bucket. The limit
holds per broker process: with `server.workers` or replicas, HelseID sees at most that many times it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from broker.errors import RateLimitedError

_SHARED = ""  # the bucket of a broker without callers, and of any caller name it does not know


class LimitsView(Protocol):
    """What the limiter reads of `config.LimitsSettings` (api and config are sibling layers)."""

    @property
    def sts_requests_per_caller_per_s(self) -> float: ...

    @property
    def sts_burst(self) -> int: ...

    @property
    def caller_rates(self) -> Mapping[str, float]: ...


class ConfigView(Protocol):
    """What the limiter reads of `config.BrokerConfig`."""

    @property
    def limits(self) -> LimitsView: ...

    @property
    def callers(self) -> Mapping[str, object]: ...


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second up to `burst`; starts full."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Takes one token and answers 0, or takes none and answers the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class StsTrafficLimiter:
    """Charges one STS request to a caller, or raises RateLimitedError with when to retry."""

    def __init__(
        self,
        rates: Mapping[str, float],
        *,
        burst: int,
        shared_rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        now = clock()
        self._clock = clock
        self._buckets = {
            name: TokenBucket(rate, burst, burst, now)
            for name, rate in {**rates, _SHARED: shared_rate}.items()
        }

    @classmethod
    def from_config(
        cls, config: ConfigView, *, clock: Callable[[], float] = time.monotonic
    ) -> StsTrafficLimiter:
        limits = config.limits
        default = limits.sts_requests_per_caller_per_s
        rates = {name: limits.caller_rates.get(name, default) for name in config.callers}
        return cls(rates, burst=limits.sts_burst, shared_rate=default, clock=clock)

    def charge(self, caller: str | None) -> None:
        name = caller if caller is not None and caller in self._buckets else _SHARED
        bucket = self._buckets[name]
        wait = bucket.take(self._clock())
        if wait > 0:
            rate, burst = f"{bucket.rate:g}", f"{bucket.burst:g}"
            metadata = (
                {"caller": name, "rate": rate, "burst": burst} if name else {"rate": rate, "burst": burst}
            )
            who = f"caller {name!r}" if name else "this broker's callers"
            raise RateLimitedError(
                f"{who} sent more STS requests than allowed ({rate}/s, bursts of {burst}); "
                f"retry in {wait:.1f} s",
                retry_after=timedelta(seconds=wait),
                **metadata,
            )
