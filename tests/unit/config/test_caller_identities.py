"""Workload-identity callers in the configuration: each needs a way in; every mistake names its field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from joserfc.jwk import KeySet, RSAKey

from broker.config import load_config
from broker.errors import ConfigurationError
from tests.fixtures.workload_identity import TestCa
from tests.unit.config.test_config import ENV, VALID, write

CALLERS = """
[server.tls]
certificate = { file = "server.pem" }
private_key = { file = "server.key" }
client_ca = { file = "ca.pem" }

[server.service_account_tokens]
issuer = "https://kubernetes.default.svc.cluster.local"
audience = "helseid-token-broker"
jwks = { file = "cluster-jwks.json" }

[callers.billing]
spiffe_id = "spiffe://cluster.test/ns/payments/sa/billing"
tenants = ["oslo"]
targets = ["sfm"]

[callers.reports]
dns_name = "Reports.Cluster.Test."
tenants = ["*"]
targets = ["*"]

[callers.ledger]
service_account = "payments:ledger"
tenants = ["oslo"]
targets = ["*"]
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    ca = TestCa()
    server = ca.server()
    (tmp_path / "server.pem").write_bytes(server.certificate)
    (tmp_path / "server.key").write_bytes(server.key)
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    (tmp_path / "cluster-jwks.json").write_text(json.dumps(KeySet([key]).as_dict(private=False)))
    return tmp_path


def test_callers_by_certificate_or_service_account_need_no_credential(config_dir: Path) -> None:
    config = load_config(write(config_dir, VALID + CALLERS), ENV)
    billing, reports, ledger = (config.callers[name] for name in ("billing", "reports", "ledger"))
    assert billing.spiffe_id == "spiffe://cluster.test/ns/payments/sa/billing"
    assert billing.credential_sha256 is None
    assert reports.dns_name == "reports.cluster.test"  # compared in lower case, without the root dot
    assert ledger.service_account == "payments:ledger"
    issuer = config.server.service_account_tokens
    assert issuer is not None
    assert issuer.jwks_file == str(config_dir / "cluster-jwks.json")
    assert issuer.audience == "helseid-token-broker"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('spiffe_id = "spiffe://cluster.test/ns/payments/sa/billing"\n', ""), "callers.billing"),
        (("spiffe://cluster.test/ns", "https://cluster.test/ns"), "callers.billing.spiffe_id"),
        (('"Reports.Cluster.Test."', '"*.cluster.test"'), "callers.reports.dns_name"),
        (('"payments:ledger"', '"payments/ledger"'), "callers.ledger.service_account"),
        (('"payments:ledger"', '"Payments:ledger"'), "callers.ledger.service_account"),
        (
            (
                '"payments:ledger"',
                '"payments:billing"\nspiffe_id = "spiffe://cluster.test/ns/payments/sa/billing"',
            ),
            "callers.ledger.spiffe_id",
        ),
        (('client_ca = { file = "ca.pem" }\n', ""), "callers.billing.spiffe_id"),
        (
            ('issuer = "https://kubernetes', 'issuer = "http://kubernetes'),
            "server.service_account_tokens.issuer",
        ),
        (('audience = "helseid-token-broker"\n', ""), "server.service_account_tokens.audience"),
        (
            ('jwks = { file = "cluster-jwks.json" }', 'jwks = { env = "JWKS" }'),
            "server.service_account_tokens.jwks",
        ),
        (
            ('jwks = { file = "cluster-jwks.json" }', 'jwks = { file = "server.pem" }'),
            "server.service_account_tokens.jwks",
        ),
        (
            ('audience = "helseid-token-broker"', 'audience = "b"\nrefetch_interval_s = 0'),
            "server.service_account_tokens.refetch_interval_s",
        ),
    ],
)
def test_each_identity_mistake_names_its_field(config_dir: Path, change: tuple[str, str], field: str) -> None:
    old, new = change
    assert old in CALLERS
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(config_dir, VALID + CALLERS.replace(old, new, 1)), ENV)
    assert caught.value.field == field


def test_a_service_account_caller_without_an_issuer_section_is_refused(config_dir: Path) -> None:
    section = CALLERS[CALLERS.index("[server.service_account_tokens]") : CALLERS.index("[callers.billing]")]
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(config_dir, VALID + CALLERS.replace(section, "")), ENV)
    assert caught.value.field == "callers.ledger.service_account"
