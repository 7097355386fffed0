"""The configuration the chart renders is one the broker accepts: `check-config` on the ConfigMap's
broker.toml with the tenants ConfigMap's files as its tenants directory, and the Secrets' files and
variables, laid out as the pod sees them (test keys made here)."""

from __future__ import annotations

import base64
import datetime
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.deploy.chart import PRODUCTION_VALUES, Manifest, config_map, one, render, tenants_config_map

# What the Secret of redis.urlSecret holds: a whole URL, password included.
REDIS_URL = "rediss://:a-redis-password@redis-master.helseid-redis.svc.cluster.local:6380/0"


def _keygen(out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "broker", "keygen", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def _self_signed(folder: Path, name: str) -> None:
    """A throwaway P-256 certificate and key, for the TLS files the chart mounts."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "helseid-broker.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _mount(config_map: Manifest, folder: Path) -> None:
    """A ConfigMap as the kubelet mounts it as a volume: the files in a timestamped folder, `..data` a
    symlink to it, and one symlink per key through `..data` (what the broker's directory reader skips and
    follows)."""
    folder.mkdir(parents=True)
    stamped = folder / "..2026_01_01_00_00_00.000000001"
    stamped.mkdir()
    for key, text in (config_map.get("data") or {}).items():
        (stamped / key).write_text(text)
        (folder / key).symlink_to(Path("..data") / key)
    (folder / "..data").symlink_to(stamped.name)


@pytest.mark.parametrize("values", ["default", "production"])
def test_rendered_configuration_passes_check_config(values: str, tmp_path: Path) -> None:
    objects = render(PRODUCTION_VALUES) if values == "production" else render()
    # The pod's layout: /etc/helseid-broker/{config,tenants,keys,tls}; the file refers to ../tenants (its
    # tenants_directory), ../keys and ../tls.
    _mount(config_map(objects), tmp_path / "config")
    config = tmp_path / "config" / "broker.toml"
    tenants = tenants_config_map(objects)["data"]
    _mount(tenants_config_map(objects), tmp_path / "tenants")
    assert "[tenants." not in config.read_text(), "the chart's tenants are in their own ConfigMap"
    _keygen(tmp_path / "keys" / "supplier.jwk")
    if values == "production":
        _keygen(tmp_path / "keys" / "supplier-dpop.jwk")
        _self_signed(tmp_path / "tls", "tls")
        (tmp_path / "tls" / "ca.crt").write_bytes((tmp_path / "tls" / "tls.crt").read_bytes())
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    # Each variable gets base64 of 32 random bytes: a valid store key, hash key and caller credential.
    names = [env["name"] for env in container["env"]]
    environment = {name: base64.b64encode(secrets.token_bytes(32)).decode() for name in names}
    if "BROKER_REDIS_URL" in environment:  # redis.urlSecret: the Secret holds the whole URL
        environment["BROKER_REDIS_URL"] = REDIS_URL
    result = subprocess.run(
        [sys.executable, "-m", "broker", "check-config", str(config)],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    verdict = result.stdout.strip().rsplit(": ", 1)[-1]
    print(
        f"{values} values: {len(environment)} variables from Secrets, {len(tenants)} tenant files, "
        f"check-config {verdict}"
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(tenants)} tenants" in result.stdout, "every tenant file counted, no other tenant"
