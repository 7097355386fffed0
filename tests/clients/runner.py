"""What every client's pytest wrapper shares: a broker with its embedded defaults and the demo API, and a
way to run a language's own tools against it.

`python -m broker run --demo-token-lifetime 20` serves the embedded defaults (in-memory store, embedded dev
authority, tenant `demo`, targets `demo-api` (DPoP) and `demo-bearer` (bearer)); the dev authority also
serves the demo API, whose URLs the broker prints at start. Tokens live 20 s, so renewals show quickly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fixtures.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
TOKEN_LIFETIME_S = 20
_AUTHORITY = re.compile(r"dev authority at (http://[0-9.:]+)")


@dataclass(frozen=True)
class DemoBroker:
    address: str  # host:port of the broker's gRPC port (plaintext, loopback: no caller credential)
    authority: str  # the dev authority's base URL; the demo API is under it

    @property
    def env(self) -> dict[str, str]:
        """What a client's tests read, to merge into a subprocess's environment."""
        return {
            "HELSEID_BROKER_ADDR": self.address,
            "DEMO_API_URL": f"{self.authority}/demo-api/",
            "DEMO_BEARER_URL": f"{self.authority}/demo-bearer/",
            "DEMO_STATS_URL": f"{self.authority}/dev/stats",
            "DEMO_ROTATE_URL": f"{self.authority}/dev/demo-api/rotate-nonce",
            "DEMO_TENANT": "demo",
            "DEMO_TARGET": "demo-api",
            "DEMO_BEARER_TARGET": "demo-bearer",
        }


def _is_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@contextmanager
def demo_broker_process(workdir: Path) -> Iterator[DemoBroker]:
    """A broker process with the embedded defaults, until the block ends."""
    address = f"127.0.0.1:{free_port()}"
    log = workdir / "broker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broker",
                "run",
                "--listen",
                address,
                "--demo-token-lifetime",
                str(TOKEN_LIFETIME_S),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        authority = None
        while authority is None or not _is_serving(address):
            if process.poll() is not None:
                pytest.fail(f"the broker exited with {process.returncode}:\n{log.read_text()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"the broker was not SERVING within {STARTUP_TIMEOUT_S} s", pytrace=False)
            found = _AUTHORITY.search(log.read_text(errors="replace"))
            authority = found.group(1) if found else None
            time.sleep(0.2)
        yield DemoBroker(address, authority)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_checked(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None, timeout_s: float = 900
) -> subprocess.CompletedProcess[str]:
    """Runs a tool (this interpreter's folder first on PATH) and fails the test with its output unless it
    exits 0; a missing tool fails, never skips."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if shutil.which(str(args[0]), path=path) is None:
        pytest.fail(f"{args[0]} is not installed (or not executable)", pytrace=False)
    merged = {**os.environ, **(env or {}), "PATH": path}
    result = subprocess.run(
        list(args), cwd=cwd, env=merged, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if result.returncode != 0:
        output = f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{output}", pytrace=False)
    return result
