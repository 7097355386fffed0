"""`admin` against a broker as deployed: its own process with a configuration file, an admin caller and one
without the grant, the dev authority as its STS. Every command runs as a user runs it, in a separate process,
with the credential in HELSEID_BROKER_CREDENTIAL."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.protocol import keys
from tests.cli.test_remote import cli, one_line_failure
from tests.fixtures.broker_server import sfm_clients
from tests.fixtures.redis_server import free_port
from tests.fixtures.sts import TestClient, running_sts
from tests.observability.broker_process import (
    BrokerProcess,
    broker_process,
    has_started,
    wait_until,
    write_config,
)


@dataclass(frozen=True)
class Deployment:
    broker: BrokerProcess
    admin: str  # the credential of a caller granted admin = true
    service: str  # the credential of a caller without it
    multi: TestClient  # the client `multi` of the configuration
    workdir: Path


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("admin-cli")
    clients = sfm_clients()
    # Fresh secrets per run: the test can then search every output for them.
    admin, service = ("admin-" + os.urandom(24).hex(), "service-" + os.urandom(24).hex())
    with running_sts("devauthority", workdir / "sts", clients) as sts:
        config = write_config(workdir, sts.issuer, clients, "")
        (workdir / "admin.secret").write_text(admin)
        (workdir / "service.secret").write_text(service)
        with config.open("a") as toml:
            toml.write(CALLERS)
        with broker_process(config, free_port()) as broker:
            wait_until(broker, lambda: has_started(broker), "the broker's start")
            yield Deployment(broker, admin, service, clients[0], workdir)


CALLERS = """
[callers.ops]
credential = { file = "admin.secret" }
tenants = ["*"]
targets = ["*"]
admin = true

