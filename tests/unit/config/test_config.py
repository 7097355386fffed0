"""Configuration: a valid file loads; every kind of mistake names its field and stops the start."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from broker.config import load_config
from broker.errors import ConfigurationError
from broker.model import Tenancy, TokenType
from broker.protocol import keys

VALID = """
[authority]
issuer = "https://helseid-sts.test.nhn.no/"

[store]
kind = "redis"
url = "redis://127.0.0.1:6379/0"
encryption_key = { env = "BROKER_STORE_KEY" }

[clients.supplier]
client_id = "8f1b2c3d"
tenancy = "multi"
signing_key = { file = "supplier.jwk" }

[targets.sfm]
resource = "e-helse:sfm.api"
scopes = ["e-helse:sfm.api/sfm.api2"]
token_type = "dpop"
allowed_urls = ["https://sfm.test.nhn.no/api/"]

[tenants.oslo]
client = "supplier"
orgnr_parent = "123456789"
orgnr_child = "987654321"
sfm_journal_id = "0B3F1E16-2D0B-4E1A-9E37-0C1C6E39B0A1"
targets = ["sfm"]
warm = ["sfm"]
"""

ENV = {"BROKER_STORE_KEY": base64.b64encode(os.urandom(32)).decode()}


def write(tmp_path: Path, text: str) -> Path:
    key = keys.generate_signing_key("ES256")
    (tmp_path / "supplier.jwk").write_text(json.dumps(keys.private_jwk(key)))
    path = tmp_path / "broker.toml"
    path.write_text(text)
    return path


def test_valid_configuration_loads_with_all_fields(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), ENV)
    client = config.clients["supplier"]
    assert client.issuer == "https://helseid-sts.test.nhn.no"
    assert client.tenancy is Tenancy.MULTI
    assert client.dpop_key is client.signing_key
    assert config.targets["sfm"].token_type is TokenType.DPOP
    tenant = config.tenants["oslo"]
    assert tenant.sfm_journal_id == "0b3f1e16-2d0b-4e1a-9e37-0c1c6e39b0a1"
    assert tenant.warm_targets == ("sfm",)
    assert config.store.kind == "redis"
    assert config.store.encryption_key is not None
    assert len(config.store.encryption_key) == 32


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('orgnr_parent = "123456789"', 'orgnr_parent = "12345678"'), "tenants.oslo.orgnr_parent"),
        (('client = "supplier"', 'client = "nobody"'), "tenants.oslo.client"),
        (('targets = ["sfm"]', 'targets = ["pps"]'), "tenants.oslo.targets[0]"),
        (('warm = ["sfm"]', 'warm = ["kj"]'), "tenants.oslo.warm[0]"),
        (('tenancy = "multi"', 'tenancy = "many"'), "clients.supplier.tenancy"),
        (('token_type = "dpop"', 'token_type = "mac"'), "targets.sfm.token_type"),
        (('scopes = ["e-helse:sfm.api/sfm.api2"]', "scopes = []"), "targets.sfm.scopes"),
        (('"https://sfm.test.nhn.no/api/"', '"http://sfm.test.nhn.no/api/"'), "targets.sfm.allowed_urls[0]"),
        (
            ('sfm_journal_id = "0B3F1E16-2D0B-4E1A-9E37-0C1C6E39B0A1"', 'sfm_journal_id = "42"'),
            "tenants.oslo.sfm_journal_id",
        ),
        (
            ('signing_key = { file = "supplier.jwk" }', 'signing_key = { file = "missing.jwk" }'),
            "clients.supplier.signing_key",
        ),
        (
            ('client_id = "8f1b2c3d"', 'client_id = "8f1b2c3d"\nclientid = "typo"'),
            "clients.supplier.clientid",
        ),
        (('kind = "redis"', 'kind = "etcd"'), "store.kind"),
    ],
)
def test_invalid_configuration_names_the_field_when_loading(
    tmp_path: Path, change: tuple[str, str], field: str
) -> None:
    old, new = change
    assert old in VALID
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, VALID.replace(old, new)), ENV)
    assert caught.value.field == field


def test_missing_encryption_key_variable_is_named_without_its_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, VALID), {})
    assert caught.value.field == "store.encryption_key"
    assert "BROKER_STORE_KEY" in caught.value.message


PLAIN_URL = 'url = "redis://127.0.0.1:6379/0"'
# A URL with its password: what a Secret holds, never the ConfigMap.
SECRET_URL = "rediss://:a-redis-password@redis.example:6380/0"


def test_store_url_from_an_environment_variable_is_resolved(tmp_path: Path) -> None:
    text = VALID.replace(PLAIN_URL, 'url = { env = "BROKER_REDIS_URL" }')
    config = load_config(write(tmp_path, text), {**ENV, "BROKER_REDIS_URL": SECRET_URL})
    assert config.store.url == SECRET_URL


def test_store_url_from_a_file_is_resolved_without_its_trailing_newline(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace(PLAIN_URL, 'url = { file = "redis-url" }'))
    (tmp_path / "redis-url").write_text(SECRET_URL + "\n")
    assert load_config(path, ENV).store.url == SECRET_URL


def test_store_url_variable_missing_is_named_without_a_value(tmp_path: Path) -> None:
    text = VALID.replace(PLAIN_URL, 'url = { env = "BROKER_REDIS_URL" }')
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), ENV)
    assert caught.value.problems == (("store.url", "environment variable 'BROKER_REDIS_URL' is not set"),)


def test_store_url_from_a_secret_with_a_wrong_scheme_is_refused_without_showing_it(tmp_path: Path) -> None:
    text = VALID.replace(PLAIN_URL, 'url = { env = "BROKER_REDIS_URL" }')
    url = SECRET_URL.replace("rediss://", "https://")
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), {**ENV, "BROKER_REDIS_URL": url})
    assert caught.value.problems == (("store.url", "must be a redis://, rediss:// or unix:// URL"),)
    assert "a-redis-password" not in str(caught.value)


@pytest.mark.parametrize("value", ['{ value = "redis://127.0.0.1" }', "6379", '""'])
def test_store_url_neither_a_string_nor_a_reference_is_one_mistake(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, VALID.replace(PLAIN_URL, f"url = {value}")), ENV)
    message = 'must be a URL string or a reference: { env = "NAME" } or { file = "path" }'
    assert caught.value.problems == (("store.url", message),)


def test_public_key_is_refused_as_a_signing_key(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    (tmp_path / "supplier.jwk").write_text(json.dumps(keys.public_jwk(keys.generate_signing_key())))
    with pytest.raises(ConfigurationError) as caught:
        load_config(path, ENV)
    assert caught.value.field == "clients.supplier.signing_key"


def test_key_material_never_appears_in_the_error_when_the_key_is_bad(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    jwk = keys.private_jwk(keys.generate_signing_key())
    jwk["crv"] = "P-384"  # breaks the key; the private part is still there
    (tmp_path / "supplier.jwk").write_text(json.dumps(jwk))
    with pytest.raises(ConfigurationError) as caught:
        load_config(path, ENV)
    assert jwk["d"] not in str(caught.value)


def test_single_tenant_tenant_with_a_parent_org_is_refused(tmp_path: Path) -> None:
    text = VALID.replace('tenancy = "multi"', 'tenancy = "single"')
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), ENV)
    assert caught.value.field == "tenants.oslo.orgnr_parent"


def test_toml_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, VALID + "\n[tenants.broken\n"), ENV)
    assert "line" in caught.value.message


def test_callers_are_read_and_a_short_credential_or_unknown_tenant_is_named(tmp_path: Path) -> None:
    text = (
        VALID
        + """
