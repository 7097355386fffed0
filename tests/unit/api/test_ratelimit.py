"""The per-caller STS traffic limit: token buckets on a clock the test moves, and its configuration."""

from __future__ import annotations

import json
import secrets
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from broker.api.ratelimit import StsTrafficLimiter
from broker.config import LimitsSettings, parse_config
from broker.errors import ConfigurationError, RateLimitedError
from broker.protocol import keys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def charged(limiter: StsTrafficLimiter, caller: str | None, times: int) -> int:
    """How many of `times` charges in a row the limiter let through."""
    allowed = 0
    for _ in range(times):
        try:
            limiter.charge(caller)
        except RateLimitedError:
            continue
        allowed += 1
    return allowed


def test_a_burst_passes_then_the_rate_holds_and_retry_after_says_when() -> None:
    clock = Clock()
    limiter = StsTrafficLimiter({"epj": 2.0}, burst=20, shared_rate=2.0, clock=clock)
    first = charged(limiter, "epj", 100)
    with pytest.raises(RateLimitedError) as caught:
        limiter.charge("epj")
    assert caught.value.retry_after == timedelta(seconds=0.5)  # one token at 2/s
    assert caught.value.reason == "RATE_LIMITED"
    assert caught.value.metadata["caller"] == "epj"
    clock.now += 0.4
    early = charged(limiter, "epj", 1)
    clock.now += 0.1
    on_time = charged(limiter, "epj", 1)
    clock.now += 10  # 20 tokens come back, never more than the burst
    after_pause = charged(limiter, "epj", 100)
    clock.now += 1000
    after_long_pause = charged(limiter, "epj", 100)
    print(
        f"\nburst 20, 2/s: {first} of 100 at once, {early} after 0.4 s, {on_time} after 0.5 s, "
        f"{after_pause} after 10 s, {after_long_pause} after 1000 s; retry_after {caught.value.retry_after}"
    )
    assert (first, early, on_time, after_pause, after_long_pause) == (20, 0, 1, 20, 20)


def test_callers_have_their_own_buckets_and_their_own_rates() -> None:
    clock = Clock()
    limiter = StsTrafficLimiter({"epj": 1.0, "batch": 10.0}, burst=5, shared_rate=1.0, clock=clock)
    assert charged(limiter, "epj", 50) == 5
    assert charged(limiter, "batch", 50) == 5  # epj's exhaustion does not touch batch
    clock.now += 1
    refilled = (charged(limiter, "epj", 50), charged(limiter, "batch", 50))
    print(f"\nafter 1 s: epj (1/s) {refilled[0]}, batch (10/s) {refilled[1]}")
    assert refilled == (1, 5)


def test_no_callers_and_unknown_names_share_one_bucket_so_nothing_grows_with_input() -> None:
    clock = Clock()
    limiter = StsTrafficLimiter({}, burst=3, shared_rate=1.0, clock=clock)
    allowed = charged(limiter, None, 2) + sum(charged(limiter, f"made-up-{n}", 1) for n in range(1000))
    print(f"\nshared bucket (burst 3): {allowed} of 1002 charges from None and 1000 names")
    assert allowed == 3
    assert len(limiter._buckets) == 1  # the bound is the point
    with pytest.raises(RateLimitedError) as caught:
        limiter.charge(None)
    assert "caller" not in caught.value.metadata


def _config(tmp_path: Path, extra: str) -> str:
    key = keys.generate_signing_key("ES256")
    (tmp_path / "c.jwk").write_text(json.dumps(keys.private_jwk(key)))
    (tmp_path / "epj.secret").write_text(secrets.token_urlsafe(32))
    (tmp_path / "batch.secret").write_text(secrets.token_urlsafe(32))
    return f"""
[clients.c]
client_id = "c"
issuer = "https://sts.test"
signing_key = {{ file = "c.jwk" }}
[targets.sfm]
scopes = ["s"]
[tenants.oslo]
client = "c"
targets = ["sfm"]
[callers.epj]
credential = {{ file = "epj.secret" }}
tenants = ["*"]
targets = ["*"]
sessions = true
[callers.batch]
credential = {{ file = "batch.secret" }}
tenants = ["*"]
targets = ["*"]
{extra}
"""


def _parse(tmp_path: Path, text: str) -> LimitsSettings:
    return parse_config(tomllib.loads(text), base_dir=tmp_path, environ={}).limits


def test_limits_come_from_the_configuration_with_per_caller_overrides(tmp_path: Path) -> None:
    text = _config(
        tmp_path, "sts_requests_per_s = 50\n[limits]\nsts_requests_per_caller_per_s = 2.0\nsts_burst = 4\n"
    )
    config = parse_config(tomllib.loads(text), base_dir=tmp_path, environ={})
    assert config.limits == LimitsSettings(2.0, 4, {"batch": 50.0})
    clock = Clock()
    limiter = StsTrafficLimiter.from_config(config, clock=clock)
    assert (charged(limiter, "epj", 10), charged(limiter, "batch", 10)) == (4, 4)
    clock.now += 1
    assert (charged(limiter, "epj", 10), charged(limiter, "batch", 10)) == (2, 4)
    defaults = _parse(tmp_path, _config(tmp_path, ""))
    print(f"\ndefaults: {defaults.sts_requests_per_caller_per_s}/s, burst {defaults.sts_burst}")
    assert defaults == LimitsSettings()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("[limits]\nsts_requests_per_caller_per_s = 0\n", "limits.sts_requests_per_caller_per_s"),
        ('[limits]\nsts_requests_per_caller_per_s = "fast"\n', "limits.sts_requests_per_caller_per_s"),
        ("[limits]\nsts_burst = 0\n", "limits.sts_burst"),
        ("[limits]\nsts_burst = 2.5\n", "limits.sts_burst"),
        ("[limits]\nburst = 3\n", "limits.burst"),
        ("sts_requests_per_s = -1\n", "callers.batch.sts_requests_per_s"),
    ],
)
def test_bad_limits_name_their_field(tmp_path: Path, extra: str, field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _parse(tmp_path, _config(tmp_path, extra))
    assert caught.value.field == field
