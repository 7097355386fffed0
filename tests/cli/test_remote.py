"""`token` and `headers` against a broker as deployed: its own process, callers, TLS with client certificates
(mTLS), the dev authority as its STS. Every command runs as a user runs it, in a separate process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.broker_server import SFM, sfm_clients
from tests.fixtures.redis_server import free_port
from tests.fixtures.sts import running_sts
from tests.fixtures.workload_identity import TestCa
from tests.observability.broker_process import (
    BrokerProcess,
    broker_process,
    has_started,
    wait_until,
    write_config,
)

SPIFFE_ID = "spiffe://cluster.test/ns/epj/sa/referrals"
URL = SFM.allowed_urls[0] + "patients/1"


@dataclass(frozen=True)
class Deployment:
    broker: BrokerProcess
    credential: str
    files: dict[str, Path]  # ca, cert + key of a plain client certificate, cert + key of the SPIFFE caller


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("deployment")
    clients = sfm_clients()
    ca = TestCa()
    server, plain, spiffe = ca.server(), ca.client(), ca.client(uris=(SPIFFE_ID,))
    files = {
        "ca": ca.pem,
        "server.crt": server.certificate,
        "server.key": server.key,
        "client.crt": plain.certificate,
        "client.key": plain.key,
        "spiffe.crt": spiffe.certificate,
        "spiffe.key": spiffe.key,
    }
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    # A fresh secret per run: the test can then search every output for it.
    credential = "cli-caller-" + os.urandom(24).hex()
    with running_sts("devauthority", workdir / "sts", clients) as sts:
        config = write_config(workdir, sts.issuer, clients, "")
        (workdir / "caller.secret").write_text(credential)
        with config.open("a") as toml:
            toml.write(SECURED)
        with broker_process(config, free_port()) as broker:
            wait_until(broker, lambda: has_started(broker), "the broker's start")
            yield Deployment(broker, credential, {name: workdir / name for name in files})


# mTLS; a caller known by its credential (it shows any certificate of the CA), one by its SPIFFE ID.
SECURED = f"""
[server.tls]
certificate = {{ file = "server.crt" }}
private_key = {{ file = "server.key" }}
client_ca = {{ file = "ca" }}

[callers.oslo-app]
credential = {{ file = "caller.secret" }}
tenants = ["oslo"]
targets = ["sfm"]

[callers.referrals]
spiffe_id = "{SPIFFE_ID}"
tenants = ["oslo"]
targets = ["sfm"]
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "HELSEID_BROKER_CREDENTIAL"}
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**environment, **(env or {})},
    )


def cli_all(
    commands: dict[str, tuple[list[str], dict[str, str] | None]],
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Runs the commands side by side, each a process of its own as a user's would be."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(cli, *args, env=env) for name, (args, env) in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def tls(deployment: Deployment, identity: str | None = "client") -> list[str]:
    flags = ["--address", deployment.broker.address, "--tls-ca", str(deployment.files["ca"])]
    if identity is not None:
        flags += ["--tls-cert", str(deployment.files[f"{identity}.crt"])]
        flags += ["--tls-key", str(deployment.files[f"{identity}.key"])]
    return flags


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed as an expected failure does: exit 2, one line on stderr, nothing on stdout."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_token_and_headers_reach_a_broker_with_callers_over_mtls(deployment: Deployment) -> None:
    oslo = ["--tenant", "oslo", "--target", "sfm"]
    secret = ["--credential", deployment.credential]
    by_env = {"HELSEID_BROKER_CREDENTIAL": deployment.credential}
    results = cli_all(
        {
            "by flag": (["token", *oslo, *tls(deployment), *secret], None),
            "by environment": (
                ["headers", *oslo, "--url", URL, "--method", "POST", "--format", "http", *tls(deployment)],
                by_env,
            ),
            "token --url": (["token", *oslo, "--url", URL, *tls(deployment), *secret], None),
            "by certificate": (["token", *oslo, *tls(deployment, "spiffe")], None),
        }
    )
    for name, result in results.items():
        assert result.returncode == 0, f"{name}: {result.stderr}"
    token = json.loads(results["by flag"].stdout)["accessToken"]
    assert token["tokenType"] == "TOKEN_TYPE_DPOP"
    assert json.loads(results["by certificate"].stdout)["accessToken"]["token"].count(".") == 2
    authorization, dpop = results["by environment"].stdout.splitlines()
    assert authorization.startswith("Authorization: DPoP ey")
    assert dpop.startswith("DPoP: ey")
    assert json.loads(results["token --url"].stdout)["authorization"].startswith("DPoP ey")
    print(
        f"cli over mTLS: {len(results)} commands ok ({', '.join(results)}); "
        f"token of {len(token['token'])} characters"
    )
    # The credential travels as metadata only: no command prints it, and the broker does not log it.
    outputs = [part for result in results.values() for part in (result.stdout, result.stderr)]
    assert all(deployment.credential not in output for output in outputs)
    assert deployment.credential not in deployment.broker.output()


def test_refusals_are_one_line_and_exit_2(deployment: Deployment) -> None:
    oslo = ["--tenant", "oslo", "--target", "sfm"]
    secret = ["--credential", deployment.credential]
    client_cert = ["--tls-cert", str(deployment.files["client.crt"])]
    missing_ca = ["--tls-ca", str(deployment.files["ca"]) + ".missing"]
    answers = cli_all(
        {
            "no credential": (["token", *oslo, *tls(deployment)], None),
            "wrong credential": (
                ["token", *oslo, *tls(deployment), "--credential", "guess-" + "g" * 40],
                None,
            ),
            "other tenant": (
                ["token", "--tenant", "bergen", "--target", "sfm", *tls(deployment), *secret],
                None,
            ),
            "url not allowed": (
                ["headers", *oslo, "--url", "https://evil.test/", *tls(deployment), *secret],
                None,
            ),
            "no client certificate": (["token", *oslo, *tls(deployment, None), *secret], None),
            "no TLS": (["token", *oslo, "--address", deployment.broker.address, *secret], None),
            "certificate without key": (["token", *oslo, *tls(deployment, None), *client_cert], None),
            "missing CA file": (["token", *oslo, *missing_ca], None),
            # The broker's certificate names 127.0.0.1: another expected name, or the system's roots, fail.
            "other server name": (
                ["token", *oslo, *tls(deployment), "--tls-server-name", "other.test"],
                None,
            ),
            "system roots": (
                ["token", *oslo, "--address", deployment.broker.address, "--tls", *secret],
                None,
            ),
        }
    )
    lines = {name: one_line_failure(result) for name, result in answers.items()}
    print(f"cli refusals: {len(lines)} commands, each exit 2 with one line on stderr")
    for name, line in lines.items():
        print(f"  {name}: {line}")
    assert lines["no credential"].startswith("UNAUTHENTICATED [CALLER_UNAUTHENTICATED]")
    assert lines["wrong credential"].startswith("UNAUTHENTICATED [CALLER_UNAUTHENTICATED]")
    assert lines["other tenant"].startswith("PERMISSION_DENIED [CALLER_NOT_ALLOWED]")
    assert lines["url not allowed"].startswith("PERMISSION_DENIED [URL_NOT_ALLOWED]")
    assert lines["no client certificate"].startswith("UNAVAILABLE")
    assert lines["no TLS"].startswith("UNAVAILABLE")
    assert "--tls-key" in lines["certificate without key"]
    assert "cannot read" in lines["missing CA file"]
    assert lines["other server name"].startswith("UNAVAILABLE")
    assert lines["system roots"].startswith("UNAVAILABLE")
    assert all(deployment.credential not in line for line in lines.values())
