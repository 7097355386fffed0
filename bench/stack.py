"""The system under test, set up in a temporary directory and torn down afterwards.

A fresh ES256 client key (written 0600 into the temporary directory only), the dev authority with that client
registered, a Redis server, and the broker (`python -m broker run --config FILE`) with `workers` processes
sharing one port (SO_REUSEPORT), waited for until gRPC health says SERVING on every worker.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import cpu
from bench.procs import (
    DevAuthority,
    Redis,
    SetupError,
    free_port,
    log_tail,
    spawn,
    start_dev_authority,
    start_redis,
    stop_process,
)
from broker.protocol import keys

TENANT = "t"
TARGET = "sfm"
SFM_RESOURCE = "e-helse:sfm.api"
SFM_SCOPES = ("e-helse:sfm.api/sfm.api2",)
SFM_ALLOWED_URL = "https://sfm.example.test/api/"
SFM_REQUEST_URL = "https://sfm.example.test/api/x"
ORGNR_PARENT = "999888777"
CLIENT_ID = "bench-client"
SERVICE = "broker.v1.TokenBrokerService"
STORE_KEY_ENV = "BENCH_BROKER_STORE_KEY"  # the variable the config names; set only in the broker's env
TOKEN_LIFETIME_S = 3600
_SETTLE_S = 1.0


@dataclass
class Stack:
    workdir: Path
    address: str
    workers: int
    config_path: Path
    environ: dict[str, str]
    authority: DevAuthority
    redis: Redis
    broker: subprocess.Popen[bytes]

    @property
    def issuer(self) -> str:
        return self.authority.issuer

    def server_pids(self) -> list[int]:
        return cpu.descendants(self.broker.pid)

    def sts_token_requests(self) -> int | None:
        """How many token requests the dev authority has seen (its dev-only /dev/stats counter)."""
        try:
            response = httpx.get(f"{self.issuer}/dev/stats", timeout=5)
            response.raise_for_status()
            return int(response.json()["token_requests"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def broker_log_tail(self) -> str:
        return log_tail(self.workdir / "broker.log")


@contextlib.contextmanager
def running_stack(workers: int, *, start_timeout: float = 60.0) -> Iterator[Stack]:
    with contextlib.ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="broker-bench-")))
        key = keys.generate_signing_key("ES256")
        key_file = workdir / "client-key.json"
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(keys.private_jwk(key), handle)
        registry = workdir / "devauthority-clients.json"
        registry.write_text(json.dumps([_registration(keys.public_jwk(key))]), encoding="utf-8")

        authority = start_dev_authority(workdir, registry, token_lifetime=TOKEN_LIFETIME_S)
        cleanup.callback(stop_process, authority.process)
        redis = start_redis(workdir)
        cleanup.callback(stop_process, redis.process)

        port = free_port()
        address = f"127.0.0.1:{port}"
        config_path = workdir / "broker.toml"
        config_path.write_text(_config_toml(address, workers, redis.url, authority.issuer, key_file.name))
        environ = dict(os.environ)
        environ[STORE_KEY_ENV] = base64.b64encode(secrets.token_bytes(32)).decode()
        args = [sys.executable, "-m", "broker", "run", "--config", str(config_path)]
        broker = spawn(args, workdir / "broker.log", env=environ)
        # SIGINT: the multi-worker parent turns it into KeyboardInterrupt and terminates its workers.
        cleanup.callback(stop_process, broker, first=signal.SIGINT, grace=15.0)
        stack = Stack(workdir, address, workers, config_path, environ, authority, redis, broker)
        _wait_serving(stack, port, start_timeout)
        yield stack


def _registration(public_jwk: dict[str, Any]) -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "jwks": {"keys": [public_jwk]},
        "tenancy": "multi",
        "organization_number": ORGNR_PARENT,
        "allowed_scopes": list(SFM_SCOPES),
        "allowed_resources": [SFM_RESOURCE],
    }


def _config_toml(listen: str, workers: int, redis_url: str, issuer: str, key_file: str) -> str:
    def q(value: str) -> str:
        return json.dumps(value)  # a JSON string of these ASCII values is a TOML basic string

    scopes = ", ".join(q(scope) for scope in SFM_SCOPES)
    return f"""\
[server]
listen = {q(listen)}
workers = {workers}

[store]
kind = "redis"
url = {q(redis_url)}
encryption_key = {{ env = {q(STORE_KEY_ENV)} }}

[clients.bench]
client_id = {q(CLIENT_ID)}
issuer = {q(issuer)}
tenancy = "multi"
signing_key = {{ file = {q(key_file)} }}

[targets.{TARGET}]
resource = {q(SFM_RESOURCE)}
scopes = [{scopes}]
token_type = "dpop"
allowed_urls = [{q(SFM_ALLOWED_URL)}]

[tenants.{TENANT}]
client = "bench"
orgnr_parent = {q(ORGNR_PARENT)}
targets = [{q(TARGET)}]
"""


def _listening_sockets(port: int) -> int | None:
    """How many sockets listen on 127.0.0.1:`port` (one per SO_REUSEPORT worker); None when /proc does not
    show them (no /proc, or a sandboxed kernel whose /proc/net/tcp lists none of them)."""
    # gRPC binds a dual-stack IPv6 socket, where 127.0.0.1 shows as the v4-mapped ::ffff:127.0.0.1.
    wanted = {f"0100007F:{port:04X}", f"0000000000000000FFFF00000100007F:{port:04X}"}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        count += sum(1 for line in lines if line.split()[1] in wanted and line.split()[3] == "0A")
    return count or None


def _health(address: str) -> int | None:
    # A channel of its own, so that with SO_REUSEPORT each check may land on another worker.
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(address, options=options) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=1.0, wait_for_ready=True
            )
        except grpc.RpcError:
            return None
        return int(answer.status)


def _wait_serving(stack: Stack, port: int, timeout: float) -> None:
    """SERVING on a run of fresh connections, lasting a while once every worker process exists.

    Where /proc lists listening sockets, one per worker is awaited first; elsewhere (a sandboxed kernel) the
    run of checks over at least `_SETTLE_S` leaves the workers time to bind before the load connects.
    """
    deadline = time.monotonic() + timeout
    first_serving: float | None = None
    serving_in_a_row = 0
    while time.monotonic() < deadline:
        if stack.broker.poll() is not None:
            raise SetupError(f"the broker exited with {stack.broker.returncode}:\n{stack.broker_log_tail()}")
        listening = _listening_sockets(port)
        # The multi-worker parent serves nothing itself: its children are the workers.
        workers_up = stack.workers == 1 or len(stack.server_pids()) - 1 >= stack.workers
        if (listening is not None and listening < stack.workers) or not workers_up:
            time.sleep(0.1)
            continue
        if _health(stack.address) == health_pb2.HealthCheckResponse.SERVING:
            first_serving = first_serving or time.monotonic()
            serving_in_a_row += 1
            settled = stack.workers == 1 or time.monotonic() - first_serving >= _SETTLE_S
            if serving_in_a_row >= 4 * stack.workers and settled:
                return
            time.sleep(0.05)
        else:
            first_serving, serving_in_a_row = None, 0
            time.sleep(0.1)
    raise SetupError(f"the broker was not SERVING within {timeout:.0f} s:\n{stack.broker_log_tail()}")
