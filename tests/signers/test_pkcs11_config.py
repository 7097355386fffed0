"""The `{ pkcs11 = { ... } }` key reference: a client's assertion key in SoftHSM beside a DPoP key in a file,
and every mistake in the reference as one line naming the member, never the PIN."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.config import load_config
from broker.errors import ConfigurationError
from broker.protocol import keys
from tests.fixtures.softhsm import SPARE_TOKEN_LABEL, SoftHsm

PREFIX = "clients.supplier.signing_key.pkcs11"
REPO_ROOT = Path(__file__).resolve().parents[2]


def configuration(hsm: SoftHsm, pkcs11: str, *, dpop: bool = True) -> str:
    dpop_line = 'dpop_key = { file = "dpop.jwk" }' if dpop else ""
    return f"""
[authority]
issuer = "https://helseid-sts.test.nhn.no"

[clients.supplier]
client_id = "8f1b2c3d"
tenancy = "multi"
signing_key = {{ pkcs11 = {{ {pkcs11} }} }}
{dpop_line}

[targets.sfm]
scopes = ["e-helse:sfm.api/sfm.api2"]
"""


def reference(hsm: SoftHsm, **members: str) -> str:
    values = {
        "module": f'"{hsm.module}"',
        "token": f'"{hsm.token}"',
        "key_label": '"ec-p256"',
        "pin": '{ env = "HSM_PIN" }',
    }
    values |= members
    return ", ".join(f"{name} = {value}" for name, value in values.items() if value)


def load(tmp_path: Path, hsm: SoftHsm, text: str, environ: dict[str, str] | None = None) -> object:
    (tmp_path / "dpop.jwk").write_text(json.dumps(keys.private_jwk(keys.generate_signing_key("ES256"))))
    path = tmp_path / "broker.toml"
    path.write_text(text)
    return load_config(path, {"HSM_PIN": hsm.pin} if environ is None else environ)


def test_the_assertion_key_in_the_hsm_and_the_dpop_key_in_memory(
    tmp_path: Path, softhsm: SoftHsm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = load(tmp_path, softhsm, configuration(softhsm, reference(softhsm)))
    client = config.clients["supplier"]  # type: ignore[attr-defined]
    assert client.signing_key.where == "pkcs11"
    assert client.signing_key.alg == "ES256"
    assert client.signing_key.kid == client.signing_key.thumbprint
    assert client.dpop_key.where == "memory"
    assert keys.public_jwk(client.signing_key)["kty"] == "EC"
    assert softhsm.pin not in caplog.text


def test_alg_kid_and_a_pin_file(tmp_path: Path, softhsm: SoftHsm) -> None:
    (tmp_path / "hsm.pin").write_text(softhsm.pin + "\n")  # as a mounted Secret often ends
    members = {"key_label": '"rsa-2048"', "alg": '"RS256"', "kid": '"supplier-hsm-1"'}
    text = configuration(softhsm, reference(softhsm, pin='{ file = "hsm.pin" }', **members), dpop=False)
    client = load(tmp_path, softhsm, text, environ={}).clients["supplier"]  # type: ignore[attr-defined]
    assert (client.signing_key.alg, client.signing_key.kid) == ("RS256", "supplier-hsm-1")
    # Without a dpop_key the client's own key signs the proofs too: allowed, and the README says the cost.
    assert client.dpop_key is client.signing_key


@pytest.mark.parametrize(
    ("members", "environ", "expected"),
    [
        ({"key_label": '"supplier"'}, None, f'{PREFIX}.key_label: no such key on token "broker"'),
        ({"token": '"nothere"'}, None, f'{PREFIX}.token: no token labelled "nothere"'),
        ({"module": '"/opt/hsm/libnothere.so"'}, None, f"{PREFIX}.module: no PKCS#11 module at /opt/hsm/"),
        ({"token": f'"{SPARE_TOKEN_LABEL}"'}, {"HSM_PIN": "123456"}, f"{PREFIX}.pin: wrong PIN for token"),
        ({}, {}, f"{PREFIX}.pin: environment variable 'HSM_PIN' is not set"),
        ({"alg": '"ES512"'}, None, f"{PREFIX}.alg: must be ES256 for a P-256 key"),
        ({"alg": '"HS256"'}, None, f"{PREFIX}.alg: must be "),
        ({"key_label": ""}, None, f"{PREFIX}.key_label: missing"),
        ({"slot": "0"}, None, f"{PREFIX}.slot: unknown field (allowed: alg, key_label, kid, module, pin, "),
        ({"pin": '"123456"'}, None, f'{PREFIX}.pin: must be a reference: {{ file = "path" }}'),
    ],
)
def test_each_mistake_is_one_line_naming_the_member(
    tmp_path: Path,
    softhsm: SoftHsm,
    members: dict[str, str],
    environ: dict[str, str] | None,
    expected: str,
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load(tmp_path, softhsm, configuration(softhsm, reference(softhsm, **members)), environ)
    message = str(raised.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert softhsm.pin not in message
    assert "123456" not in message


def test_a_reference_with_two_sources_is_refused(tmp_path: Path, softhsm: SoftHsm) -> None:
    text = configuration(softhsm, reference(softhsm)).replace(
        "signing_key = { pkcs11", 'signing_key = { file = "k.jwk", pkcs11'
    )
    with pytest.raises(ConfigurationError) as raised:
        load(tmp_path, softhsm, text)
    assert str(raised.value).startswith("clients.supplier.signing_key: must be a reference")
    assert "{ pkcs11 = { module, token, key_label, pin } }" in str(raised.value)


def test_the_readme_table_form_and_keys_show(tmp_path: Path, softhsm: SoftHsm) -> None:
    # [clients.supplier.signing_key.pkcs11] as a table, as the README writes it; `keys show` opens the token
    # as the broker does and prints the public JWK to register in Selvbetjening.
    text = configuration(softhsm, reference(softhsm), dpop=False).replace(
        f"signing_key = {{ pkcs11 = {{ {reference(softhsm)} }} }}\n", ""
    )
    text += "\n[clients.supplier.signing_key.pkcs11]\n" + reference(softhsm).replace(", ", "\n") + "\n"
    path = tmp_path / "broker.toml"
    path.write_text(text)
    expected = keys.public_jwk(load_config(path, {"HSM_PIN": softhsm.pin}).clients["supplier"].signing_key)
    environ = {**os.environ, "HSM_PIN": softhsm.pin, "PYTHONPATH": str(REPO_ROOT)}
    shown = subprocess.run(
        [sys.executable, "-m", "broker", "keys", "show", "--config", str(path), "--client", "supplier"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=True,
    )
    assert json.loads(shown.stdout) == expected
    assert set(expected) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert softhsm.pin not in shown.stdout + shown.stderr
