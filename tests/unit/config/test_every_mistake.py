"""A configuration with many mistakes names every one of them at once, each with its path, and no secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import load_config, parse_config, parse_tenant
from broker.errors import ConfigurationError

from .test_config import ENV, VALID, write

INLINE_SECRET = "inline-secret-value-that-must-never-be-echoed"
MISTAKES = f"""
[servr]
listen = "x"

[server]
workers = 0
max_watch_streams = 0

[store]
kind = "etcd"

[cache]
refresh_fraction = 1.5

[limits]
burst = 3

[telemetry]
log_level = "LOUD"

[audit]
otel = true
hash_key = "{INLINE_SECRET}"

[clients.supplier]
client_id = "8f1b2c3d"
tenancy = "many"
signing_key = {{ file = "missing.jwk" }}

[clients.other]
client_id = ""
signing_key = {{ env = "OTHER_KEY" }}

[targets.sfm]
scopes = []
token_type = "mac"
allowed_urls = ["http://sfm.test.nhn.no/api/", "https://sfm.test.nhn.no/api/?x=1"]

[tenants.oslo]
client = "nobody"
orgnr_parent = "12345678"
targets = ["sfm", "pps"]
warm = ["kj"]

[tenants.bergen]
client = "supplier"
targets = ["sfm"]
sfm_journal_id = "42"

[callers.epj]
credential = {{ env = "EPJ_CREDENTIAL" }}
tenants = ["tromso"]
targets = ["*"]
sessions = "yes"
"""

# Every mistake above, in the order of the file, with the words that say what is wrong.
EXPECTED = [
    ("servr", "unknown section"),
    ("server.workers", "whole number from 1 to 64"),
    ("server.max_watch_streams", "whole number from 1 to 1,000,000"),
    ("store.kind", "'memory' or 'redis'"),
    ("cache.refresh_fraction", "above 0 and at most 1"),
    ("limits.burst", "unknown field (allowed: sts_burst, sts_requests_per_caller_per_s)"),
    ("telemetry.log_level", "one of DEBUG"),
    ("audit.otel", "needs telemetry.otlp_endpoint"),
    ("audit.hash_key", "must be a reference"),
    ("clients.supplier.tenancy", "'single' or 'multi'"),
    ("clients.supplier.signing_key", "cannot read"),
    ("clients.supplier.issuer", "no [authority] issuer to fall back on"),
    ("clients.other.client_id", "non-empty string"),
    ("targets.sfm.scopes", "at least one"),
    ("targets.sfm.token_type", "'dpop', 'bearer'"),
    ("targets.sfm.allowed_urls[0]", "https URL"),
    ("targets.sfm.allowed_urls[1]", "no query or fragment"),
    ("tenants.oslo.client", "no client named 'nobody'"),
    ("tenants.oslo.orgnr_parent", "exactly 9 digits"),
    ("tenants.oslo.targets[1]", "no target named 'pps'"),
    ("tenants.oslo.warm[0]", "not among the tenant's targets"),
    ("tenants.bergen.sfm_journal_id", "must be a UUID"),
    ("callers.epj.credential", "'EPJ_CREDENTIAL' is not set"),
    ("callers.epj.tenants[0]", "no tenant named 'tromso'"),
    ("callers.epj.sessions", "true or false"),
]


def test_every_mistake_is_listed_with_its_path_when_a_file_has_many(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(MISTAKES)
    with pytest.raises(ConfigurationError) as caught:
        load_config(path, {})
    error = caught.value
    print(f"\n{len(error.problems)} mistakes reported for {len(EXPECTED)} made:\n{error.message}")
    assert [field for field, _ in error.problems] == [field for field, _ in EXPECTED]
    for (field, message), (_, words) in zip(error.problems, EXPECTED, strict=True):
        assert words in message, f"{field}: {message}"
    assert error.field == "servr"  # the first, for callers that show one
    assert error.message.startswith(f"{len(EXPECTED)} mistakes:")
    assert INLINE_SECRET not in str(error)


def test_a_value_that_failed_is_not_reported_again_by_the_rules_that_need_it(tmp_path: Path) -> None:
    # The client's tenancy is unreadable: whether oslo needs orgnr_parent cannot be known, so it is not
    # claimed; the endpoint is unreadable: audit.otel's need for it is not claimed either.
    text = VALID.replace('tenancy = "multi"', 'tenancy = "many"').replace('orgnr_parent = "123456789"\n', "")
    text += '\n[telemetry]\notlp_endpoint = "otel:4318"\n[audit]\notel = true\n'
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), ENV)
    fields = [field for field, _ in caught.value.problems]
    print(f"\nreported: {fields}")
    assert fields == ["clients.supplier.tenancy", "telemetry.otlp_endpoint"]


def test_a_tenant_is_validated_alone_against_a_loaded_configuration(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), ENV)
    tenant = parse_tenant(
        "tromso", {"client": "supplier", "targets": ["sfm"], "orgnr_parent": "123456789"}, config
    )
    assert (tenant.name, tenant.client, tenant.orgnr_parent) == ("tromso", "supplier", "123456789")
    with pytest.raises(ConfigurationError) as caught:
        parse_tenant("tromso", {"client": "other", "targets": ["pps"], "orgnr_child": "1", "x": 1}, config)
    fields = [field for field, _ in caught.value.problems]
    print(f"\nalone: {fields}")
    assert fields == [
        "tenants.tromso.client",
        "tenants.tromso.targets[0]",
        "tenants.tromso.orgnr_child",
        "tenants.tromso.x",
    ]


def test_relative_paths_are_read_from_the_files_folder_when_started_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = write(folder, VALID + '\n[audit]\ndirectory = "audit"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc") / path.name, ENV)
    assert config.audit.directory == Path("etc") / "audit"
    assert config.clients["supplier"].signing_key.kid


def test_a_raw_mapping_with_wrong_section_types_names_each_section(tmp_path: Path) -> None:
    raw = {"clients": [], "targets": {}, "tenants": {"oslo": "x"}, "server": 5}
    with pytest.raises(ConfigurationError) as caught:
        parse_config(raw, base_dir=tmp_path, environ={})
    assert [field for field, _ in caught.value.problems] == ["clients", "tenants.oslo", "server"]


def test_an_entry_named_with_dots_and_brackets_is_reported_under_its_name(tmp_path: Path) -> None:
    text = VALID + '\n[tenants."a[b].c"]\nclient = "supplier"\ntargets = ["sfm"]\norgnr_parent = "1"\n'
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), ENV)
    print(f"\nreported: {caught.value.problems}")
    assert [field for field, _ in caught.value.problems] == ["tenants.a[b].c.orgnr_parent"]