[callers.sfm-service]
credential = { env = "CALLER_SECRET" }
tenants = ["oslo"]
targets = ["*"]
sessions = true
"""
    )
    config = load_config(write(tmp_path, text), {**ENV, "CALLER_SECRET": "s" * 40})
    caller = config.callers["sfm-service"]
    assert caller.tenants == frozenset({"oslo"})
    assert caller.targets is None
    assert caller.sessions
    with pytest.raises(ConfigurationError) as short:
        load_config(write(tmp_path, text), {**ENV, "CALLER_SECRET": "short"})
    assert short.value.field == "callers.sfm-service.credential"
    with pytest.raises(ConfigurationError) as unknown:
        load_config(
            write(tmp_path, text.replace('tenants = ["oslo"]', 'tenants = ["tromso"]')),
            {**ENV, "CALLER_SECRET": "s" * 40},
        )
    assert unknown.value.field == "callers.sfm-service.tenants[0]"


def test_listening_beyond_loopback_without_callers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, VALID + '\n[server]\nlisten = "0.0.0.0:50051"\n'), ENV)
    assert caught.value.field == "callers"


SENTINELS = 'sentinels = ["127.0.0.1:26379", "[::1]:26380"]\nservice_name = "broker"'


def test_sentinels_replace_the_url(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID.replace(PLAIN_URL, SENTINELS)), ENV)
    assert config.store.url is None
    assert config.store.sentinels == (("127.0.0.1", 26379), ("::1", 26380))
    assert config.store.address.replicated
    assert config.store.address.service_name == "broker"


def test_sentinels_with_a_url_or_without_a_service_name_are_refused(tmp_path: Path) -> None:
    both = VALID.replace(PLAIN_URL, PLAIN_URL + "\n" + SENTINELS)
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, both), ENV)
    assert caught.value.problems == (
        ("store.url", "give either url (one Redis server) or sentinels, not both"),
    )
    nameless = VALID.replace(PLAIN_URL, 'sentinels = ["127.0.0.1:26379"]')
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, nameless), ENV)
    assert caught.value.problems == (
        ("store.service_name", "missing: the name the sentinels watch the master under"),
    )
    bad = VALID.replace(PLAIN_URL, 'sentinels = ["no-port"]\nservice_name = "broker"')
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, bad), ENV)
    assert caught.value.problems[0][0] == "store.sentinels[0]"


def test_cluster_nodes_replace_the_url_and_exclude_sentinels(tmp_path: Path) -> None:
    nodes = 'nodes = ["127.0.0.1:7000", "127.0.0.1:7001"]'
    config = load_config(write(tmp_path, VALID.replace(PLAIN_URL, nodes)), ENV)
    assert config.store.nodes == (("127.0.0.1", 7000), ("127.0.0.1", 7001))
    assert config.store.url is None
    assert not config.store.address.replicated
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, VALID.replace(PLAIN_URL, PLAIN_URL + "\n" + nodes)), ENV)
    assert caught.value.problems == (
        ("store.nodes", "give one of url (one server), sentinels or nodes (a cluster)"),
    )
