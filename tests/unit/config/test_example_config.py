"""The documented example configuration stays valid as the code changes."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

from broker.config import load_config
from broker.protocol import keys

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "broker.example.toml"


def test_example_configuration_loads_when_its_secrets_exist(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "broker.toml")
    (tmp_path / "keys").mkdir()
    (tmp_path / "tls").mkdir()
    for name in ("supplier.jwk", "supplier-dpop.jwk"):
        (tmp_path / "keys" / name).write_text(json.dumps(keys.private_jwk(keys.generate_signing_key())))
    for name in ("broker.crt", "broker.key", "clients-ca.crt"):
        (tmp_path / "tls" / name).write_text("-----BEGIN PLACEHOLDER-----\n")
    secret = base64.b64encode(os.urandom(32)).decode()
    environ = {
        "BROKER_STORE_KEY": secret,
        "BROKER_CALLER_PRESCRIBING": secret,
        "BROKER_CALLER_LAB": secret,
        "BROKER_AUDIT_KEY": secret,
    }
    config = load_config(tmp_path / "broker.toml", environ)
    assert set(config.callers) == {"prescribing", "lab-results", "referrals", "journal-export"}
    assert config.callers["referrals"].spiffe_id == "spiffe://epj.example/ns/epj/sa/referrals"
    assert config.server.service_account_tokens is not None
    assert config.server.tls_client_ca is not None
    assert config.tenants["oslo-legevakt"].warm_targets == ("sfm",)
