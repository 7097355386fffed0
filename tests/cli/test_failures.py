"""Every expected failure of the command line is one clear line on stderr and exit status 2, never a
traceback; and `keys show` prints the configured clients' public JWKs again, never a private member."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.fixtures.redis_server import free_port

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "broker", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def run_all(commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run, *args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def write_config(folder: Path, *, orgnr: str = "912345678") -> Path:
    """Two clients, their keys made by `keygen` into a keys/ folder beside the file."""
    publics = {}
    for name, alg in (("supplier", "ES256"), ("clinic", "PS256")):
        made = run("keygen", "--out", str(folder / "keys" / f"{name}.jwk"), "--alg", alg)
        assert made.returncode == 0, made.stderr
        publics[name] = json.loads(made.stdout)
    path = folder / "broker.toml"
    path.write_text(
        f"""
[authority]
issuer = "https://helseid-sts.test.nhn.no"
[clients.supplier]
client_id = "supplier-id"
tenancy = "multi"
signing_key = {{ file = "keys/supplier.jwk" }}
[clients.clinic]
client_id = "clinic-id"
tenancy = "single"
signing_key = {{ file = "keys/clinic.jwk" }}
[targets.sfm]
scopes = ["e-helse:sfm.api/sfm.api2"]
[tenants.oslo]
client = "supplier"
orgnr_parent = "{orgnr}"
targets = ["sfm"]
"""
    )
    (folder / "publics.json").write_text(json.dumps(publics))
    return path


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_keys_show_prints_the_public_jwks_again_and_no_private_member(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    publics = json.loads((tmp_path / "publics.json").read_text())
    results = run_all(
        {
            "all": ["keys", "show", "--config", str(config)],
            "one": ["keys", "show", "--config", str(config), "--client", "clinic"],
            "unknown": ["keys", "show", "--config", str(config), "--client", "pharmacy"],
        }
    )
    assert results["all"].returncode == 0, results["all"].stderr
    assert results["one"].returncode == 0, results["one"].stderr
    shown = json.loads(results["all"].stdout)
    print(f"keys show: {len(shown)} clients, members {sorted(shown['supplier']['jwk'])}")
    assert shown == {name: {"client_id": f"{name}-id", "jwk": jwk} for name, jwk in publics.items()}
    assert json.loads(results["one"].stdout) == publics["clinic"]
    for jwk in (*(entry["jwk"] for entry in shown.values()), json.loads(results["one"].stdout)):
        assert not PRIVATE_MEMBERS & set(jwk)
    private = json.loads((tmp_path / "keys" / "clinic.jwk").read_text())
    assert private["d"] not in results["all"].stdout + results["one"].stdout
    assert (
        one_line(results["unknown"])
        == "no client named 'pharmacy' in [clients] (configured: clinic, supplier)"
    )


def test_expected_failures_are_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad", orgnr="91234567")
    two_mistakes = bad.parent / "two.toml"
    two_mistakes.write_text(bad.read_text().replace('client = "supplier"', 'client = "nobody"'))
    missing = str(tmp_path / "nowhere.toml")
    oslo = ["--tenant", "oslo", "--target", "sfm"]
    results = run_all(
        {
            "bad config": ["check-config", str(bad)],
            "bad config, keys show": ["keys", "show", "--config", str(bad)],
            "two mistakes": ["check-config", str(two_mistakes)],
            "missing config": ["check-config", missing],
            "missing config, run": ["run", "--config", missing],
            "missing audit file": ["audit", "verify", missing],
            "unreachable broker": ["token", *oslo, "--address", f"127.0.0.1:{free_port()}"],
            "not a PEM": ["headers", *oslo, "--url", "https://x.test/", "--tls-ca", str(bad)],
            "keygen over a key": ["keygen", "--out", str(tmp_path / "bad" / "keys" / "supplier.jwk")],
            "keygen below a file": ["keygen", "--out", str(bad / "key.jwk")],
        }
    )  # fmt: skip
    lines = {name: one_line(result) for name, result in results.items()}
    print(f"expected failures: {len(lines)} commands, each exit 2 with one line on stderr")
    for name, line in lines.items():
        print(f"  {name}: {line}")
    assert "tenants.oslo.orgnr_parent" in lines["bad config"]
    assert "tenants.oslo.orgnr_parent" in lines["bad config, keys show"]
    assert "tenants.oslo.orgnr_parent" in lines["two mistakes"]
    assert "tenants.oslo.client" in lines["two mistakes"]
    assert lines["missing config"].startswith("configuration error: ")
    assert lines["missing config, run"] == lines["missing config"]
    assert lines["unreachable broker"].startswith("UNAVAILABLE: ")
    assert lines["not a PEM"].endswith("is not a PEM file")
    assert "refusing to overwrite" in lines["keygen over a key"]
    assert lines["keygen below a file"].startswith("cannot write ")


def test_a_port_in_use_stops_the_start_with_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    workers = tmp_path / "workers.toml"
    workers.write_text(config.read_text() + "[server]\nworkers = 2\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        results = run_all(
            {
                "one process": ["run", "--config", str(config), "--listen", listen],
                "two workers": ["run", "--config", str(workers), "--listen", listen],
            }
        )
    for name, result in results.items():
        last = result.stderr.splitlines()[-1]
        print(f"port in use, {name}: exit {result.returncode}, last line: {last}")
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert last == f"cannot listen on {listen}: the address is in use or not available here"
