"""The generated Go and TypeScript clients work against a real broker.

The fixture starts `python -m broker run` with no config file, so the broker serves its embedded defaults
(in-memory store, embedded dev authority, tenant `demo`, DPoP target `demo-api`), waits for the standard
gRPC health check to answer SERVING, and hands its address to `go test` in clients/go and to `npm test` in
clients/typescript as BROKER_ADDR. Go and Node must be installed: a missing toolchain fails, never skips.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
# The first run on a fresh machine downloads and compiles grpc-go; later runs take seconds.
CLIENT_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _is_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _wait_until_serving(address: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the broker exited with {process.returncode}:\n{log.read_text()}", pytrace=False)
        if _is_serving(address):
            return
        time.sleep(0.2)
    pytest.fail(f"the broker was not SERVING within {STARTUP_TIMEOUT_S} s:\n{log.read_text()}", pytrace=False)


@pytest.fixture(scope="module")
def broker_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    address = f"127.0.0.1:{_free_port()}"
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "broker", "run", "--listen", address],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(address, process, log)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run(args: list[str], *, cwd: Path, broker_address: str | None = None) -> None:
    """Runs a command with this interpreter first on PATH and fails with its output unless it succeeds."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if shutil.which(str(args[0]), path=path) is None:
        pytest.fail(f"{args[0]} is not installed (or not executable)", pytrace=False)
    env = {**os.environ, "PATH": path}
    if broker_address is not None:
        env["BROKER_ADDR"] = broker_address
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        output = f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{output}", pytrace=False)


@pytest.fixture(scope="module")
def typescript_client() -> Path:
    """clients/typescript with its pinned packages installed (npm ci, skipped while current)."""
    _run([str(ROOT / "scripts" / "generate-clients.sh"), "--install-tools"], cwd=ROOT)
    return ROOT / "clients" / "typescript"


# The compile checks need no broker, so they still tell whether the clients build when it cannot start.
def test_go_client_compiles() -> None:
    _run(["go", "vet", "./..."], cwd=ROOT / "clients" / "go")


def test_typescript_client_compiles(typescript_client: Path) -> None:
    _run(["npm", "run", "--silent", "typecheck"], cwd=typescript_client)


def test_go_client_passes_against_broker(broker_address: str) -> None:
    _run(["go", "test", "-count=1", "./..."], cwd=ROOT / "clients" / "go", broker_address=broker_address)


def test_typescript_client_passes_against_broker(typescript_client: Path, broker_address: str) -> None:
    _run(["npm", "test"], cwd=typescript_client, broker_address=broker_address)
