from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey

from devauthority import DEFAULT_TEST_USER, RegisteredClient, TestUser, load_clients, load_test_users
from devauthority.dpop import NonceKeeper, normalize_htu
from devauthority.replay import ReplayCache
from devauthority.users import TestUserRegistry


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


@pytest.mark.parametrize(
    "overrides",
    [
        {"grant_types": ["client_credentials", "password"]},
        {"grant_types": ["authorization_code"]},  # no redirect_uris
        {"grant_types": ["authorization_code"], "redirect_uris": ["/relative/callback"]},
        {"grant_types": ["authorization_code"], "redirect_uris": ["https://epj.example/cb#frag"]},
        {"redirect_uris": "https://epj.example/cb"},
    ],
)
def test_login_client_is_refused_when_grant_types_or_redirect_uris_are_invalid(
    overrides: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="c1"):
        RegisteredClient.from_json(_client_json(**overrides))


def test_login_client_loads_with_grant_types_and_redirect_uris_when_valid() -> None:
    grants = [
        "client_credentials",
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ]
    client = RegisteredClient.from_json(
        _client_json(
            grant_types=grants,
            redirect_uris=["https://epj.example/signin-oidc", "no.example.epj:/callback"],
            allowed_scopes=["nhn:pps/provesvar-read", "openid", "helseid://scopes/identity/pid"],
        )
    )

    assert client.grant_types == tuple(grants)
    assert client.redirect_uris == ("https://epj.example/signin-oidc", "no.example.epj:/callback")
    assert client.resources == ("nhn:pps",)  # identity scopes name no API
    old = RegisteredClient.from_json(_client_json())
    assert old.grant_types == ("client_credentials",)
    assert old.redirect_uris == ()


def test_test_users_load_with_the_default_always_there_when_a_file_adds_some(tmp_path: Path) -> None:
    users_file = tmp_path / "users.json"
    users_file.write_text(
        json.dumps(
            {
                "test_users": [
                    {"id": "lege", "pid": "13116900216", "given_name": "Lege", "family_name": "Legesen"},
                ]
            }
        )
    )

    registry = TestUserRegistry(load_test_users(users_file))

    assert registry.default == DEFAULT_TEST_USER
    assert registry.find("kari") == DEFAULT_TEST_USER
    lege = registry.find("13116900216")  # by pid as well as by id
    assert lege is not None
    assert lege.id == "lege"
    assert lege.security_level == "4"
    assert lege.hpr_number is None
    assert registry.find("nobody") is None


@pytest.mark.parametrize(
    "data",
    [
        {"id": "x", "pid": "1234", "given_name": "A", "family_name": "B"},
        {"id": "x", "pid": "13116900216", "given_name": "A", "family_name": "B", "security_level": "5"},
        {"id": "x", "pid": "13116900216", "given_name": "A", "family_name": "B", "assurance_level": "max"},
        {"id": "x", "pid": "13116900216", "given_name": "A", "family_name": "B", "hpr_number": "12a"},
        {"id": "x", "pid": "13116900216", "given_name": "A"},
        {"id": "x", "pid": "13116900216", "given_name": "A", "family_name": "B", "email": "a@b"},
    ],
)
def test_test_user_is_refused_when_a_field_is_invalid(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="x"):
        TestUser.from_json(data)


def test_test_user_is_refused_when_its_id_or_pid_is_taken() -> None:
    registry = TestUserRegistry()

    with pytest.raises(ValueError, match="already used"):
        registry.register(TestUser(id="kari", pid="13116900216", given_name="A", family_name="B"))
    with pytest.raises(ValueError, match="already used"):
        registry.register(TestUser(id="twin", pid=DEFAULT_TEST_USER.pid, given_name="A", family_name="B"))
