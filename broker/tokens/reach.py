"""How much remaining lifetime a caller may ask for: what a fresh token of a route can give.

A `min_remaining_lifetime` longer than a route's tokens live can never be met, and every attempt would cost
an STS request. So the broker remembers, per key (a route, or a tenant and target: names from the
configuration, so the map stays small), the lifetime of the last token it saw there, and refuses such a
request from that knowledge. Only a key it knows nothing about yet costs one request, which teaches it.

What a fresh token can give is its lifetime minus the part the broker never serves (the expiry skew, as in
`FreshnessPolicy.usable_until`), minus a margin of a twentieth of the lifetime for the STS round trip: a
token's life starts when its request is sent, so it arrives already a little used. The margin also bounds
how often callers can make the broker renew a route for them: a token fetched for the longest request that
is allowed still satisfies such requests for at least the margin.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import timedelta

from broker.errors import InvalidRequestError, Reason
from broker.model import AccessToken
from broker.tokens.policy import FreshnessPolicy

FIELD = "min_remaining_lifetime"
_MARGIN_FRACTION = 0.05
_NO_TIME = timedelta(0)


def reach(policy: FreshnessPolicy, lifetime: timedelta) -> timedelta:
    """The longest remaining lifetime a caller may ask of a route whose tokens live `lifetime`."""
    servable = lifetime - min(policy.expiry_skew, lifetime / 2)
    return max(servable - lifetime * _MARGIN_FRACTION, _NO_TIME)


def beyond_reach(lifetime: timedelta, longest: timedelta) -> InvalidRequestError:
    return InvalidRequestError(
        FIELD,
        f"longer than the tokens of this target can give: at most {int(longest.total_seconds())} s "
        f"(they live {int(lifetime.total_seconds())} s)",
        reason=Reason.LIFETIME_UNAVAILABLE,
    )


class LifetimeReach:
    """The lifetime of the last token seen per key, and the refusal of requests no fresh token meets."""

    def __init__(self, policy: FreshnessPolicy) -> None:
        self._policy = policy
        self._lifetimes: dict[Hashable, timedelta] = {}

    def learn(self, key: Hashable, token: AccessToken) -> None:
        self._lifetimes[key] = token.lifetime

    def longest(self, key: Hashable) -> timedelta | None:
        """What a fresh token for `key` can give; None while no token of it was seen."""
        lifetime = self._lifetimes.get(key)
        return None if lifetime is None else reach(self._policy, lifetime)

    def refuse_beyond(self, key: Hashable, min_remaining: timedelta) -> None:
        """Raises INVALID_ARGUMENT (LIFETIME_UNAVAILABLE) when no fresh token for `key` could meet it."""
        lifetime = self._lifetimes.get(key)
        if lifetime is None or min_remaining <= _NO_TIME:
            return
        longest = reach(self._policy, lifetime)
        if min_remaining > longest:
            raise beyond_reach(lifetime, longest)

    def refusal(self, key: Hashable) -> InvalidRequestError:
        """The error for a request that a token just fetched for it could not meet either."""
        lifetime = self._lifetimes.get(key, _NO_TIME)
        return beyond_reach(lifetime, reach(self._policy, lifetime))
