"""The command line as a user runs it: separate processes, exit codes, what is printed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.redis_server import free_port

BROKER = [sys.executable, "-m", "broker"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BROKER, *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_keygen_writes_a_private_key_file_and_prints_only_the_public_key(tmp_path: Path) -> None:
    out = tmp_path / "client.jwk"
    result = run("keygen", "--out", str(out), "--alg", "ES256", "--kid", "k1")
    assert result.returncode == 0, result.stderr
    public = json.loads(result.stdout)
    private = json.loads(out.read_text())
    assert public["kid"] == private["kid"] == "k1"
    assert "d" not in public
    assert "d" in private
    assert private["d"] not in result.stdout + result.stderr
    assert out.stat().st_mode & 0o777 == 0o600


def test_keygen_refuses_to_overwrite_when_the_file_exists(tmp_path: Path) -> None:
    out = tmp_path / "client.jwk"
    out.write_text("precious")
    result = run("keygen", "--out", str(out))
    assert result.returncode == 2
    assert out.read_text() == "precious"
    assert result.stderr == f"{out} exists; refusing to overwrite a key (choose another --out)\n"
    assert result.stdout == ""


def test_keygen_creates_the_folders_it_writes_into(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "2026" / "supplier.jwk"
    result = run("keygen", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(out.read_text())["kid"] == json.loads(result.stdout)["kid"]
    modes = {path.name: path.stat().st_mode & 0o777 for path in (out, out.parent)}
    print(f"keygen into a new folder: modes {', '.join(f'{name} {mode:o}' for name, mode in modes.items())}")
    assert modes == {"supplier.jwk": 0o600, "2026": 0o700}


def config_text(tmp_path: Path, orgnr: str) -> Path:
    key = tmp_path / "client.jwk"
    if not key.exists():
        assert run("keygen", "--out", str(key)).returncode == 0
    path = tmp_path / "broker.toml"
    path.write_text(
        f"""
[authority]
issuer = "https://helseid-sts.test.nhn.no"
[clients.c]
client_id = "c"
tenancy = "multi"
signing_key = {{ file = "client.jwk" }}
[targets.sfm]
scopes = ["e-helse:sfm.api/sfm.api2"]
[tenants.t]
client = "c"
orgnr_parent = "{orgnr}"
targets = ["sfm"]
"""
    )
    return path


def test_check_config_accepts_a_valid_file(tmp_path: Path) -> None:
    result = run("check-config", str(config_text(tmp_path, "912345678")))
    assert result.returncode == 0, result.stderr
    assert "1 clients, 1 targets, 1 tenants" in result.stdout


def test_invalid_configuration_stops_the_start_with_the_field_named(tmp_path: Path) -> None:
    path = config_text(tmp_path, "91234567")
    for args in (("check-config", str(path)), ("run", "--config", str(path), "--listen", "127.0.0.1:0")):
        result = run(*args, timeout=30)
        assert result.returncode == 2
        assert "tenants.t.orgnr_parent" in result.stderr
        assert "listening" not in result.stderr


def test_broker_on_embedded_defaults_serves_the_printed_token_command(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [*BROKER, "run", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert server.stderr is not None
        command = None
        deadline = time.monotonic() + 30
        while command is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            match = re.search(r"get a token:\s+(python -m broker token .*)$", line)
            command = match.group(1) if match else None
        assert command is not None, "the broker did not print how to get a token"
        args = command.split()[3:]  # after "python -m broker"
        result = run(*args, timeout=30)
        assert result.returncode == 0, result.stderr
        token = json.loads(result.stdout)["accessToken"]
        assert token["tokenType"] == "TOKEN_TYPE_DPOP"
        assert token["token"].count(".") == 2
        unknown = run("token", "--address", f"127.0.0.1:{port}", "--tenant", "nobody", "--target", "demo-api")
        assert unknown.returncode == 2
        assert unknown.stderr.startswith("NOT_FOUND [TENANT_NOT_FOUND]")
        assert unknown.stderr.count("\n") == 1
    finally:
        server.terminate()
        _, rest = server.communicate(timeout=15)
    # Nothing the broker or its embedded dev authority logged may contain the token or a signature of it.
    assert token["token"] not in rest
    assert token["token"].split(".")[2] not in rest