[callers.service]
credential = { file = "service.secret" }
tenants = ["*"]
targets = ["*"]
"""


def admin(
    deployment: Deployment, *args: str, credential: str | None = None
) -> subprocess.CompletedProcess[str]:
    secret = deployment.admin if credential is None else credential
    result = cli(
        "admin", *args, "--address", deployment.broker.address, env={"HELSEID_BROKER_CREDENTIAL": secret}
    )
    assert "Traceback" not in result.stderr
    assert deployment.admin not in result.stdout + result.stderr
    return result


def succeeded(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_tenant_put_by_flags_is_read_listed_and_deleted(deployment: Deployment) -> None:
    flags = ["--client", "multi", "--targets", "sfm", "--warm", "sfm", "--orgnr-parent", "934567890"]
    put = succeeded(admin(deployment, "put", "molde", *flags))
    molde = {
        "name": "molde",
        "source": "store",
        "client": "multi",
        "targets": ["sfm"],
        "warm": ["sfm"],
        "orgnr_parent": "934567890",
    }
    assert put == {"tenant": molde, "created": True}
    assert succeeded(admin(deployment, "get", "molde")) == molde
    again = succeeded(admin(deployment, "put", "molde", *flags))
    assert again == {"tenant": molde, "created": False}

    # A page of one tenant at a time: the command follows next_page_token to the end.
    listed = succeeded(admin(deployment, "list", "--page-size", "1"))
    assert isinstance(listed, list)
    assert [tenant["name"] for tenant in listed] == ["bergen", "molde", "oslo"]
    assert listed[1] == molde
    assert listed[2]["source"] == "files"
    assert "warm" not in listed[0]  # empty fields are left out

    assert succeeded(admin(deployment, "delete", "molde")) == {"deleted": "molde"}
    gone = one_line_failure(admin(deployment, "get", "molde"))
    assert gone.startswith("NOT_FOUND [TENANT_NOT_FOUND]")


def test_a_tenant_put_from_a_tenant_file(deployment: Deployment) -> None:
    tenant_file = deployment.workdir / "tromso.toml"
    tenant_file.write_text('client = "single"\ntargets = ["sfm"]\norgnr_child = "444555666"\n')
    put = succeeded(admin(deployment, "put", "tromso", "--file", str(tenant_file)))
    assert put == {
        "tenant": {
            "name": "tromso",
            "source": "store",
            "client": "single",
            "targets": ["sfm"],
            "orgnr_child": "444555666",
        },
        "created": True,
    }
    succeeded(admin(deployment, "delete", "tromso"))

    # The file's shape is checked before any call: an unknown key or a wrong type, named.
    unknown = deployment.workdir / "unknown.toml"
    unknown.write_text('client = "single"\ntargets = ["sfm"]\norgnr = "444555666"\n')
    assert "unknown key 'orgnr'" in one_line_failure(admin(deployment, "put", "x", "--file", str(unknown)))
    wrong = deployment.workdir / "wrong.toml"
    wrong.write_text('client = "single"\ntargets = ["sfm"]\norgnr_parent = 912345678\n')
    assert "orgnr_parent must be a string" in one_line_failure(
        admin(deployment, "put", "x", "--file", str(wrong))
    )


def test_bad_fields_are_each_named_on_a_line_of_their_own(deployment: Deployment) -> None:
    result = admin(
        deployment, "put", "narvik", "--client", "multi", "--targets", "sfm", "--orgnr-parent", "12"
    )
    assert result.returncode == 2
    assert result.stdout == ""
    headline, *mistakes = result.stderr.splitlines()
    assert headline.startswith("INVALID_ARGUMENT [INVALID_ARGUMENT]"), result.stderr
    assert any(line.strip().startswith("settings.orgnr_parent:") for line in mistakes), result.stderr
    print(f"admin put with a bad field:\n{result.stderr}")


def test_jwks_prints_the_public_keys_only(deployment: Deployment) -> None:
    expected = keys.public_jwk(deployment.multi.signing_key)
    every = succeeded(admin(deployment, "jwks"))
    assert isinstance(every, dict)
    assert sorted(every) == ["multi", "single"]
    assert every["multi"] == {
        "client_id": deployment.multi.client_id,
        "kid": expected["kid"],
        "alg": expected["alg"],
        "jwk": expected,
    }
    alone = succeeded(admin(deployment, "jwks", "--client", "multi"))
    assert alone == expected
    assert all("d" not in entry["jwk"] for entry in every.values())
    assert "d" not in alone
    assert "no client 'nobody'" in one_line_failure(admin(deployment, "jwks", "--client", "nobody"))


def test_a_caller_without_the_admin_grant_is_refused_in_one_line(deployment: Deployment) -> None:
    line = one_line_failure(admin(deployment, "list", credential=deployment.service))
    assert "CALLER_NOT_ALLOWED" in line
    assert deployment.service not in line


def test_reload_prints_what_it_changed(deployment: Deployment) -> None:
    answer = succeeded(admin(deployment, "reload"))
    assert isinstance(answer, dict)
    assert answer["tenants"] >= 2  # oslo and bergen, from the file
    assert answer["added_tenants"] == []
    assert answer["removed_tenants"] == []


def test_a_refused_reload_names_every_mistake_and_the_running_configuration_stays(
    deployment: Deployment,
) -> None:
    config = deployment.workdir / "broker.toml"
    good = config.read_text()
    config.write_text(good + BROKEN)
    try:
        result = admin(deployment, "reload")
    finally:
        config.write_text(good)
    assert result.returncode == 2
    assert result.stdout == ""
    headline, *mistakes = result.stderr.splitlines()
    print(f"admin reload of a broken file:\n{result.stderr}")
    assert headline.startswith("FAILED_PRECONDITION [INVALID_CONFIGURATION]"), result.stderr
    assert any("tenants.tromso" in line for line in mistakes), result.stderr
    assert any("tenants.narvik" in line for line in mistakes), result.stderr
    assert succeeded(admin(deployment, "get", "oslo"))  # still served


# Two tenants, each with its own mistake: the answer names both.
BROKEN = """
[tenants.tromso]
client = "nobody"
targets = ["sfm"]

[tenants.narvik]
client = "multi"
targets = ["nowhere"]
"""
