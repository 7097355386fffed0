from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey

from broker.devauthority import RegisteredClient, load_clients
from broker.devauthority.dpop import NonceKeeper, normalize_htu
from broker.devauthority.replay import ReplayCache


def _client_json(**overrides: Any) -> dict[str, Any]:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    data: dict[str, Any] = {
        "client_id": "c1",
        "jwks": {"keys": [key.as_dict(private=False)]},
        "tenancy": "multi",
        "organization_number": "912345678",
        "allowed_scopes": ["nhn:pps/provesvar-read"],
    }
    data.update(overrides)
    return data


def test_clients_load_when_the_file_holds_a_list_or_a_clients_object(tmp_path: Path) -> None:
    listed, wrapped = tmp_path / "list.json", tmp_path / "wrapped.json"
    listed.write_text(json.dumps([_client_json()]))
    wrapped.write_text(json.dumps({"clients": [_client_json(require_dpop=False, delegations=["987654321"])]}))

    (from_list,) = load_clients(listed)
    (from_object,) = load_clients(wrapped)

    assert from_list.client_id == "c1"
    assert from_list.require_dpop is True
    assert from_object.require_dpop is False
    assert from_object.delegations == ("987654321",)
    assert from_object.resources == ("nhn:pps",)


def test_client_is_refused_when_its_jwks_holds_a_private_key() -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})

    with pytest.raises(ValueError, match="private"):
        RegisteredClient.from_json(_client_json(jwks={"keys": [key.as_dict(private=True)]}))


def test_client_is_refused_when_a_key_has_no_kid() -> None:
    key = ECKey.generate_key("P-256")

    with pytest.raises(ValueError, match="kid"):
        RegisteredClient.from_json(_client_json(jwks={"keys": [key.as_dict(private=False)]}))


@pytest.mark.parametrize(
    "overrides",
    [
        {"organization_number": "12345678"},
        {"child_organizations": ["1234567890"]},
        {"delegations": ["abcdefghi"]},
        {"not_signed": {"1234": ["x/y"]}},
        {"tenancy": "both"},
        {"allowed_scopes": "nhn:pps/provesvar-read"},
        {"alowed_scopes": []},
        {"organization_number": None},
    ],
)
def test_client_is_refused_when_a_field_is_invalid(overrides: dict[str, Any]) -> None:
    data = {k: v for k, v in _client_json(**overrides).items() if v is not None}

    with pytest.raises(ValueError, match="c1"):
        RegisteredClient.from_json(data)


def test_replayed_identifier_is_forgotten_when_it_could_no_longer_pass_time_checks() -> None:
    now = [1000.0]
    cache = ReplayCache(lambda: now[0])
    cache.remember("a", until=1010.0)

    assert cache.seen("a")
    now[0] = 1011.0
    assert not cache.seen("a")
    assert len(cache) == 0


def test_nonce_rotates_keeping_the_previous_when_one_period_passes() -> None:
    now = [0.0]
    keeper = NonceKeeper(period_s=10, clock=lambda: now[0])
    first = keeper.current()

    now[0] = 10.5
    second = keeper.current()
    assert second != first
    assert keeper.is_valid(first)
    assert keeper.is_valid(second)

    now[0] = 30.5
    assert not keeper.is_valid(first)
    assert not keeper.is_valid(second)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://LocalHost:80/connect/token", "http://localhost/connect/token"),
        ("https://sts.example:443/connect/token?x=1#f", "https://sts.example/connect/token"),
        ("http://127.0.0.1:8080/connect/token", "http://127.0.0.1:8080/connect/token"),
        ("http://[::1]:8080/connect/token", "http://[::1]:8080/connect/token"),
    ],
)
def test_htu_is_normalized_when_compared(url: str, expected: str) -> None:
    assert normalize_htu(url) == expected
