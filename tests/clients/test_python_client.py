"""The Python client (clients/python, distribution helseid-broker-client) against a running broker.

A virtual environment in a temporary folder (made once for this module) gets the client installed from
its path with both extras, as a consumer would (`pip install <repo>/clients/python[httpx,requests]`), plus
pytest. Its own tests then run there, against the demo broker's environment variables; a consumer script
in a fresh folder calls the demo API; and one process imports the broker's and the client's generated code
together (the same .proto files registered twice, with identical content).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.clients.runner import ROOT, DemoBroker, run_checked

CLIENT = ROOT / "clients" / "python"
# The first run on a fresh machine downloads grpcio, protobuf, httpx, requests and pytest.
INSTALL_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh virtual environment with the client installed from its path."""
    venv = tmp_path_factory.mktemp("python-client") / "venv"
    run_checked([sys.executable, "-m", "venv", str(venv)], cwd=ROOT)
    python = venv / "bin" / "python"
    run_checked(
        [
            str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            f"{CLIENT}[httpx,requests]", "pytest", "pytest-asyncio",
        ],
        cwd=ROOT,
        timeout_s=INSTALL_TIMEOUT_S,
    )  # fmt: skip
    return python


def test_python_client_passes_against_broker(client_python: Path, demo_broker: DemoBroker) -> None:
    result = run_checked(
        [str(client_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=CLIENT,
        env=demo_broker.env,
    )
    print(result.stdout.strip().splitlines()[-1])


CONSUMER = """
import asyncio, os
import httpx
from helseid_broker_client import BrokerAuth, TokenSource

async def main():
    auth = BrokerAuth("demo", "demo-api")  # the broker from HELSEID_BROKER_ADDR
    async with httpx.AsyncClient(auth=auth) as client:
        answer = await client.get(os.environ["DEMO_API_URL"] + "patients/1")
        print(answer.status_code, answer.json()["token_type"], len(answer.history))
    async with TokenSource("demo", "demo-bearer") as source:
        print((await source.token()).token_type)

asyncio.run(main())
"""


def test_consumer_installed_from_the_path_calls_the_demo_api(
    client_python: Path, demo_broker: DemoBroker, tmp_path: Path
) -> None:
    (tmp_path / "consumer.py").write_text(textwrap.dedent(CONSUMER))
    result = run_checked([str(client_python), "consumer.py"], cwd=tmp_path, env=demo_broker.env)
    assert result.stdout.split() == ["200", "DPoP", "1", "Bearer"]


def test_broker_and_client_stubs_in_one_process() -> None:
    script = textwrap.dedent("""
        from broker.v1 import token_broker_service_pb2 as broker_pb
        from helseid_broker_client import v1
        from helseid_broker_client._gen.broker.v1 import admin_service_pb2, token_broker_service_pb2_grpc
        from broker.v1 import admin_service_pb2 as broker_admin_pb
        request = v1.GetTokenRequest(tenant="demo", target="demo-api")
        assert broker_pb.GetTokenRequest.FromString(request.SerializeToString()) == request
        assert broker_pb.DESCRIPTOR.serialized_pb == v1.DESCRIPTOR.serialized_pb
        assert broker_admin_pb.DESCRIPTOR.serialized_pb == admin_service_pb2.DESCRIPTOR.serialized_pb
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(CLIENT / "src")])}
    for implementation in ("upb", "python"):
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = implementation
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr
