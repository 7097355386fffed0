"""Freshness policy and back-off: pure functions of the token, the key and the attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broker.model import AccessToken, TokenType
from broker.tokens.policy import MAX_STAGGER, Backoff, FreshnessPolicy, staggered

ISSUED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def token(lifetime_s: int, issued: datetime = ISSUED) -> AccessToken:
    return AccessToken("t", TokenType.DPOP, issued, issued + timedelta(seconds=lifetime_s))


def test_refresh_points_spread_within_the_jitter_when_keys_differ() -> None:
    policy = FreshnessPolicy(refresh_fraction=0.5, jitter_fraction=0.1)
    points = [policy.refresh_at(token(3600), f"tenant-{n}") - ISSUED for n in range(1000)]
    assert min(points) >= timedelta(seconds=1440)
    assert max(points) <= timedelta(seconds=2160)
    assert max(points) - min(points) > timedelta(seconds=600)  # really spread, not a single second


def test_every_replica_computes_the_same_refresh_point_for_the_same_token() -> None:
    policy = FreshnessPolicy()
    assert policy.refresh_at(token(3600), "k") == FreshnessPolicy().refresh_at(token(3600), "k")


def test_usable_until_is_expiry_minus_skew_capped_at_half_the_lifetime() -> None:
    policy = FreshnessPolicy(expiry_skew=timedelta(seconds=30))
    assert policy.usable_until(token(3600)) == ISSUED + timedelta(seconds=3570)
    assert policy.usable_until(token(20)) == ISSUED + timedelta(seconds=10)


def test_refresh_point_never_passes_usable_until_when_the_skew_is_large() -> None:
    policy = FreshnessPolicy(refresh_fraction=1.0, jitter_fraction=0.2, expiry_skew=timedelta(seconds=30))
    assert policy.refresh_at(token(100), "k") <= policy.usable_until(token(100))


@pytest.mark.parametrize(("fraction", "jitter"), [(0, 0), (1.5, 0), (0.5, 0.5), (0.5, -0.1)])
def test_policy_refuses_fractions_when_they_make_no_sense(fraction: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        FreshnessPolicy(refresh_fraction=fraction, jitter_fraction=jitter)


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial=timedelta(seconds=1), maximum=timedelta(seconds=8))
    assert backoff.delay(0, 0.0) == timedelta(seconds=0.5)
    assert backoff.delay(2, 0.999) <= timedelta(seconds=4)
    assert backoff.delay(2, 0.0) == timedelta(seconds=2)
    assert backoff.delay(10, 0.5) <= timedelta(seconds=8)


def test_each_replica_delays_its_own_renewal_a_little_and_always_the_same_for_the_same_token() -> None:
    policy = FreshnessPolicy()
    issued = token(3600)
    base = policy.refresh_at(issued, "k")
    replicas = [bytes([n]) * 16 for n in range(50)]
    points = [staggered(policy, issued, "k", replica) for replica in replicas]
    assert all(base <= point <= base + MAX_STAGGER for point in points)
    assert len(set(points)) == len(replicas)  # each replica its own instant: the earliest renews
    assert staggered(policy, issued, "k", replicas[0]) == points[0]  # a token read back looks the same


def test_the_replica_delay_never_takes_more_than_half_the_room_before_usable_until() -> None:
    policy = FreshnessPolicy(expiry_skew=timedelta(seconds=30))
    short = token(62)  # usable until 31 s, refreshed from about 25 to 31 s: little room
    room = policy.usable_until(short) - policy.refresh_at(short, "k")
    for n in range(50):
        point = staggered(policy, short, "k", bytes([n]) * 16)
        assert point - policy.refresh_at(short, "k") <= room / 2
        assert point <= policy.usable_until(short)
