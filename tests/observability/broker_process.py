"""The broker as a user runs it, `python -m broker run --config FILE`, in its own process.

OpenTelemetry's global providers can be installed once per process, so every test that exports telemetry
runs the broker this way; the test process itself never installs an SDK.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from broker.protocol import keys
from tests.fixtures.broker_server import JOURNAL_ID, SFM
from tests.fixtures.sts import TestClient


def write_config(
    workdir: Path, issuer: str, clients: Sequence[TestClient], telemetry: str, *, workers: int = 1
) -> Path:
    """The tenants of `broker_config` (oslo on the multi-tenant client, bergen on the single-tenant one) as
    a TOML file, keys in files beside it, `telemetry` as its section; a third client, if given, serves
    tenant `stranger` (for a client the STS refuses)."""
    sections = [f'[authority]\nissuer = "{issuer}"', f"[server]\nworkers = {workers}", _SFM]
    tenants = (
        ("multi", f'orgnr_parent = "912345678"\norgnr_child = "998877665"\nsfm_journal_id = "{JOURNAL_ID}"'),
        ("single", 'orgnr_child = "444555666"'),
        ("stranger", 'orgnr_parent = "912345678"'),
    )
    for client, (name, organisation) in zip(clients, tenants, strict=False):
        (workdir / f"{name}.jwk").write_text(json.dumps(keys.private_jwk(client.signing_key)))
        sections.append(
            f'[clients.{name}]\nclient_id = "{client.client_id}"\ntenancy = "{client.tenancy}"\n'
            f'signing_key = {{ file = "{name}.jwk" }}'
        )
        tenant = {"multi": "oslo", "single": "bergen"}.get(name, name)
        sections.append(f'[tenants.{tenant}]\nclient = "{name}"\ntargets = ["sfm"]\n{organisation}')
    sections.append(f"[telemetry]\n{telemetry}")
    path = workdir / "broker.toml"
    path.write_text("\n\n".join(sections) + "\n")
    return path


_SFM = f"""[targets.sfm]
resource = "{SFM.resource}"
scopes = {json.dumps(list(SFM.scopes))}
allowed_urls = {json.dumps(list(SFM.allowed_urls))}"""


@dataclass
class BrokerProcess:
    process: subprocess.Popen[bytes]
    address: str
    log: Path  # stdout and stderr, interleaved as written
    # SIGTERM, as a process manager stops it; SIGINT for several workers: their parent has no SIGTERM
    # handler, and would leave them running.
    stop_signal: signal.Signals = signal.SIGTERM

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def stop(self) -> int:
        """Signals the broker to stop; it drains, flushes its exporters and exits."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


@contextmanager
def broker_process(
    config: Path, port: int, *, stop_signal: signal.Signals = signal.SIGTERM
) -> Iterator[BrokerProcess]:
    """Starts the broker on 127.0.0.1:`port` and yields at once; wait for it with `wait_until`."""
    log = config.parent / "broker.log"
    listen = f"127.0.0.1:{port}"
    command = [sys.executable, "-m", "broker", "run", "--config", str(config), "--listen", listen]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    running = BrokerProcess(process, listen, log, stop_signal)
    try:
        yield running
    finally:
        running.stop()


def wait_until(broker: BrokerProcess, ready: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if broker.process.poll() is not None:
            raise RuntimeError(f"the broker exited with {broker.process.returncode}:\n{broker.output()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not within {timeout_s:.0f} s:\n{broker.output()}")
        time.sleep(0.1)


def has_started(broker: BrokerProcess) -> bool:
    return "broker listening on" in broker.output()
