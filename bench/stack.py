"""The system under test, set up in a temporary directory and torn down afterwards.

The services (`running_services`): a fresh ES256 client key (written 0600 into the temporary directory only),
the dev authority with that client registered, and a Redis server. On them, the broker (`running_broker`:
`python -m broker run --config FILE`) with `workers` processes sharing one port (SO_REUSEPORT), waited for
until gRPC health says SERVING on every worker; or a cluster of replicas (bench/cluster.py).
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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
HSM_PIN_ENV = "BENCH_HSM_PIN"
TOKEN_LIFETIME_S = 3600
_SETTLE_S = 1.0


@dataclass
class Services:
    """What every broker of a run shares: the dev authority, Redis, the client key and the store key."""

    workdir: Path
    authority: DevAuthority
    redis: Redis
    key_file: Path
    store_key: str  # base64 of 32 random bytes; only in the brokers' environment, never in a file
    token_lifetime_s: int
    # With --hsm: the client assertion key lives in a SoftHSM2 token (this TOML reference), the DPoP key
    # stays the in-memory key of `key_file`; the token's PIN is only in the brokers' environment.
    hsm_key_ref: str | None = None
    hsm_pin: str | None = None

    @property
    def issuer(self) -> str:
        return self.authority.issuer

    def broker_environ(self) -> dict[str, str]:
        environ = dict(os.environ)
        environ[STORE_KEY_ENV] = self.store_key
        if self.hsm_pin is not None:
            environ[HSM_PIN_ENV] = self.hsm_pin
        return environ

    def sts_stats(self) -> dict[str, Any] | None:
        """The dev authority's dev-only /dev/stats counters (token_requests, tokens_issued, ...)."""
        return sts_stats(self.issuer)

    def sts_token_requests(self) -> int | None:
        return _token_requests(self.sts_stats())


def sts_stats(issuer: str, timeout: float = 5.0) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{issuer}/dev/stats", timeout=timeout)
        response.raise_for_status()
        stats = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return stats if isinstance(stats, dict) else None


def _token_requests(stats: dict[str, Any] | None) -> int | None:
    try:
        return None if stats is None else int(stats["token_requests"])
    except (KeyError, TypeError, ValueError):
        return None


class System(Protocol):
    """What a row measures: the broker's processes and the services beside them (a Stack or a Cluster)."""

    @property
    def authority(self) -> DevAuthority: ...

    @property
    def redis(self) -> Redis: ...

    def server_pids(self) -> list[int]: ...

    def sts_token_requests(self) -> int | None: ...


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
        return _token_requests(sts_stats(self.issuer))

    def broker_log_tail(self) -> str:
        return log_tail(self.workdir / "broker.log")


@contextlib.contextmanager
def running_services(
    *, token_lifetime: int = TOKEN_LIFETIME_S, prefix: str = "broker-bench-", hsm: bool = False
) -> Iterator[Services]:
    """The dev authority (tokens live `token_lifetime` seconds) and Redis, in a temporary directory; with
    `hsm`, the client's assertion key in a SoftHSM2 token made for the run."""
    with contextlib.ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        key = keys.generate_signing_key("ES256")
        key_file = workdir / "client-key.json"
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(keys.private_jwk(key), handle)
        registered = keys.public_jwk(key)
        hsm_key_ref = hsm_pin = None
        if hsm:
            from bench.signers import softhsm_token  # noqa: PLC0415 - python-pkcs11 only for --hsm
            from broker.signers.pkcs11 import Pkcs11KeyRef, open_signer  # noqa: PLC0415

            token = cleanup.enter_context(softhsm_token())
            ref = Pkcs11KeyRef(module=token.module, token=token.label, key_label="ec-p256", pin=token.pin)
            registered = keys.public_jwk(keys.from_signer(open_signer(ref), where="pkcs11"))
            hsm_pin = token.pin
            hsm_key_ref = (
                f"{{ pkcs11 = {{ module = {json.dumps(token.module)}, token = {json.dumps(token.label)}, "
                f'key_label = "ec-p256", pin = {{ env = "{HSM_PIN_ENV}" }} }} }}'
            )
        registry = workdir / "devauthority-clients.json"
        registry.write_text(json.dumps([_registration(registered)]), encoding="utf-8")

        authority = start_dev_authority(workdir, registry, token_lifetime=token_lifetime)
        cleanup.callback(stop_process, authority.process)
        redis = start_redis(workdir)
        cleanup.callback(stop_process, redis.process)
        store_key = base64.b64encode(secrets.token_bytes(32)).decode()
        yield Services(workdir, authority, redis, key_file, store_key, token_lifetime, hsm_key_ref, hsm_pin)


