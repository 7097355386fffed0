"""Request objects (RFC 9101): the full 60 s HelseID allows, and `expires_at` matching the signed `exp`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.protocol import keys, rfc9101

from .support import NOW, NOW_S, unverified


def _object(now: datetime, lifetime: timedelta = rfc9101.MAX_LIFETIME) -> dict[str, Any]:
    key = keys.generate_signing_key("ES256")
    token = rfc9101.build_request_object(
        client_id="c",
        audience="https://sts.test",
        key=key,
        now=now,
        jti="j",
        parameters={"state": "s"},
        lifetime=lifetime,
    )
    return unverified(token)[1]


def test_request_object_lives_the_60_s_helseid_allows_by_default() -> None:
    claims = _object(NOW + timedelta(milliseconds=900))
    print(f"\nrequest object: iat {claims['iat']}, exp {claims['exp']} ({claims['exp'] - claims['iat']} s)")
    assert (claims["iat"], claims["exp"]) == (NOW_S, NOW_S + 60)


def test_expires_at_is_the_signed_exp_in_whole_seconds() -> None:
    now = NOW + timedelta(milliseconds=900)
    assert rfc9101.expires_at(now) == datetime.fromtimestamp(_object(now)["exp"], UTC)
    assert rfc9101.expires_at(now, timedelta(seconds=30)) == NOW + timedelta(seconds=30)


def test_request_object_is_refused_beyond_60_s() -> None:
    with pytest.raises(ValueError, match="60 s"):
        _object(NOW, lifetime=timedelta(seconds=61))