@contextlib.contextmanager
def running_broker(services: Services, workers: int, *, start_timeout: float = 60.0) -> Iterator[Stack]:
    """The broker with `workers` processes sharing one port, on the services; stopped on leaving."""
    with contextlib.ExitStack() as cleanup:
        workdir = services.workdir
        port = free_port()
        address = f"127.0.0.1:{port}"
        config_path = workdir / "broker.toml"
        config_path.write_text(
            config_toml(
                listen=address,
                workers=workers,
                redis_url=services.redis.url,
                issuer=services.issuer,
                key_file=services.key_file.name,
                tenants=[TenantSpec(TENANT, ORGNR_PARENT)],
                signing_key_ref=services.hsm_key_ref,
            )
        )
        environ = services.broker_environ()
        args = [sys.executable, "-m", "broker", "run", "--config", str(config_path)]
        broker = spawn(args, workdir / "broker.log", env=environ)
        # SIGTERM: the multi-worker parent forwards it to its workers, which drain and exit. (Not SIGINT: a
        # process started in the background by a non-interactive shell inherits SIGINT ignored.)
        cleanup.callback(stop_process, broker, first=signal.SIGTERM, grace=15.0)
        stack = Stack(
            workdir, address, workers, config_path, environ, services.authority, services.redis, broker
        )
        _wait_serving(stack, port, start_timeout)
        yield stack


@contextlib.contextmanager
def running_stack(workers: int, *, start_timeout: float = 60.0) -> Iterator[Stack]:
    with running_services() as services, running_broker(services, workers, start_timeout=start_timeout) as s:
        yield s


def _registration(public_jwk: dict[str, Any]) -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "jwks": {"keys": [public_jwk]},
        "tenancy": "multi",
        "organization_number": ORGNR_PARENT,
        "allowed_scopes": list(SFM_SCOPES),
        "allowed_resources": [SFM_RESOURCE],
    }


@dataclass(frozen=True)
class TenantSpec:
    name: str
    orgnr_parent: str
    warm: bool = False


def config_toml(
    *,
    listen: str,
    workers: int,
    redis_url: str,
    issuer: str,
    key_file: str,
    tenants: Sequence[TenantSpec],
    cache: Mapping[str, float] | None = None,
    signing_key_ref: str | None = None,
) -> str:
    """The broker's configuration: one multi-tenant client, the SFM target, the given tenants; with a
    `signing_key_ref` (an HSM key), the key file signs DPoP proofs only."""

    def q(value: str) -> str:
        return json.dumps(value)  # a JSON string of these ASCII values is a TOML basic string

    scopes = ", ".join(q(scope) for scope in SFM_SCOPES)
    cache_lines = "".join(f"{name} = {value!r}\n" for name, value in (cache or {}).items())
    cache_section = f"\n[cache]\n{cache_lines}" if cache_lines else ""
    file_ref = f"{{ file = {q(key_file)} }}"
    if signing_key_ref is None:
        key_lines = f"signing_key = {file_ref}\n"
    else:
        key_lines = f"signing_key = {signing_key_ref}\ndpop_key = {file_ref}\n"
    head = f"""\
[server]
listen = {q(listen)}
workers = {workers}

[store]
kind = "redis"
url = {q(redis_url)}
encryption_key = {{ env = {q(STORE_KEY_ENV)} }}

# As in production: the audit trail in its own files (beside this one), not in the log stream.
[audit]
directory = "audit"
{cache_section}
[clients.bench]
client_id = {q(CLIENT_ID)}
issuer = {q(issuer)}
tenancy = "multi"
{key_lines}
[targets.{TARGET}]
resource = {q(SFM_RESOURCE)}
scopes = [{scopes}]
token_type = "dpop"
allowed_urls = [{q(SFM_ALLOWED_URL)}]
"""
    warm = f"warm = [{q(TARGET)}]\n"
    parts = [head]
    for tenant in tenants:
        parts.append(
            f'\n[tenants.{tenant.name}]\nclient = "bench"\norgnr_parent = {q(tenant.orgnr_parent)}\n'
            f"targets = [{q(TARGET)}]\n{warm if tenant.warm else ''}"
        )
    return "".join(parts)


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
